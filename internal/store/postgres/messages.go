package postgres

import (
	"context"
	"errors"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate/internal/store"
)

// MessagesAfter implements store.Store. store.ErrNotFound if conv does not
// exist.
func (s *Store) MessagesAfter(ctx context.Context, app, conv string, after uint64, limit int) ([]store.Message, error) {
	return s.messages(ctx, app, conv, limit, `SELECT seq, at, sender, client_msg_id, body FROM messages
		WHERE app_id = $1 AND conv_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`, seqArg(after))
}

// MessagesBefore implements store.Store. store.ErrNotFound if conv does not
// exist.
func (s *Store) MessagesBefore(ctx context.Context, app, conv string, before uint64, limit int) ([]store.Message, error) {
	b := seqArg(before)
	if before == 0 {
		b = math.MaxInt64
	}
	out, err := s.messages(ctx, app, conv, limit, `SELECT seq, at, sender, client_msg_id, body FROM messages
		WHERE app_id = $1 AND conv_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4`, b)
	// Read newest first so LIMIT keeps the ones just below before; the
	// contract is ascending order.
	slices.Reverse(out)
	return out, err
}

// messages runs a range query over conv's messages with bound (a seq) and
// limit as its last two parameters.
func (s *Store) messages(ctx context.Context, app, conv string, limit int, query string, bound int64) ([]store.Message, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []store.Message
	if limit > 0 {
		rows, err := s.pool.Query(ctx, query, app, conv, bound, limit)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Message, error) {
			m := store.Message{App: app, Conv: conv}
			var at int64
			// pgx scans bytea into a fresh slice: the caller owns it.
			err := row.Scan(&m.Seq, &at, &m.Sender, &m.ClientMsgID, &m.Body)
			m.At = fromMsec(at)
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

// SetReadSeq implements store.Store. store.ErrNotFound also when conv does
// not exist. It is one statement: a cursor moved concurrently by another
// node or by an append is never moved back, as the new value is the
// greatest of the stored one and the one asked for.
func (s *Store) SetReadSeq(ctx context.Context, app, conv, user string, seq uint64) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var v uint64
	err := s.pool.QueryRow(ctx, `UPDATE members AS m
		SET read_seq = GREATEST(m.read_seq, LEAST($4::bigint, c.last_seq))
		FROM conversations AS c
		WHERE c.app_id = m.app_id AND c.id = m.conv_id
		  AND m.app_id = $1 AND m.conv_id = $2 AND m.user_id = $3
		RETURNING m.read_seq`, app, conv, user, seqArg(seq)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, s.fail(ctx, err)
	}
	return v, nil
}
