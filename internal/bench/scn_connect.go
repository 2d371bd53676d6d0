package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// interWave is the pause between the connect scenario's waves.
const interWave = time.Second

// connectShard measures connection set-up. The first wave opens every
// connection from scratch (full TLS handshakes). With --tls or --resume a
// second wave closes them all and reconnects every client the way a
// returning app does: resuming its TLS session from its own session cache,
// and, with --resume, sending the sync that catches up on what it missed
// (each client left a message in its direct conversation during the first
// wave, so the sync has something to return).
type connectShard struct {
	env      *shardEnv
	conns    *connSet
	sessions []tls.ClientSessionCache // per client, kept across waves

	mu    sync.Mutex
	waves []Wave
}

func (s *connectShard) idx() []int {
	p := s.env.shard
	idx := make([]int, 0, p.Hi-p.Lo)
	for i := p.Lo; i < p.Hi; i++ {
		idx = append(idx, i)
	}
	return idx
}

func (s *connectShard) secondWave() bool { return s.env.plan.TLS || s.env.plan.Resume }

func (s *connectShard) setup(ctx context.Context) error {
	idx := s.idx()
	if s.env.plan.TLS {
		s.sessions = make([]tls.ClientSessionCache, len(idx))
		for k := range s.sessions {
			s.sessions[k] = tls.NewLRUClientSessionCache(1)
		}
	}
	s.conns = newConnSet(s.env, len(idx))
	s.conns.keepalive()
	conns := make([]*rawConn, len(idx))
	s.addWave(s.wave(ctx, "first", idx, nil, func(k int, c *rawConn) { conns[k] = c }))
	if s.env.plan.Resume && s.env.plan.Conns >= 2 {
		// Something to resume in the second wave, left once the first is
		// over so that it does not slow the first wave down.
		forEach(ctx, len(idx), s.env.shard.ShardConcurrency, func(k int) {
			if conns[k] != nil {
				s.leaveMessage(ctx, conns[k], s.env.plan.User((idx[k]+1)%s.env.plan.Conns))
			}
		})
	}
	return ctx.Err()
}

// leaveMessage opens c's direct conversation with peer and sends one
// message there.
func (s *connectShard) leaveMessage(ctx context.Context, c *rawConn, peer string) {
	var res protocol.ConvResult
	if err := c.Call(ctx, protocol.OpConvDirect, protocol.DirectArgs{User: peer}, &res); err != nil {
		s.env.errs.add("conv.direct:" + classify(err))
		return
	}
	args := protocol.SendArgs{Conv: res.Conversation.ID, ClientMsgID: c.user + "-resume",
		Body: json.RawMessage(`{"text":"resume me"}`)}
	if err := c.Call(ctx, protocol.OpSend, args, nil); err != nil {
		s.env.errs.add("send:" + classify(err))
	}
}

// wave connects every client of idx and returns its statistics. after runs
// on each new connection, outside the timed part.
func (s *connectShard) wave(ctx context.Context, name string, idx []int, afterAuth func(context.Context, *rawConn) error, after func(k int, c *rawConn)) Wave {
	w := Wave{Name: name}
	h := NewHistogram()
	var mu sync.Mutex
	w.StartNS = time.Now().UnixNano()
	s.env.openAll(ctx, idx, func(k int) dialOpts {
		o := dialOpts{afterAuth: afterAuth}
		if s.sessions != nil {
			o.sessions = s.sessions[k]
		}
		return o
	}, func(k int, c *rawConn, tm timing) {
		h.Record(tm.Total)
		s.conns.set(k, c)
		mu.Lock()
		w.Conns++
		if tm.TLS && tm.Resumed {
			w.TLSResume++
		} else if tm.TLS {
			w.TLSFull++
		}
		w.EndNS = time.Now().UnixNano()
		mu.Unlock()
		if after != nil {
			after(k, c)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	w.Failed = int64(len(idx)) - w.Conns
	if w.EndNS == 0 {
		w.EndNS = time.Now().UnixNano()
	}
	w.Handshake = h.Snapshot()
	return w
}

func (s *connectShard) addWave(w Wave) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waves = append(s.waves, w)
}

// run is the second wave, if any; it ends by itself.
func (s *connectShard) run(ctx context.Context, _ <-chan struct{}) error {
	if !s.secondWave() {
		return nil
	}
	s.conns.closeAll()
	// Let the server finish tearing the first wave down, so that its work
	// on the closes is not counted against the second wave.
	if !sleepUntil(ctx, time.Now().Add(interWave)) {
		return ctx.Err()
	}
	idx := s.idx()
	s.conns = newConnSet(s.env, len(idx))
	s.conns.keepalive()
	var synced sync.Mutex
	var syncedN int64
	var afterAuth func(context.Context, *rawConn) error
	if s.env.plan.Resume {
		afterAuth = func(ctx context.Context, c *rawConn) error {
			n, err := syncAll(ctx, c)
			synced.Lock()
			syncedN += n
			synced.Unlock()
			return err
		}
	}
	name := "reconnect"
	if s.env.plan.TLS {
		name = "resume TLS"
	}
	if s.env.plan.Resume {
		name += "+sync"
	}
	w := s.wave(ctx, name, idx, afterAuth, nil)
	synced.Lock()
	w.Synced = syncedN
	synced.Unlock()
	s.addWave(w)
	return ctx.Err()
}

// syncAll runs the resume sync of a client that has no cursor: every
// conversation from where the user joined it, until nothing is left. It
// returns how many messages came.
func syncAll(ctx context.Context, c *rawConn) (int64, error) {
	cursors := map[string]uint64{}
	var n int64
	for range 100 { // bounds a server that would always say "more"
		var res protocol.SyncResult
		if err := c.Call(ctx, protocol.OpSync, protocol.SyncArgs{Convs: cursors, All: true, Limit: 100}, &res); err != nil {
			return n, err
		}
		more := res.More
		for _, sc := range res.Convs {
			for _, m := range sc.Messages {
				cursors[sc.Conv] = max(cursors[sc.Conv], m.Seq)
				n++
			}
			more = more || sc.HasMore
		}
		if !more {
			return n, nil
		}
	}
	return n, errors.New("sync did not finish after 100 rounds")
}

func (s *connectShard) quiesce(context.Context) map[string]uint64 { return nil }

func (s *connectShard) finish(_ context.Context, _ map[string]uint64, _ int64, res *ShardResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Waves = append(res.Waves, s.waves...)
}

func (s *connectShard) close() {
	if s.conns != nil {
		s.conns.closeAll()
	}
}
