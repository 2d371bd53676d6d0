package postgres

import (
	"context"

	"github.com/floodgate/floodgate/internal/store"
)

// UserConversations implements store.Store. Concurrent calls share
// statements (see coalesce.go): every client that connects syncs with
// all=true, which reads its user's conversations.
func (s *Store) UserConversations(ctx context.Context, app, user string, limit int) ([]store.ConvState, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	return s.userConvs.do(ctx, limitedKey{app, user, limit})
}

// readUserConvs reads the conversations of every user in batch in one
// statement.
func (s *Store) readUserConvs(ctx context.Context, batch []*read[limitedKey, []store.ConvState]) error {
	apps, users, limits := keyColumns(batch)
	// members_by_user holds (app_id, user_id, conv_id): each user's scan is
	// already in id order, and stops at its limit.
	var (
		i  int64
		st store.ConvState
	)
	st.Member = true
	return s.forEachGeneric(ctx, []any{&i, &st.ID, &st.Kind, &st.LastSeq, &st.JoinedSeq, &st.ReadSeq}, func() error {
		r := batch[i-1] // ORDINALITY counts from 1
		r.res = append(r.res, st)
		return nil
	}, `
		SELECT u.i, x.id, x.kind, x.last_seq, x.joined_seq, x.read_seq
		FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u (app_id, user_id, lim, i)
		CROSS JOIN LATERAL (
			SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.read_seq
			FROM members m JOIN conversations c ON c.app_id = m.app_id AND c.id = m.conv_id
			WHERE m.app_id = u.app_id AND m.user_id = u.user_id AND c.kind <> 'room'
			ORDER BY m.conv_id
			LIMIT u.lim) AS x
		ORDER BY u.i, x.id`, apps, users, limits)
}
