package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// openAll connects clients idx[0..] with at most the shard's concurrency
// in flight, paced at the shard's connection rate when one is set. For
// each success it records the timing and calls onConn (from a worker
// goroutine); a client that cannot connect is counted as failed. It
// returns when every client has been tried or ctx ends.
func (e *shardEnv) openAll(ctx context.Context, idx []int, opts func(i int) dialOpts, onConn func(k int, c *rawConn, tm timing)) {
	workers := min(e.shard.ShardConcurrency, len(idx))
	rate := e.shard.ShardConnectRate
	start := time.Now()
	e.connStart.CompareAndSwap(0, start.UnixNano())
	defer func() { e.connEnd.Store(time.Now().UnixNano()) }()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(idx) {
					return
				}
				if rate > 0 && !sleepUntil(ctx, start.Add(time.Duration(float64(k)/rate*float64(time.Second)))) {
					return
				}
				var o dialOpts
				if opts != nil {
					o = opts(k)
				}
				c, tm, err := e.dial.connect(ctx, idx[k], o)
				if err != nil {
					e.ctr.failed.Add(1)
					continue
				}
				e.recordTiming(tm)
				e.ctr.opened.Add(1)
				e.ctr.open.Add(1)
				c.setOnEnd(e.connEnded)
				if onConn != nil {
					onConn(k, c, tm)
				}
			}
		}()
	}
	wg.Wait()
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// forEach runs f for every k in [0, n) on at most workers goroutines, and
// returns when all are done or ctx ends.
func forEach(ctx context.Context, n, workers int, f func(k int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				f(k)
			}
		}()
	}
	wg.Wait()
}

// connSet is a shard's raw connections, with the keepalive every idle
// connection needs (the server closes one it has not heard from for two
// ping intervals) and the bounded teardown.
type connSet struct {
	env     *shardEnv
	conns   []atomic.Pointer[rawConn]
	started atomic.Bool // keepalive runs
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newConnSet(env *shardEnv, n int) *connSet {
	return &connSet{env: env, conns: make([]atomic.Pointer[rawConn], n), stop: make(chan struct{}), done: make(chan struct{})}
}

// set stores connection k.
func (s *connSet) set(k int, c *rawConn) {
	s.conns[k].Store(c)
}

// keepalive pings every connection that has written nothing for half the
// server's ping interval, until close.
func (s *connSet) keepalive() {
	interval := s.env.plan.PingInterval
	if interval <= 0 {
		interval = 25 * time.Second
	}
	if !s.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval / 4)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case now := <-t.C:
				for k := range s.conns {
					if c := s.conns[k].Load(); c != nil && c.Alive() && c.IdleFor(now) > interval/2 {
						_ = c.Ping()
					}
				}
			}
		}
	}()
}

// closeAll stops the keepalive and closes every connection, in parallel,
// within teardownTimeout (a connection that does not close in time is
// abandoned to the process's exit).
func (s *connSet) closeAll() {
	s.once.Do(func() {
		close(s.stop)
		if s.started.Load() {
			<-s.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
		defer cancel()
		forEach(ctx, len(s.conns), 64, func(k int) {
			if c := s.conns[k].Swap(nil); c != nil {
				c.Close()
			}
		})
	})
}

// connEnded keeps the counters when a connection's reader stops: one the
// server closed during the run is a drop, counted by its close code.
func (e *shardEnv) connEnded(c *rawConn, dropped bool) {
	e.ctr.open.Add(-1)
	if !dropped {
		return
	}
	e.ctr.dropped.Add(1)
	if code := c.CloseCode(); code != 0 {
		e.errs.add("closed_" + strconv.Itoa(code))
	} else {
		e.errs.add("conn_lost:" + classify(c.ReadErr()))
	}
}
