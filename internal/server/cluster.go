package server

import (
	"context"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/cluster"
)

// joinCluster starts publishing this node's heartbeat and listening for
// everyone's and for operator commands.
func (s *Server) joinCluster() error {
	ctx, cancel := context.WithCancel(context.Background())
	node, err := cluster.Start(ctx, s.bus, cluster.Options{
		Interval: s.cfg.HeartbeatInterval,
		Status:   s.status,
		Logger:   s.log,
		OnGone: func(node string) {
			s.log.Info("node left the cluster", "gone", node)
			s.gw.NodeGone(node)
		},
		OnCommand: func(c cluster.Command) {
			if c.Op == cluster.OpDrain {
				s.log.Info("drain requested over the bus")
				s.RequestDrain()
			}
		},
	})
	if err != nil {
		cancel()
		return err
	}
	s.node, s.nodeStop = node, cancel
	s.m.GaugeFunc("floodgate_cluster_nodes", "Gateway nodes this node sees alive (itself included).",
		func() float64 { return float64(len(s.gateways())) })
	return nil
}

// gateways returns the alive gateway nodes (routers excluded).
func (s *Server) gateways() []cluster.Status {
	all := s.node.Alive()
	out := all[:0:0]
	for _, n := range all {
		if !n.Router {
			out = append(out, n)
		}
	}
	return out
}

// unreadyAfter is how many readiness checks in a row must fail before the
// heartbeat says the node is not ready: one slow ping on a loaded machine
// must not make every router drop the node.
const unreadyAfter = 3

// status is this node's heartbeat. Readiness is checked here, once per
// interval, so routers stop sending clients to a node whose store or bus
// broke even though the process still beats.
func (s *Server) status() cluster.Status {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.cfg.HeartbeatInterval, time.Second))
	defer cancel()
	if s.bus.Healthy() == nil && s.st.Ping(ctx) == nil {
		s.unready.Store(0)
	} else {
		s.unready.Add(1)
	}
	ready := s.unready.Load() < unreadyAfter
	conns := 0
	if s.tr != nil {
		conns = int(s.tr.Stats().Conns)
	}
	return cluster.Status{
		Node: s.cfg.NodeID, URL: s.URL(), Conns: conns, Capacity: s.cfg.MaxConns,
		Load: s.cpu.load(), Draining: s.draining.Load(), Ready: ready,
	}
}

// cpuMeter measures the process's CPU use between two calls, as a share of
// the CPUs Go may use.
type cpuMeter struct {
	mu   sync.Mutex
	last time.Time
	used time.Duration
}

func (c *cpuMeter) load() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { c.last, c.used = now, used }()
	if c.last.IsZero() {
		return 0
	}
	wall := now.Sub(c.last)
	if wall <= 0 {
		return 0
	}
	return float64(used-c.used) / float64(wall) / float64(runtime.GOMAXPROCS(0))
}
