package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/floodgate/floodgate/internal/store"
)

// querier is what reads need of a pool or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const convColumns = `app_id, id, kind, name, creator, created_at, last_seq, last_at`

func getConv(ctx context.Context, q querier, app, id string) (store.Conversation, error) {
	var (
		c               store.Conversation
		created, lastAt int64
	)
	err := q.QueryRowContext(ctx, `SELECT `+convColumns+` FROM conversations WHERE app_id = ? AND id = ?`, app, id).
		Scan(&c.App, &c.ID, &c.Kind, &c.Name, &c.Creator, &created, &c.LastSeq, &lastAt)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Conversation{}, store.ErrNotFound
	}
	if err != nil {
		return store.Conversation{}, err
	}
	c.CreatedAt, c.LastAt = fromMsec(created), fromMsec(lastAt)
	return c, nil
}

// convKind returns conv's kind and LastSeq, store.ErrNotFound if it does
// not exist.
func convKind(ctx context.Context, q querier, app, conv string) (kind string, lastSeq int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT kind, last_seq FROM conversations WHERE app_id = ? AND id = ?`, app, conv).Scan(&kind, &lastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, store.ErrNotFound
	}
	return kind, lastSeq, err
}

// convExists returns store.ErrNotFound unless conv exists. Reads call it
// only when they found nothing, to tell an empty result from a missing
// conversation; conversations are never deleted, so a result that is not
// empty proves the conversation exists.
func (s *Store) convExists(ctx context.Context, app, conv string) error {
	_, _, err := convKind(ctx, s.r, app, conv)
	return err
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
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		if err := appExists(ctx, tx, c.App); err != nil {
			return err
		}
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

// insertConv inserts c; store.ErrConflict if its id is taken.
func insertConv(ctx context.Context, tx *sql.Tx, c store.Conversation) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO conversations (`+convColumns+`) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT (app_id, id) DO NOTHING`,
		c.App, c.ID, c.Kind, c.Name, c.Creator, msec(c.CreatedAt), msec(c.CreatedAt))
	return insertedOne(res, err)
}

// addMembers inserts the users not yet members of conv, joining (and having
// read) at seq, and returns them in the order given. A new member has read
// everything before it joined: those messages are not its to read, and
// counting them unread would be wrong.
func addMembers(ctx context.Context, tx *sql.Tx, app, conv string, users []string, seq int64) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO members (app_id, conv_id, user_id, joined_seq, read_seq)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (app_id, conv_id, user_id) DO NOTHING`)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	var added []string
	for _, u := range users {
		res, err := stmt.ExecContext(ctx, app, conv, u, seq, seq)
		if err := insertedOne(res, err); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		added = append(added, u)
	}
	return added, nil
}

// EnsureDirect implements store.Store. a and b must differ.
// store.ErrConflict if id is taken by a conversation that is not the direct
// conversation of a and b; store.ErrNotFound if the app does not exist.
// Races are settled by the single writer connection: the second caller finds
// the conversation the first created.
func (s *Store) EnsureDirect(ctx context.Context, app, id, a, b string) (store.Conversation, error) {
	if a == b {
		return store.Conversation{}, fmt.Errorf("%w: a direct conversation needs two distinct users", store.ErrInvalid)
	}
	var c store.Conversation
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = getConv(ctx, tx, app, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case c.Kind != store.KindDirect:
			return store.ErrConflict
		default:
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM members WHERE app_id = ? AND conv_id = ? AND user_id IN (?, ?)`,
				app, id, a, b).Scan(&n); err != nil {
				return err
			}
			if n != 2 {
				return store.ErrConflict
			}
			return nil
		}
		if err := appExists(ctx, tx, app); err != nil {
			return err
		}
		now := fromMsec(msec(s.now()))
		c = store.Conversation{App: app, ID: id, Kind: store.KindDirect, Creator: a, CreatedAt: now, LastAt: now}
		if err := insertConv(ctx, tx, c); err != nil {
			return err
		}
		_, err = addMembers(ctx, tx, app, id, []string{a, b}, 0)
		return err
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
	c, err := getConv(ctx, s.r, app, id)
	return c, s.fail(ctx, err)
}

// Member implements store.Store.
func (s *Store) Member(ctx context.Context, app, conv, user string) (store.Member, error) {
	if err := s.check(ctx); err != nil {
		return store.Member{}, err
	}
	m := store.Member{User: user}
	err := s.r.QueryRowContext(ctx, `SELECT joined_seq, read_seq FROM members WHERE app_id = ? AND conv_id = ? AND user_id = ?`,
		app, conv, user).Scan(&m.JoinedSeq, &m.ReadSeq)
	if errors.Is(err, sql.ErrNoRows) {
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
	out, err := s.members(ctx, app, conv, limit)
	if err == nil && len(out) == 0 {
		err = s.convExists(ctx, app, conv)
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

func (s *Store) members(ctx context.Context, app, conv string, limit int) ([]store.Member, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT user_id, joined_seq, read_seq FROM members
		WHERE app_id = ? AND conv_id = ? ORDER BY user_id LIMIT ?`, app, conv, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Member
	for rows.Next() {
		var m store.Member
		if err := rows.Scan(&m.User, &m.JoinedSeq, &m.ReadSeq); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// MemberCount implements store.Store. store.ErrNotFound if conv does not
// exist.
func (s *Store) MemberCount(ctx context.Context, app, conv string) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM members WHERE app_id = ? AND conv_id = ?`, app, conv).Scan(&n)
	if err == nil && n == 0 {
		err = s.convExists(ctx, app, conv)
	}
	if err != nil {
		return 0, s.fail(ctx, err)
	}
	return n, nil
}

// group returns conv's LastSeq if it is a group: store.ErrNotFound if it
// does not exist, an error if it is another kind.
func group(ctx context.Context, tx *sql.Tx, app, conv string) (int64, error) {
	kind, lastSeq, err := convKind(ctx, tx, app, conv)
	if err != nil {
		return 0, err
	}
	if kind != store.KindGroup {
		return 0, fmt.Errorf("%w: %s is a %s conversation, not a group", store.ErrInvalid, conv, kind)
	}
	return lastSeq, nil
}

// AddMembers implements store.Store. A new member's ReadSeq is its
// JoinedSeq. The result keeps the order of users, without repeats.
// store.ErrNotFound if conv does not exist; an error if it is not a group.
func (s *Store) AddMembers(ctx context.Context, app, conv string, users []string) ([]string, error) {
	var added []string
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		// Appends take the same writer connection, so LastSeq cannot move
		// between this read and the inserts.
		lastSeq, err := group(ctx, tx, app, conv)
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
// users, without repeats. store.ErrNotFound if conv does not exist; an error
// if it is not a group.
func (s *Store) RemoveMembers(ctx context.Context, app, conv string, users []string) ([]string, error) {
	var removed []string
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := group(ctx, tx, app, conv); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM members WHERE app_id = ? AND conv_id = ? AND user_id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, u := range users {
			res, err := stmt.ExecContext(ctx, app, conv, u)
			if err := updatedOne(res, err); errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			removed = append(removed, u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// ListConversations implements store.Store. Entries are ordered by LastAt
// descending, then id ascending; the cursor is the (LastAt, ID) of the last
// entry of the previous page.
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
	rows, err := s.r.QueryContext(ctx, `
		SELECT c.id, c.kind, c.name, c.creator, c.created_at, c.last_seq, c.last_at, m.read_seq,
		       g.at, g.sender, g.client_msg_id, g.body
		FROM members m
		JOIN conversations c ON c.app_id = m.app_id AND c.id = m.conv_id
		LEFT JOIN messages g ON g.app_id = c.app_id AND g.conv_id = c.id AND g.seq = c.last_seq
		WHERE m.app_id = ? AND m.user_id = ? AND c.kind <> 'room'
		  AND (? OR c.last_at < ? OR (c.last_at = ? AND c.id > ?))
		ORDER BY c.last_at DESC, c.id
		LIMIT ?`, app, user, start, after, after, cursor.ID, limit)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rows.Close()
	var out []store.Summary
	for rows.Next() {
		var (
			sum             store.Summary
			c               = &sum.Conversation
			created, lastAt int64
			at              sql.NullInt64
			sender, cid     sql.NullString
			body            []byte
		)
		if err := rows.Scan(&c.ID, &c.Kind, &c.Name, &c.Creator, &created, &c.LastSeq, &lastAt, &sum.ReadSeq,
			&at, &sender, &cid, &body); err != nil {
			return nil, s.fail(ctx, err)
		}
		c.App, c.CreatedAt, c.LastAt = app, fromMsec(created), fromMsec(lastAt)
		if at.Valid {
			sum.LastMessage = &store.Message{App: app, Conv: c.ID, Seq: c.LastSeq, At: fromMsec(at.Int64),
				Sender: sender.String, ClientMsgID: cid.String, Body: body}
		}
		out = append(out, sum)
	}
	return out, s.fail(ctx, rows.Err())
}

// UserConversations implements store.Store.
func (s *Store) UserConversations(ctx context.Context, app, user string, limit int) ([]store.ConvState, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	// members_by_user holds (app_id, user_id, conv_id): the scan is already
	// in id order.
	rows, err := s.r.QueryContext(ctx, `
		SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.read_seq, 1
		FROM members m JOIN conversations c ON c.app_id = m.app_id AND c.id = m.conv_id
		WHERE m.app_id = ? AND m.user_id = ? AND c.kind <> 'room'
		ORDER BY m.conv_id
		LIMIT ?`, app, user, limit)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out, err := scanStates(rows)
	return out, s.fail(ctx, err)
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
	// One JSON parameter instead of one parameter per id: no limit on the
	// number of ids, and one statement shape for the statement cache.
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT c.id, c.kind, c.last_seq, COALESCE(m.joined_seq, 0), COALESCE(m.read_seq, 0), m.user_id IS NOT NULL
		FROM conversations c
		LEFT JOIN members m ON m.app_id = c.app_id AND m.conv_id = c.id AND m.user_id = ?
		WHERE c.app_id = ? AND c.id IN (SELECT value FROM json_each(?))
		ORDER BY c.id`, user, app, string(list))
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out, err := scanStates(rows)
	return out, s.fail(ctx, err)
}

func scanStates(rows *sql.Rows) ([]store.ConvState, error) {
	defer rows.Close()
	var out []store.ConvState
	for rows.Next() {
		var st store.ConvState
		if err := rows.Scan(&st.ID, &st.Kind, &st.LastSeq, &st.JoinedSeq, &st.ReadSeq, &st.Member); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// ConversationMembers implements store.Store.
func (s *Store) ConversationMembers(ctx context.Context, app, id string, limit int) (store.Conversation, []string, error) {
	return store.ConversationMembersOf(ctx, s, app, id, limit)
}
