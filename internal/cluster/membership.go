// Package cluster is what nodes know of each other: the status heartbeat
// every node publishes on the bus, the membership view built from them,
// and the router's choice of a gateway for a client. Nothing here writes
// to a consensus log: a node is a member while its heartbeats arrive.
package cluster

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Status is a node's heartbeat. It costs one small message per node per
// interval, however many connections the node holds.
type Status struct {
	Node string `json:"node"`
	// URL is the WebSocket URL clients use to reach the node.
	URL string `json:"url"`
	// Conns is the number of open client connections; Capacity the most
	// the node accepts (its max-conns).
	Conns    int `json:"conns"`
	Capacity int `json:"capacity"`
	// Load is the node's CPU use over the last interval, as a share of the
	// CPUs it may use (0..1, more when over-subscribed).
	Load float64 `json:"load"`
	// Draining nodes take no new clients and are moving theirs away.
	Draining bool `json:"draining,omitempty"`
	// Ready is false while the node's store or bus is unusable.
	Ready bool `json:"ready"`
	// Started is when the node process started (Unix ms); Seq counts its
	// heartbeats. Together they tell a restart from a late heartbeat.
	Started int64  `json:"started"`
	Seq     uint64 `json:"seq"`
	Version string `json:"version,omitempty"`
	// Router marks a router process: it listens, it serves no clients.
	Router bool `json:"router,omitempty"`
}

// Free is how many more connections the node can take.
func (s Status) Free() int { return max(s.Capacity-s.Conns, 0) }

// Accepting reports whether the router may send clients to the node.
func (s Status) Accepting() bool {
	return s.Ready && !s.Draining && !s.Router && s.URL != "" && s.Free() > 0
}

// Encode returns the heartbeat's wire form.
func (s Status) Encode() []byte {
	b, _ := json.Marshal(s) // strings and numbers only
	return b
}

// DecodeStatus parses a heartbeat.
func DecodeStatus(b []byte) (Status, bool) {
	var s Status
	if json.Unmarshal(b, &s) != nil || s.Node == "" || len(s.Node) > 256 {
		return Status{}, false
	}
	return s, true
}

// MissedBeats is how many heartbeat intervals a node may stay silent
// before it is considered gone: one lost heartbeat must not eject a node,
// three in a row mean it is dead or cut off.
const MissedBeats = 3

// maxMembers bounds the view: heartbeats come from the bus, and a
// misbehaving publisher must not grow it without limit.
const maxMembers = 10000

// Members is the membership view: the latest heartbeat of every node, and
// when it was seen. It is a pure state machine — the caller feeds it
// heartbeats and the time — and safe for concurrent use.
//
// Static stability: while the bus is down (BusDown), nobody expires; the
// router keeps answering from the last view rather than from an empty one.
// When the bus comes back (BusUp), every node gets a fresh grace period to
// be heard from again.
type Members struct {
	interval time.Duration

	mu      sync.Mutex
	nodes   map[string]member
	busDown bool
}

type member struct {
	s    Status
	seen time.Time
}

// NewMembers returns an empty view for heartbeats sent every interval.
func NewMembers(interval time.Duration) *Members {
	return &Members{interval: interval, nodes: make(map[string]member)}
}

// Observe records a heartbeat received at now. A heartbeat older than the
// one held (same process, lower Seq) is ignored.
func (m *Members) Observe(s Status, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.nodes[s.Node]; ok && old.s.Started == s.Started && old.s.Seq > s.Seq {
		return
	}
	if _, ok := m.nodes[s.Node]; !ok && len(m.nodes) >= maxMembers {
		m.expireLocked(now)
		if len(m.nodes) >= maxMembers {
			return
		}
	}
	m.nodes[s.Node] = member{s: s, seen: now}
}

// Forget removes a node at once (it announced it is leaving).
func (m *Members) Forget(node string) {
	m.mu.Lock()
	delete(m.nodes, node)
	m.mu.Unlock()
}

// BusDown suspends expiry: silence is then the bus's fault, not the nodes'.
func (m *Members) BusDown() {
	m.mu.Lock()
	m.busDown = true
	m.mu.Unlock()
}

// BusUp resumes expiry, counting silence from now.
func (m *Members) BusUp(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.busDown {
		return
	}
	m.busDown = false
	for id, mb := range m.nodes {
		mb.seen = now
		m.nodes[id] = mb
	}
}

// Alive returns the nodes heard from within MissedBeats intervals of now,
// ordered by node id, and drops the others.
func (m *Members) Alive(now time.Time) []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	out := make([]Status, 0, len(m.nodes))
	for _, mb := range m.nodes {
		out = append(out, mb.s)
	}
	slices.SortFunc(out, func(a, b Status) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return out
}

func (m *Members) expireLocked(now time.Time) {
	if m.busDown {
		return
	}
	limit := time.Duration(MissedBeats) * m.interval
	for id, mb := range m.nodes {
		if now.Sub(mb.seen) > limit {
			delete(m.nodes, id)
		}
	}
}
