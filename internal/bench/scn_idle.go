package bench

import (
	"context"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// idleShard opens its connections and holds them. Each client opens the
// direct conversation with the next client (the last with the first), so
// every user is in two direct conversations, as a typical user of a chat
// app is in several: the server keeps no per-connection state for them,
// but auth, the user's bus subscription and the store's membership rows
// are real.
type idleShard struct {
	env   *shardEnv
	conns *connSet
}

func (s *idleShard) setup(ctx context.Context) error {
	p := s.env.shard
	idx := make([]int, 0, p.Hi-p.Lo)
	for i := p.Lo; i < p.Hi; i++ {
		idx = append(idx, i)
	}
	s.conns = newConnSet(s.env, len(idx))
	s.conns.keepalive()
	conns := make([]*rawConn, len(idx))
	s.env.openAll(ctx, idx, nil, func(k int, c *rawConn, _ timing) {
		s.conns.set(k, c)
		conns[k] = c
	})
	// Once every connection is open, so that the connection rate is that
	// of connections alone.
	if p.Conns >= 2 {
		forEach(ctx, len(idx), p.ShardConcurrency, func(k int) {
			if conns[k] == nil {
				return
			}
			peer := p.User((idx[k] + 1) % p.Conns)
			if err := conns[k].Call(ctx, protocol.OpConvDirect, protocol.DirectArgs{User: peer}, nil); err != nil {
				s.env.errs.add("conv.direct:" + classify(err))
			}
		})
	}
	return ctx.Err()
}

func (s *idleShard) run(ctx context.Context, stop <-chan struct{}) error {
	select {
	case <-stop:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *idleShard) quiesce(context.Context) map[string]uint64 { return nil }

func (s *idleShard) finish(context.Context, map[string]uint64, int64, *ShardResult) {}

func (s *idleShard) close() {
	if s.conns != nil {
		s.conns.closeAll()
	}
}

// Settling: the server's RSS after the connections open includes garbage,
// memory the runtime has not yet returned to the kernel, and goroutine
// stacks grown while the connections were set up, which each collection
// can only halve. The coordinator polls the RSS until it stops dropping,
// with --force-gc collecting before every poll: the state an idle server
// reaches by itself within minutes, since the runtime collects at least
// every two minutes.
const (
	settlePoll   = 500 * time.Millisecond
	settleStable = 4     // polls in a row without a drop: 2 s
	settleDrop   = 0.005 // a drop smaller than 0.5 % is noise
)

// settle holds the connections until the servers' total RSS has stopped
// dropping (or the --duration is up), then records the loaded sample.
// Without any server to read it just holds for the duration.
func (r *runner) settle(ctx context.Context) {
	end := r.rep.PhaseStart.Add(r.plan.Duration)
	if len(r.mon.probes) == 0 {
		sleepUntil(ctx, end)
		return
	}
	low, stable := -1.0, 0
	for sleepUntil(ctx, time.Now().Add(settlePoll)) {
		if r.cfg.ForceGC {
			r.forceGC(ctx)
		}
		xs := r.mon.sampleAll(ctx)
		total := 0.0
		for _, x := range xs {
			total += max(x.RSS, 0)
		}
		if low < 0 || total < low*(1-settleDrop) {
			low, stable = total, 0
		} else {
			stable++
		}
		if stable >= settleStable {
			r.rep.Settled = true
			break
		}
		if time.Now().After(end) {
			break
		}
	}
	r.rep.SettleSeconds = time.Since(r.rep.PhaseStart).Seconds()
	r.mon.mark(ctx, func(s *ServerSeries) *ServerSample { return &s.Loaded })
}
