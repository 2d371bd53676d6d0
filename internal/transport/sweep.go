package transport

import (
	"errors"
	"sync"
	"time"
)

// ErrIdleTimeout is the error Session.Closed receives for a connection
// closed because no frame arrived within its idle timeout.
var ErrIdleTimeout = errors.New("transport: idle timeout")

// shardCount spreads the registry's lock so that connections coming and
// going do not contend with each other or with the sweeper.
const shardCount = 64

// registry holds the established connections, for the sweeper and for
// Shutdown's forced close.
type registry struct {
	shards [shardCount]shard
}

type shard struct {
	mu    sync.Mutex
	conns map[uint64]*conn
}

func (r *registry) init() {
	for i := range r.shards {
		r.shards[i].conns = make(map[uint64]*conn)
	}
}

func (r *registry) shard(id uint64) *shard { return &r.shards[id%shardCount] }

func (r *registry) add(c *conn) {
	sh := r.shard(c.id)
	sh.mu.Lock()
	sh.conns[c.id] = c
	sh.mu.Unlock()
}

func (r *registry) remove(c *conn) {
	sh := r.shard(c.id)
	sh.mu.Lock()
	delete(sh.conns, c.id)
	sh.mu.Unlock()
}

// each calls f for every registered connection, one shard at a time and
// outside the shard's lock, since f may close connections (which removes
// them from the registry).
func (r *registry) each(f func(*conn)) {
	var batch []*conn
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for _, c := range sh.conns {
			batch = append(batch, c)
		}
		sh.mu.Unlock()
		for _, c := range batch {
			f(c)
		}
		clear(batch)
		batch = batch[:0]
	}
}

// sweep closes idle connections until the server stops. One goroutine for
// the whole server, rather than a timer per connection, keeps an idle
// connection's footprint to two atomic words.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.sweepEvery)
	defer t.Stop()
	var expired []*conn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.now()
		s.sweeps.Add(1)
		for i := range s.reg.shards {
			sh := &s.reg.shards[i]
			sh.mu.Lock()
			for _, c := range sh.conns {
				if d, _ := unpackIdle(c.idle.Load()); d > 0 && now-c.lastRead.Load() >= int64(d) && !c.readQueued() {
					expired = append(expired, c)
				}
			}
			sh.mu.Unlock()
			// Closing outside the shard lock keeps Send callers and
			// finishing connections (which take the shard lock) from
			// waiting on it.
			for _, c := range expired {
				_, code := unpackIdle(c.idle.Load())
				if c.closeWith(code, "idle timeout", ErrIdleTimeout, false) {
					s.stats.idle.Add(1)
					s.log.Debug("idle timeout", "conn", c.id, "code", code)
				}
			}
			clear(expired)
			expired = expired[:0]
		}
	}
}

// packIdle packs an idle timeout and its close code into one word, so that
// the sweeper never sees one without the other. d is kept in milliseconds,
// rounded up; 0 disables the timeout.
func packIdle(d time.Duration, code int) uint64 {
	if d <= 0 {
		return 0
	}
	ms := uint64((d + time.Millisecond - 1) / time.Millisecond)
	const maxMS = 1<<48 - 1
	ms = min(ms, maxMS)
	return ms<<16 | uint64(uint16(code))
}

func unpackIdle(v uint64) (time.Duration, int) {
	return time.Duration(v>>16) * time.Millisecond, int(v & 0xffff)
}
