package gateway

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
)

// hubShards spreads topics over independently locked shards, so fan-out to
// one big room locks one shard and joins elsewhere proceed.
const hubShards = 64

// hub is the registry of which local sessions (and presence watches) follow
// which bus topic, and owns the node's bus subscriptions: one per distinct
// topic, never one per connection. A topic left empty is unsubscribed only
// after a grace period, so a client that flaps does not churn the bus.
type hub struct {
	bus    bus.Bus
	grace  time.Duration
	now    func() time.Time
	seed   maphash.Seed
	shards [hubShards]hubShard
}

type hubShard struct {
	mu     sync.RWMutex
	topics map[bus.Topic]*entry
}

// entry is one topic's local followers.
type entry struct {
	// sessions is a slice, not a set: most users have one or two
	// connections on a node, and a slice of them costs a fraction of a map
	// per user (and is faster to walk for fan-out to a big room). Topics
	// with many sessions (a big room, an app) also get index, so that a
	// session leaves in constant time.
	sessions []*Session
	index    map[*Session]int
	watches  map[*watch]struct{}
	// ready is closed once the first subscribe attempt finished; subscribed
	// says whether it (or a later retry) succeeded.
	ready      chan struct{}
	subscribed bool
	// emptySince is when the last follower left; zero while followed.
	emptySince time.Time
	// presence: the nodes on which the watched user is online.
	onlineNodes map[string]struct{}
}

func (e *entry) empty() bool { return len(e.sessions) == 0 && len(e.watches) == 0 }

// indexAt is the number of sessions from which a topic keeps an index.
const indexAt = 32

// add adds s, once: a session follows a topic at most once (its callers
// check), so only an indexed topic checks again.
func (e *entry) add(s *Session) {
	if e.index != nil {
		if _, ok := e.index[s]; ok {
			return
		}
		e.index[s] = len(e.sessions)
	}
	e.sessions = append(e.sessions, s)
	if e.index == nil && len(e.sessions) > indexAt {
		e.index = make(map[*Session]int, len(e.sessions))
		for i, x := range e.sessions {
			e.index[x] = i
		}
	}
}

// remove removes s by swapping the last session into its place (order
// among a topic's sessions does not matter) and reports whether it was
// there.
func (e *entry) remove(s *Session) bool {
	i := -1
	if e.index != nil {
		if j, ok := e.index[s]; ok {
			i = j
			delete(e.index, s)
		}
	} else {
		i = slices.Index(e.sessions, s)
	}
	if i < 0 {
		return false
	}
	n := len(e.sessions) - 1
	if i != n {
		e.sessions[i] = e.sessions[n]
		if e.index != nil {
			e.index[e.sessions[i]] = i
		}
	}
	e.sessions[n] = nil
	e.sessions = e.sessions[:n]
	if n == 0 {
		e.sessions, e.index = nil, nil
	}
	return true
}

func newHub(b bus.Bus, grace time.Duration, now func() time.Time) *hub {
	h := &hub{bus: b, grace: grace, now: now, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].topics = make(map[bus.Topic]*entry)
	}
	return h
}

func (h *hub) shard(t bus.Topic) *hubShard {
	var m maphash.Hash
	m.SetSeed(h.seed)
	m.WriteByte(byte(t.Kind))
	m.WriteString(t.App)
	m.WriteByte(0)
	m.WriteString(t.ID)
	return &h.shards[m.Sum64()%hubShards]
}

// follow adds s (or w) to t's followers, subscribing the node to t if it is
// not yet, and returns once the subscription is in place (or failed, or ctx
// ended). first reports whether t had no local session before. A failed
// subscription is not fatal: the follower stays registered, the janitor
// retries and then tells the followers to resync.
func (h *hub) follow(ctx context.Context, t bus.Topic, s *Session, w *watch) (first bool, err error) {
	sh := h.shard(t)
	sh.mu.Lock()
	e, ok := sh.topics[t]
	subscriber := false
	if !ok {
		e = &entry{ready: make(chan struct{})}
		sh.topics[t] = e
		subscriber = true
	}
	if s != nil {
		first = len(e.sessions) == 0
		e.add(s)
	}
	if w != nil {
		if e.watches == nil {
			e.watches = make(map[*watch]struct{})
		}
		e.watches[w] = struct{}{}
	}
	e.emptySince = time.Time{}
	sh.mu.Unlock()

	if subscriber {
		err = h.bus.Subscribe(ctx, t)
		sh.mu.Lock()
		e.subscribed = err == nil
		close(e.ready)
		sh.mu.Unlock()
		return first, err
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return first, ctx.Err()
	}
	return first, nil
}

// unfollow removes s (or w) from t's followers and reports whether s was
// t's last session.
func (h *hub) unfollow(t bus.Topic, s *Session, w *watch) (last bool) {
	sh := h.shard(t)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.topics[t]
	if !ok {
		return false
	}
	if s != nil {
		if e.remove(s) {
			last = len(e.sessions) == 0
		}
	}
	if w != nil {
		delete(e.watches, w)
	}
	if e.empty() {
		e.emptySince = h.now()
	}
	return last
}

// sessions calls fn for each local session following t, under the shard's
// read lock: fn must not block (Conn.Send never does).
func (h *hub) sessions(t bus.Topic, fn func(*Session)) {
	sh := h.shard(t)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if e, ok := sh.topics[t]; ok {
		for _, s := range e.sessions {
			fn(s)
		}
	}
}

// count returns how many local sessions follow t.
func (h *hub) count(t bus.Topic) int {
	sh := h.shard(t)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if e, ok := sh.topics[t]; ok {
		return len(e.sessions)
	}
	return 0
}

// presence records that user t is online (or not) on node, and returns the
// watches to notify and the new aggregate state when it changed.
func (h *hub) presence(t bus.Topic, node string, online bool) (notify []*watch, nowOnline bool) {
	sh := h.shard(t)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.topics[t]
	if !ok {
		return nil, false
	}
	before := len(e.onlineNodes) > 0
	if online {
		if e.onlineNodes == nil {
			e.onlineNodes = make(map[string]struct{})
		}
		e.onlineNodes[node] = struct{}{}
	} else {
		delete(e.onlineNodes, node)
	}
	after := len(e.onlineNodes) > 0
	if before == after {
		return nil, after
	}
	for w := range e.watches {
		notify = append(notify, w)
	}
	return notify, after
}

// nodeGone forgets that anyone is online on node, and returns, per watched
// user whose overall state flipped to offline, the watches to notify.
func (h *hub) nodeGone(node string) map[bus.Topic][]*watch {
	out := make(map[bus.Topic][]*watch)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for t, e := range sh.topics {
			if _, ok := e.onlineNodes[node]; !ok {
				continue
			}
			delete(e.onlineNodes, node)
			if len(e.onlineNodes) == 0 {
				for w := range e.watches {
					out[t] = append(out[t], w)
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// seedPresence sets the nodes a watched user is online on, from a
// presence query, unless events already arrived for it.
func (h *hub) seedPresence(t bus.Topic, nodes []string) {
	sh := h.shard(t)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.topics[t]
	if !ok || e.onlineNodes != nil {
		return
	}
	e.onlineNodes = make(map[string]struct{}, len(nodes))
	for _, n := range nodes {
		e.onlineNodes[n] = struct{}{}
	}
}

// sweep unsubscribes topics that stayed empty for the grace period and
// retries failed subscriptions; it returns the sessions of topics whose
// subscription was just repaired (they may have missed messages).
func (h *hub) sweep(ctx context.Context) (repaired []*Session) {
	now := h.now()
	for i := range h.shards {
		sh := &h.shards[i]
		var retry []bus.Topic
		sh.mu.Lock()
		for t, e := range sh.topics {
			if e.empty() {
				// Unsubscribing under the lock orders it before any
				// re-subscription of the same topic by a new follower. Over
				// the node's subscription rate the topic stays for the next
				// sweep.
				if !e.emptySince.IsZero() && now.Sub(e.emptySince) >= h.grace && isClosed(e.ready) &&
					(!e.subscribed || h.bus.Unsubscribe(t) == nil) {
					delete(sh.topics, t)
				}
				continue
			}
			if !e.subscribed && isClosed(e.ready) {
				retry = append(retry, t)
			}
		}
		sh.mu.Unlock()
		for _, t := range retry {
			if err := h.bus.Subscribe(ctx, t); err != nil {
				continue
			}
			sh.mu.Lock()
			if e, ok := sh.topics[t]; ok {
				e.subscribed = true
				repaired = append(repaired, e.sessions...)
			}
			sh.mu.Unlock()
		}
	}
	return repaired
}

// topicCount returns how many topics the hub tracks (subscribed or in
// grace).
func (h *hub) topicCount() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		n += len(sh.topics)
		sh.mu.RUnlock()
	}
	return n
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
