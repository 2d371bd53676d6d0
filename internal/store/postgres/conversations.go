package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate/internal/store"
)

// querier is what reads need of a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const convColumns = `app_id, id, kind, name, creator, created_at, last_seq, last_at`

// scanConv reads a row of convColumns; store.ErrNotFound if there is none.
func scanConv(row pgx.Row) (store.Conversation, error) {
	var (
		c               store.Conversation
		created, lastAt int64
	)
	err := row.Scan(&c.App, &c.ID, &c.Kind, &c.Name, &c.Creator, &created, &c.LastSeq, &lastAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Conversation{}, store.ErrNotFound
	}
	if err != nil {
		return store.Conversation{}, err
	}
	c.CreatedAt, c.LastAt = fromMsec(created), fromMsec(lastAt)
	return c, nil
}

// convExists returns store.ErrNotFound unless conv exists. Reads call it
// only when they found nothing, to tell an empty result from a missing
// conversation; conversations are never deleted, so a result that is not
// empty proves the conversation exists.
func convExists(ctx context.Context, q querier, app, conv string) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM conversations WHERE app_id = $1 AND id = $2`, app, conv).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// insertConv inserts c with no message yet. store.ErrConflict if its id is
// taken (ON CONFLICT waits for a racing insert of the same id to end, so
// the loser sees the winner's row), store.ErrNotFound if its app does not
// exist.
func insertConv(ctx context.Context, tx pgx.Tx, c store.Conversation) error {
	tag, err := tx.Exec(ctx, `INSERT INTO conversations (`+convColumns+`) VALUES ($1, $2, $3, $4, $5, $6, 0, $6)
		ON CONFLICT (app_id, id) DO NOTHING`,
		c.App, c.ID, c.Kind, c.Name, c.Creator, msec(c.CreatedAt))
	if err != nil {
		return missingApp(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrConflict
	}
	return nil
}

// CreateConversation implements store.Store. Kind must be group or room
// (direct conversations are made by EnsureDirect, which keeps them one per
// user pair); a zero CreatedAt is set to now. Duplicate member ids are
// stored once. store.ErrNotFound if the app does not exist.
func (s *Store) CreateConversation(ctx context.Context, c store.Conversation, members []string) (store.Conversation, error) {
	if c.Kind != store.KindGroup && c.Kind != store.KindRoom {
		return store.Conversation{}, fmt.Errorf("%w: cannot create a %q conversation", store.ErrInvalid, c.Kind)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	c.CreatedAt = fromMsec(msec(c.CreatedAt))
	c.LastSeq, c.LastAt = 0, c.CreatedAt
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := insertConv(ctx, tx, c); err != nil {
			return err
		}
		if c.Kind != store.KindGroup {
			return nil
		}
		_, err := addMembers(ctx, tx, c.App, c.ID, members, 0)
		return err
	})
	if err != nil {
		return store.Conversation{}, err
	}
	return c, nil
}

// addMembers inserts the users not yet members of conv, joining (and having
// read) at seq, and returns them in the order given, without repeats. A new
// member has read everything before it joined: those messages are not its
// to read, and counting them unread would be wrong. The caller holds the
// conversation's row lock or has just created it, so no other transaction
// adds members to conv meanwhile.
func addMembers(ctx context.Context, tx pgx.Tx, app, conv string, users []string, seq int64) ([]string, error) {
	users = uniq(users)
	if len(users) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `INSERT INTO members (app_id, conv_id, user_id, joined_seq, read_seq)
		SELECT $1, $2, u, $3, $3 FROM unnest($4::text[]) AS u
		ON CONFLICT (app_id, conv_id, user_id) DO NOTHING
		RETURNING user_id`, app, conv, seq, users)
	if err != nil {
		return nil, err
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	return inOrder(users, inserted), nil
}

// uniq returns users without repeats, keeping the first of each.
func uniq(users []string) []string {
	seen := make(map[string]bool, len(users))
	out := make([]string, 0, len(users))
	for _, u := range users {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// inOrder returns the users of got in the order of want (which has no
// repeats): RETURNING gives no order.
func inOrder(want, got []string) []string {
	if len(got) == 0 {
		return nil
	}
	in := make(map[string]bool, len(got))
	for _, u := range got {
		in[u] = true
	}
	return slices.DeleteFunc(slices.Clone(want), func(u string) bool { return !in[u] })
}

// EnsureDirect implements store.Store. a and b must differ.
// store.ErrConflict if id is taken by a conversation that is not the direct
// conversation of a and b; store.ErrNotFound if the app does not exist.
//
// It is safe to race, on one node or many: the INSERT … ON CONFLICT DO
// NOTHING of one racer wins; the others' wait for the winner's transaction
// to end, insert nothing, and then read the conversation and its members,
// which the winner committed together.
func (s *Store) EnsureDirect(ctx context.Context, app, id, a, b string) (store.Conversation, error) {
	if a == b {
		return store.Conversation{}, fmt.Errorf("%w: a direct conversation needs two distinct users", store.ErrInvalid)
	}
	var c store.Conversation
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		now := fromMsec(msec(s.now()))
		c = store.Conversation{App: app, ID: id, Kind: store.KindDirect, Creator: a, CreatedAt: now, LastAt: now}
		err := insertConv(ctx, tx, c)
		if err == nil {
			_, err = addMembers(ctx, tx, app, id, []string{a, b}, 0)
			return err
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		// A new statement, so a new snapshot: it sees the winner's rows.
		c, err = scanConv(tx.QueryRow(ctx, `SELECT `+convColumns+` FROM conversations WHERE app_id = $1 AND id = $2`, app, id))
		if err != nil {
			return err
		}
		if c.Kind != store.KindDirect {
			return store.ErrConflict
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM members WHERE app_id = $1 AND conv_id = $2 AND user_id IN ($3, $4)`,
			app, id, a, b).Scan(&n); err != nil {
			return err
		}
		if n != 2 {
			return store.ErrConflict
		}
		return nil
	})
	if err != nil {
		return store.Conversation{}, err
	}
	return c, nil
}

// Conversation implements store.Store.
func (s *Store) Conversation(ctx context.Context, app, id string) (store.Conversation, error) {
	if err := s.check(ctx); err != nil {
		return store.Conversation{}, err
	}
	c, err := scanConv(s.pool.QueryRow(ctx, `SELECT `+convColumns+` FROM conversations WHERE app_id = $1 AND id = $2`, app, id))
	return c, s.fail(ctx, err)
}

// convMembers is a ConversationMembers result; a zero conv (no ID) means
// the conversation does not exist.
type convMembers struct {
	conv    store.Conversation
	members []string
}

// ConversationMembers implements store.Store. Concurrent calls share
// statements (see coalesce.go): after a restart every node reads the
// conversation of each first send, and its member list for the fan-out.
func (s *Store) ConversationMembers(ctx context.Context, app, id string, limit int) (store.Conversation, []string, error) {
	if err := s.check(ctx); err != nil {
		return store.Conversation{}, nil, err
	}
	cm, err := s.convMembers.do(ctx, limitedKey{app, id, max(limit, 0)})
	if err == nil && cm.conv.ID == "" {
		err = store.ErrNotFound
	}
	return cm.conv, cm.members, err
}

// convMembersRow scans a row of convColumns followed by an array of
// member ids.
type convMembersRow struct {
	c               store.Conversation
	createdAt, last int64
	ms              []string
}

func (r *convMembersRow) dest() []any {
	return []any{&r.c.App, &r.c.ID, &r.c.Kind, &r.c.Name, &r.c.Creator, &r.createdAt, &r.c.LastSeq, &r.last, &r.ms}
}

// result returns the row scanned last, and leaves r to scan a fresh member
// slice into rather than this result's.
func (r *convMembersRow) result() convMembers {
	c, ms := r.c, r.ms
	c.CreatedAt, c.LastAt = fromMsec(r.createdAt), fromMsec(r.last)
	if len(ms) == 0 {
		ms = nil
	}
	r.ms = nil
	return convMembers{conv: c, members: ms}
}

// readConvMembers reads every conversation in batch, with up to its limit
// of member ids in id order, in one statement. The LIMIT keeps the
// lateral subquery a subquery: pulled up into a join, the generic plan
// (see forEachGeneric) hash-joins a sequential scan of every conversation.
func (s *Store) readConvMembers(ctx context.Context, batch []*read[limitedKey, convMembers]) error {
	if len(batch) == 1 {
		return s.readConvMembersOne(ctx, batch[0])
	}
	apps, ids, limits := keyColumns(batch)
	var (
		i   int64
		row convMembersRow
	)
	return s.forEachGeneric(ctx, append([]any{&i}, row.dest()...), func() error {
		batch[i-1].res = row.result() // ORDINALITY counts from 1
		return nil
	}, `
		SELECT u.i, c.app_id, c.id, c.kind, c.name, c.creator, c.created_at, c.last_seq, c.last_at,
			ARRAY(SELECT m.user_id FROM members m WHERE m.app_id = c.app_id AND m.conv_id = c.id
				ORDER BY m.user_id LIMIT u.lim)
		FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u (app_id, id, lim, i)
		CROSS JOIN LATERAL (
			SELECT * FROM conversations c WHERE c.app_id = u.app_id AND c.id = u.id
			LIMIT 1) AS c`, apps, ids, limits)
}

// readConvMembersOne is readConvMembers for one conversation, with a
// statement simpler to plan and run: a read alone (the usual case outside
// a storm) costs what it did before reads were coalesced.
func (s *Store) readConvMembersOne(ctx context.Context, r *read[limitedKey, convMembers]) error {
	var row convMembersRow
	err := s.pool.QueryRow(ctx, `SELECT `+convColumns+`,
			ARRAY(SELECT m.user_id FROM members m WHERE m.app_id = c.app_id AND m.conv_id = c.id
				ORDER BY m.user_id LIMIT $3)
		FROM conversations c WHERE c.app_id = $1 AND c.id = $2`, r.key.app, r.key.id, r.key.limit).
		Scan(row.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // not found
	}
	if err == nil {
		r.res = row.result()
	}
	return err
}

// Member implements store.Store.
func (s *Store) Member(ctx context.Context, app, conv, user string) (store.Member, error) {
	if err := s.check(ctx); err != nil {
		return store.Member{}, err
	}
	m := store.Member{User: user}
	err := s.pool.QueryRow(ctx, `SELECT joined_seq, read_seq FROM members WHERE app_id = $1 AND conv_id = $2 AND user_id = $3`,
		app, conv, user).Scan(&m.JoinedSeq, &m.ReadSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Member{}, store.ErrNotFound
	}
	if err != nil {
		return store.Member{}, s.fail(ctx, err)
	}
	return m, nil
}

// Members implements store.Store. store.ErrNotFound if conv does not exist.
func (s *Store) Members(ctx context.Context, app, conv string, limit int) ([]store.Member, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []store.Member
	if limit > 0 {
		rows, err := s.pool.Query(ctx, `SELECT user_id, joined_seq, read_seq FROM members
			WHERE app_id = $1 AND conv_id = $2 ORDER BY user_id LIMIT $3`, app, conv, limit)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Member, error) {
			var m store.Member
			err := row.Scan(&m.User, &m.JoinedSeq, &m.ReadSeq)
			return m, err
		})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
	}
	if len(out) == 0 {
		if err := convExists(ctx, s.pool, app, conv); err != nil {
			return nil, s.fail(ctx, err)
		}
	}
	return out, nil
}

// MemberCount implements store.Store. store.ErrNotFound if conv does not
// exist.
func (s *Store) MemberCount(ctx context.Context, app, conv string) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var n int
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM members WHERE app_id = $1 AND conv_id = $2`, app, conv).Scan(&n)
	if err == nil && n == 0 {
		err = convExists(ctx, s.pool, app, conv)
	}
	if err != nil {
		return 0, s.fail(ctx, err)
	}
	return n, nil
}

// lockGroup locks conv's row for the rest of tx and returns its LastSeq:
// store.ErrNotFound if it does not exist, store.ErrInvalid if it is not a
// group. Membership changes take the same lock as the group committer, so
// they are ordered with appends (a new member joins at the LastSeq of the
// moment) and with each other (two of them never insert or delete member
// rows concurrently, which could otherwise deadlock on each other's rows).
func lockGroup(ctx context.Context, tx pgx.Tx, app, conv string) (int64, error) {
	var (
		kind    string
		lastSeq int64
	)
	err := tx.QueryRow(ctx, `SELECT kind, last_seq FROM conversations WHERE app_id = $1 AND id = $2 FOR UPDATE`,
		app, conv).Scan(&kind, &lastSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	if kind != store.KindGroup {
		return 0, fmt.Errorf("%w: %s is a %s conversation, not a group", store.ErrInvalid, conv, kind)
	}
	return lastSeq, nil
}

// AddMembers implements store.Store. A new member's JoinedSeq and ReadSeq
// are the conversation's LastSeq, read under the conversation's row lock in
// the transaction that inserts the member, so no append commits between
// the read and the insert. The result keeps the order of users, without
// repeats. store.ErrNotFound if conv does not exist; store.ErrInvalid if it
// is not a group.
func (s *Store) AddMembers(ctx context.Context, app, conv string, users []string) ([]string, error) {
	var added []string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		lastSeq, err := lockGroup(ctx, tx, app, conv)
		if err != nil {
			return err
		}
		added, err = addMembers(ctx, tx, app, conv, users, lastSeq)
		return err
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// RemoveMembers implements store.Store. The result keeps the order of
// users, without repeats. store.ErrNotFound if conv does not exist;
// store.ErrInvalid if it is not a group.
func (s *Store) RemoveMembers(ctx context.Context, app, conv string, users []string) ([]string, error) {
	users = uniq(users)
	var removed []string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := lockGroup(ctx, tx, app, conv); err != nil {
			return err
		}
		if len(users) == 0 {
			return nil
		}
		rows, err := tx.Query(ctx, `DELETE FROM members WHERE app_id = $1 AND conv_id = $2 AND user_id = ANY($3::text[])
			RETURNING user_id`, app, conv, users)
		if err != nil {
			return err
		}
		deleted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		removed = inOrder(users, deleted)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// ListConversations implements store.Store. Entries are ordered by LastAt
// descending, then id ascending; the cursor is the (LastAt, ID) of the last
// entry of the previous page. Each entry, its LastMessage and its ReadSeq
// come from one snapshot.
func (s *Store) ListConversations(ctx context.Context, app, user string, cursor store.ListCursor, limit int) ([]store.Summary, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	start := cursor.LastAt.IsZero() && cursor.ID == ""
	after := msec(cursor.LastAt)
	// The newest message is found by the conversation's last_seq, one
	// primary key lookup per entry.
	rows, err := s.pool.Query(ctx, `
		SELECT c.id, c.kind, c.name, c.creator, c.created_at, c.last_seq, c.last_at, m.read_seq,
		       g.at, g.sender, g.client_msg_id, g.body
		FROM members m
		JOIN conversations c ON c.app_id = m.app_id AND c.id = m.conv_id
		LEFT JOIN messages g ON g.app_id = c.app_id AND g.conv_id = c.id AND g.seq = c.last_seq
		WHERE m.app_id = $1 AND m.user_id = $2 AND c.kind <> 'room'
		  AND ($3::boolean OR c.last_at < $4::bigint OR (c.last_at = $4::bigint AND c.id > $5::text))
		ORDER BY c.last_at DESC, c.id
		LIMIT $6`, app, user, start, after, cursor.ID, limit)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Summary, error) {
		var (
			sum             store.Summary
			c               = &sum.Conversation
			created, lastAt int64
			at              *int64
			sender, cid     *string
			body            []byte
		)
		if err := row.Scan(&c.ID, &c.Kind, &c.Name, &c.Creator, &created, &c.LastSeq, &lastAt, &sum.ReadSeq,
			&at, &sender, &cid, &body); err != nil {
			return store.Summary{}, err
		}
		c.App, c.CreatedAt, c.LastAt = app, fromMsec(created), fromMsec(lastAt)
		if at != nil {
			sum.LastMessage = &store.Message{App: app, Conv: c.ID, Seq: c.LastSeq, At: fromMsec(*at),
				Sender: *sender, ClientMsgID: *cid, Body: body}
		}
		return sum, nil
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// ConvStates implements store.Store. The result is ordered by id, with no
// repeats.
func (s *Store) ConvStates(ctx context.Context, app, user string, ids []string) ([]store.ConvState, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// One array parameter instead of one parameter per id: no limit on the
	// number of ids, and one statement shape for the statement cache.
	rows, err := s.pool.Query(ctx, `
		SELECT c.id, c.kind, c.last_seq, COALESCE(m.joined_seq, 0), COALESCE(m.read_seq, 0), m.user_id IS NOT NULL
		FROM conversations c
		LEFT JOIN members m ON m.app_id = c.app_id AND m.conv_id = c.id AND m.user_id = $1
		WHERE c.app_id = $2 AND c.id = ANY($3::text[])
		ORDER BY c.id`, user, app, ids)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out, err := pgx.CollectRows(rows, scanState)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

func scanState(row pgx.CollectableRow) (store.ConvState, error) {
	var st store.ConvState
	err := row.Scan(&st.ID, &st.Kind, &st.LastSeq, &st.JoinedSeq, &st.ReadSeq, &st.Member)
	return st, err
}
