package postgres

import (
	"context"
	"time"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/jackc/pgx/v5"
)

// Reads of users' conversation states are coalesced: every client that
// connects syncs with all=true, which reads its user's conversations, and in
// a reconnect storm thousands of them ask within a second. One statement
// for many users costs the database and the node little more than one for
// a single user, so, as appends share a commit, concurrent reads share a
// statement. Nothing waits to fill a batch: a reader takes whatever has
// queued, one request if that is all, so a read alone is not delayed.
const (
	// userConvReaders is how many coalesced reads run at once, each on
	// a connection of the main pool.
	userConvReaders = 4
	// userConvBatch is the most users one statement reads.
	userConvBatch = 256
	// userConvQueue bounds the reads waiting for a reader; past it a read
	// runs on its own, uncoalesced, as if there were no queue.
	userConvQueue = 4096
	// userConvTimeout bounds one coalesced statement. It cannot be a
	// caller's deadline, since the statement answers many callers.
	userConvTimeout = 10 * time.Second
)

// userConvReq is one caller's read, waiting for or in a batch.
type userConvReq struct {
	ctx       context.Context
	app, user string
	limit     int
	done      chan struct{}
	res       []store.ConvState
	err       error
}

// UserConversations implements store.Store.
func (s *Store) UserConversations(ctx context.Context, app, user string, limit int) ([]store.ConvState, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	r := &userConvReq{ctx: ctx, app: app, user: user, limit: limit, done: make(chan struct{})}
	if !s.queueUserConvs(r) {
		s.userConvBatch([]*userConvReq{r})
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// queueUserConvs hands r to the readers, or reports that it cannot: the
// queue is full, or the store is closed (r is then answered).
func (s *Store) queueUserConvs(r *userConvReq) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		r.err = store.ErrClosed
		close(r.done)
		return true
	}
	select {
	case s.userConvReqs <- r:
		s.userConvQueued.Add(1)
		return true
	default:
		return false
	}
}

// userConvReader is one of the reader goroutines: it runs batches of the
// queued reads until stop is closed, then answers what is left with
// store.ErrClosed. Close closes stop only once no read can be queued.
func (s *Store) userConvReader(stop <-chan struct{}) {
	batch := make([]*userConvReq, 0, userConvBatch)
	for {
		select {
		case r := <-s.userConvReqs:
			batch = append(batch[:0], r)
		more:
			for len(batch) < userConvBatch {
				select {
				case r := <-s.userConvReqs:
					batch = append(batch, r)
				default:
					break more
				}
			}
			live := batch[:0]
			for _, r := range batch {
				if err := r.ctx.Err(); err != nil {
					r.err = err
					close(r.done)
				} else {
					live = append(live, r)
				}
			}
			if len(live) > 0 {
				s.userConvBatch(live)
			}
			clear(batch)
		case <-stop:
			for {
				select {
				case r := <-s.userConvReqs:
					r.err = store.ErrClosed
					close(r.done)
				default:
					return
				}
			}
		}
	}
}

// userConvBatch reads the conversations of every user in batch in one
// statement and answers each request.
func (s *Store) userConvBatch(batch []*userConvReq) {
	ctx, cancel := context.WithTimeout(context.Background(), userConvTimeout)
	defer cancel()
	s.userConvStatements.Add(1)
	apps, users, limits := make([]string, len(batch)), make([]string, len(batch)), make([]int64, len(batch))
	for i, r := range batch {
		apps[i], users[i], limits[i] = r.app, r.user, int64(r.limit)
	}
	// members_by_user holds (app_id, user_id, conv_id): each user's scan is
	// already in id order, and stops at its limit.
	rows, err := s.pool.Query(ctx, `
		SELECT u.i, x.id, x.kind, x.last_seq, x.joined_seq, x.read_seq
		FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u (app_id, user_id, lim, i)
		CROSS JOIN LATERAL (
			SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.read_seq
			FROM members m JOIN conversations c ON c.app_id = m.app_id AND c.id = m.conv_id
			WHERE m.app_id = u.app_id AND m.user_id = u.user_id AND c.kind <> 'room'
			ORDER BY m.conv_id
			LIMIT u.lim) AS x
		ORDER BY u.i, x.id`, apps, users, limits)
	if err == nil {
		var (
			i  int64
			st store.ConvState
		)
		st.Member = true
		_, err = pgx.ForEachRow(rows, []any{&i, &st.ID, &st.Kind, &st.LastSeq, &st.JoinedSeq, &st.ReadSeq}, func() error {
			r := batch[i-1] // ORDINALITY counts from 1
			r.res = append(r.res, st)
			return nil
		})
	}
	for _, r := range batch {
		if err != nil {
			r.res, r.err = nil, s.fail(r.ctx, err)
		}
		close(r.done)
	}
}
