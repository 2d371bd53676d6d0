package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
)

// Bus channels used by the cluster.
const (
	chanNodes = "nodes"
	chanCtl   = "ctl"
)

// Command is an operator's instruction to one node, sent over the bus by
// `floodgate ctl`.
type Command struct {
	Op   string `json:"op"` // "drain"
	Node string `json:"node"`
}

// Commands.
const (
	OpDrain = "drain"
)

// SendCommand broadcasts cmd to every node; the one it names acts on it.
func SendCommand(b bus.Bus, cmd Command) error {
	data, _ := json.Marshal(cmd)
	return b.Broadcast(chanCtl, data)
}

// Options configure a Node.
type Options struct {
	// Interval between heartbeats (default 1s).
	Interval time.Duration
	// Status returns this node's current status; nil for a process that
	// only listens (a router, `floodgate ctl`).
	Status func() Status
	// OnCommand is called (on a bus goroutine) with commands naming this
	// node.
	OnCommand func(Command)
	// OnGone is called (on the Node's goroutine) with each node that left
	// the membership view: expired after missed heartbeats. Whatever this
	// process holds about that node (presence, say) is stale from then on.
	OnGone func(node string)
	Logger *slog.Logger
	Now    func() time.Time
}

// Node publishes this process's heartbeat and maintains the membership
// view from everyone's. Its goroutine stops when the context given to
// Start ends.
type Node struct {
	b       bus.Bus
	o       Options
	members *Members
	self    string
	wg      sync.WaitGroup
	kick    chan struct{}
	seq     uint64
	started int64
}

// Start joins the cluster: it listens for heartbeats (and commands) and,
// if o.Status is set, publishes one now and every interval until ctx ends.
func Start(ctx context.Context, b bus.Bus, o Options) (*Node, error) {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{b: b, o: o, members: NewMembers(o.Interval), kick: make(chan struct{}, 1), started: o.Now().UnixMilli()}
	if o.Status != nil {
		n.self = o.Status().Node
	}
	err := b.Listen(ctx, chanNodes, func(data []byte) {
		if s, ok := DecodeStatus(data); ok {
			n.members.Observe(s, n.o.Now())
		}
	})
	if err != nil {
		return nil, err
	}
	if o.OnCommand != nil {
		err := b.Listen(ctx, chanCtl, func(data []byte) {
			var c Command
			if json.Unmarshal(data, &c) == nil && c.Node == n.self && n.self != "" {
				o.OnCommand(c)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	n.wg.Add(1)
	go n.run(ctx)
	return n, nil
}

func (n *Node) run(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.o.Interval)
	defer t.Stop()
	n.beat()
	known := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
		if n.b.Healthy() != nil {
			n.members.BusDown()
		} else {
			n.members.BusUp(n.o.Now())
		}
		n.beat()
		if n.o.OnGone != nil {
			known = n.reportGone(known)
		}
	}
}

// reportGone calls OnGone for the nodes in known that are no longer alive
// and returns the new set.
func (n *Node) reportGone(known map[string]bool) map[string]bool {
	now := make(map[string]bool, len(known))
	for _, s := range n.Alive() {
		now[s.Node] = true
	}
	for id := range known {
		if !now[id] {
			n.o.OnGone(id)
		}
	}
	return now
}

func (n *Node) beat() {
	if n.o.Status == nil {
		return
	}
	s := n.o.Status()
	n.seq++
	s.Seq, s.Started = n.seq, n.started
	// Our own view of ourselves must not depend on the bus.
	n.members.Observe(s, n.o.Now())
	if err := n.b.Broadcast(chanNodes, s.Encode()); err != nil {
		n.o.Logger.Debug("heartbeat not sent", "err", err)
	}
}

// Announce publishes a heartbeat now, e.g. when the node starts draining,
// so routers learn of it without waiting for the next interval.
func (n *Node) Announce() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Members is the membership view.
func (n *Node) Members() *Members { return n.members }

// Alive returns the nodes alive now.
func (n *Node) Alive() []Status { return n.members.Alive(n.o.Now()) }

// Wait waits for the heartbeat goroutine to stop (after ctx ends).
func (n *Node) Wait() { n.wg.Wait() }
