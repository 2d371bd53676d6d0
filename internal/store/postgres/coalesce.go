package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate/internal/store"
)

// Some reads are coalesced: in a reconnect storm thousands of clients make
// the same kind of read within a second (every client syncs its user's
// conversations; every first send after a restart reads its conversation's
// members), and one statement for many keys costs the database and the
// node little more than one for a single key. So, as appends share a
// commit, concurrent reads of one kind share a statement.
//
// Nothing waits to fill a batch, and a read that finds a statement slot
// free and nothing queued runs at once on its caller's goroutine, so a
// read alone waits for no other goroutine to be scheduled. Only when all
// coalesceReaders slots are taken do reads queue; a reader takes
// one, waits for a slot, and runs everything queued by then in one
// statement.
const (
	// coalesceReaders is how many statements of one kind run at once, each
	// on a connection of the main pool.
	coalesceReaders = 4
	// coalesceBatch is the most reads one statement answers.
	coalesceBatch = 256
	// coalesceQueue bounds the reads of one kind waiting for a reader; past
	// it a read runs on its own, uncoalesced, as if there were no queue.
	coalesceQueue = 4096
	// coalesceTimeout bounds one statement. It cannot be a caller's
	// deadline, since the statement answers many callers.
	coalesceTimeout = 10 * time.Second
)

// limitedKey is the key of both coalesced reads: an id within an app (a
// user's, or a conversation's) and how many rows to return for it.
type limitedKey struct {
	app, id string
	limit   int
}

// keyColumns returns batch's keys as the three arrays its statement
// unnests, in batch order.
func keyColumns[R any](batch []*read[limitedKey, R]) (apps, ids []string, limits []int64) {
	apps, ids, limits = make([]string, len(batch)), make([]string, len(batch)), make([]int64, len(batch))
	for i, r := range batch {
		apps[i], ids[i], limits[i] = r.key.app, r.key.id, int64(r.key.limit)
	}
	return apps, ids, limits
}

// read is one caller's read of key K with result R, waiting for or in a
// batch. The batch sets res and err, then closes done.
type read[K, R any] struct {
	ctx  context.Context
	key  K
	done chan struct{}
	res  R
	err  error
}

// coalescer runs reads of one kind in shared statements on its reader
// goroutines. Each batch is one call of run, which sets the result of
// every read it answers; an error from run is every read's error.
type coalescer[K, R any] struct {
	s    *Store
	run  func(ctx context.Context, batch []*read[K, R]) error
	reqs chan *read[K, R]
	// slots holds a token for each statement running, up to
	// coalesceReaders.
	slots chan struct{}
	// queued, direct and statements count the reads queued, the reads run
	// at once by their callers, and the statements that ran them all; the
	// coalescing tests read them.
	queued, direct, statements atomic.Int64
}

func newCoalescer[K, R any](s *Store, run func(context.Context, []*read[K, R]) error) *coalescer[K, R] {
	return &coalescer[K, R]{s: s, run: run, reqs: make(chan *read[K, R], coalesceQueue),
		slots: make(chan struct{}, coalesceReaders)}
}

// start starts the readers, which stop once stop is closed.
func (c *coalescer[K, R]) start(wg *sync.WaitGroup, stop <-chan struct{}) {
	for range coalesceReaders {
		wg.Go(func() { c.reader(stop) })
	}
}

// do reads key: at once if a statement slot is free and no read is
// queued, in a shared statement if it queues, or alone when the queue is
// full. It waits for the result or for ctx to end.
func (c *coalescer[K, R]) do(ctx context.Context, key K) (R, error) {
	r := &read[K, R]{ctx: ctx, key: key, done: make(chan struct{})}
	select {
	case c.slots <- struct{}{}:
		// Queued reads go first: they get this slot through a reader.
		if len(c.reqs) == 0 {
			c.direct.Add(1)
			c.batch(ctx, []*read[K, R]{r})
			<-c.slots
			return r.res, r.err
		}
		<-c.slots
	default:
	}
	if !c.queue(r) {
		c.batch(ctx, []*read[K, R]{r})
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// queue hands r to the readers, or reports that it cannot: the queue is
// full, or the store is closed (r is then answered).
func (c *coalescer[K, R]) queue(r *read[K, R]) bool {
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	if c.s.closed.Load() {
		r.err = store.ErrClosed
		close(r.done)
		return true
	}
	select {
	case c.reqs <- r:
		c.queued.Add(1)
		return true
	default:
		return false
	}
}

// reader runs batches of the queued reads until stop is closed, then
// answers what is left with store.ErrClosed. Close closes stop only once
// no read can be queued.
func (c *coalescer[K, R]) reader(stop <-chan struct{}) {
	batch := make([]*read[K, R], 0, coalesceBatch)
	for {
		select {
		case r := <-c.reqs:
			// Every slot may be busy: wait, while the batch grows. The
			// wait is bounded by the statements' coalesceTimeout.
			c.slots <- struct{}{}
			batch = append(batch[:0], r)
		more:
			for len(batch) < coalesceBatch {
				select {
				case r := <-c.reqs:
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
				c.batch(context.Background(), live)
			}
			<-c.slots
			clear(batch)
		case <-stop:
			for {
				select {
				case r := <-c.reqs:
					r.err = store.ErrClosed
					close(r.done)
				default:
					return
				}
			}
		}
	}
}

// batch runs one statement for batch and answers every read in it. ctx is
// the caller's for a read run alone, and no caller's for a shared one.
func (c *coalescer[K, R]) batch(ctx context.Context, batch []*read[K, R]) {
	ctx, cancel := context.WithTimeout(ctx, coalesceTimeout)
	defer cancel()
	c.statements.Add(1)
	err := c.run(ctx, batch)
	for _, r := range batch {
		if err != nil {
			var zero R
			r.res, r.err = zero, c.s.fail(r.ctx, err)
		}
		close(r.done)
	}
}

// forEachGeneric runs a coalesced read's query and calls fn for each row,
// scanned into dest. The query runs with PostgreSQL's generic plan for it.
// Its text is the same for any number of keys, and by default PostgreSQL
// plans it afresh on every execution, because its generic plan, made for
// arrays of any length, is estimated dearer than a plan for the actual
// arrays: a ConversationMembers statement for one key took 162 µs that
// way against 61 µs with the generic plan (BenchmarkConversationMembers,
// two readers, one run each).
// The queries are written so that the generic plan is the right one for
// any batch (a nested loop over the keys, each an index scan), and the
// setting lasts only for the implicit transaction of the two statements,
// sent in one round trip.
func (s *Store) forEachGeneric(ctx context.Context, dest []any, fn func() error, query string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`)
	b.Queue(query, args...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return err
	}
	rows, _ := br.Query()
	if _, err := pgx.ForEachRow(rows, dest, fn); err != nil {
		return err
	}
	return br.Close()
}
