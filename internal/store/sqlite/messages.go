package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"slices"

	"github.com/floodgate/floodgate/internal/store"
)

// MessagesAfter implements store.Store. store.ErrNotFound if conv does not
// exist.
func (s *Store) MessagesAfter(ctx context.Context, app, conv string, after uint64, limit int) ([]store.Message, error) {
	return s.messages(ctx, app, conv, limit, `SELECT seq, at, sender, client_msg_id, body FROM messages
		WHERE app_id = ? AND conv_id = ? AND seq > ? ORDER BY seq LIMIT ?`, seqArg(after))
}

// MessagesBefore implements store.Store. store.ErrNotFound if conv does not
// exist.
func (s *Store) MessagesBefore(ctx context.Context, app, conv string, before uint64, limit int) ([]store.Message, error) {
	b := seqArg(before)
	if before == 0 {
		b = math.MaxInt64
	}
	out, err := s.messages(ctx, app, conv, limit, `SELECT seq, at, sender, client_msg_id, body FROM messages
		WHERE app_id = ? AND conv_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, b)
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
		rows, err := s.r.QueryContext(ctx, query, app, conv, bound, limit)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		defer rows.Close()
		for rows.Next() {
			m := store.Message{App: app, Conv: conv}
			var at int64
			if err := rows.Scan(&m.Seq, &at, &m.Sender, &m.ClientMsgID, &m.Body); err != nil {
				return nil, s.fail(ctx, err)
			}
			m.At = fromMsec(at)
			out = append(out, m)
		}
		if err := rows.Err(); err != nil {
			return nil, s.fail(ctx, err)
		}
	}
	if len(out) == 0 {
		if err := s.convExists(ctx, app, conv); err != nil {
			return nil, s.fail(ctx, err)
		}
	}
	return out, nil
}

// SetReadSeq implements store.Store. store.ErrNotFound also when conv does
// not exist.
func (s *Store) SetReadSeq(ctx context.Context, app, conv, user string, seq uint64) (uint64, error) {
	var v uint64
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE members
			SET read_seq = MAX(read_seq, MIN(?, (SELECT last_seq FROM conversations c
				WHERE c.app_id = members.app_id AND c.id = members.conv_id)))
			WHERE app_id = ? AND conv_id = ? AND user_id = ?
			RETURNING read_seq`, seqArg(seq), app, conv, user).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return v, nil
}
