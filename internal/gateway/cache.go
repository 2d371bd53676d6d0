package gateway

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// appCache keeps apps read from the store for a short time: every auth
// needs the app's secret, and a connect storm must not become a read storm.
// Changes reach other nodes as bus control messages that drop the entry;
// when such a message is lost, the TTL (plus the one read that refreshes an
// expired entry) bounds staleness, or appStaleLimit while the store cannot
// be read.
type appCache struct {
	// ctx ends background refreshes when the gateway closes.
	ctx context.Context
	st  store.Store
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]appEntry
	// loading holds the store reads in progress, one per app: after a
	// restart every client of an app authenticates at once, and they all
	// wait for one read instead of each making its own.
	loading loads[string, appEntry]
}

// sharedLoad is one store read that concurrent cache misses share; v and
// err are set before done is closed.
type sharedLoad[V any] struct {
	done chan struct{}
	v    V
	err  error
	// stale (under the cache's mutex): the value changed during the read,
	// whose result is then given to its waiters but not cached.
	stale bool
}

// wait returns l's result once it is read, or ctx's error first.
func (l *sharedLoad[V]) wait(ctx context.Context) (V, error) {
	select {
	case <-l.done:
		return l.v, l.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// loads are a cache's reads in progress, one per key, used under the
// cache's mutex. Their number is bounded by the requests in progress.
type loads[K comparable, V any] map[K]*sharedLoad[V]

// start registers a read of k, which the caller then runs and ends with
// finish.
func (ls *loads[K, V]) start(k K) *sharedLoad[V] {
	l := &sharedLoad[V]{done: make(chan struct{})}
	if *ls == nil {
		*ls = make(loads[K, V])
	}
	(*ls)[k] = l
	return l
}

// finish unregisters l, unless drop already did.
func (ls loads[K, V]) finish(k K, l *sharedLoad[V]) {
	if ls[k] == l {
		delete(ls, k)
	}
}

// drop marks k's read in progress stale, and lets the next miss start a
// read of its own.
func (ls loads[K, V]) drop(k K) {
	if l, ok := ls[k]; ok {
		l.stale = true
		delete(ls, k)
	}
}

// loadTimeout bounds a shared read. It does not depend on the context of
// the request that started it, whose end must not fail the others waiting
// for the same read.
const loadTimeout = 5 * time.Second

// appStaleLimit is how long past its TTL an entry still answers, while one
// read refreshes it in the background: a slow or failing store must not
// fail (or slow down) the connects of apps this node already knows. A
// change to an app drops its entry on every node at once, over the bus, so
// an entry older than the TTL serves only when such a message was lost and
// the store cannot be read either.
const appStaleLimit = 10 * time.Minute

type appEntry struct {
	app store.App
	// revoked is the app's latest session revocation: tokens issued after
	// it need no per-user lookup.
	revoked time.Time
	at      time.Time
}

func (c *appCache) get(ctx context.Context, id string) (appEntry, error) {
	now := c.now()
	c.mu.Lock()
	e, cached := c.m[id]
	if cached && now.Sub(e.at) < c.ttl {
		c.mu.Unlock()
		return e, nil
	}
	l, loading := c.loading[id]
	if cached && now.Sub(e.at) < c.ttl+appStaleLimit {
		// Answer from the old entry; one read refreshes it meanwhile.
		if !loading {
			l = c.loading.start(id)
			go c.load(id, now, l)
		}
		c.mu.Unlock()
		return e, nil
	}
	if !loading {
		// This caller reads for everyone.
		l = c.loading.start(id)
		c.mu.Unlock()
		c.load(id, now, l)
		return l.v, l.err
	}
	c.mu.Unlock()
	return l.wait(ctx)
}

// load reads app id for the callers of get waiting on l, caches it and
// wakes them. It always ends within loadTimeout, sooner when the cache's
// context ends. A failed read leaves an older entry in place.
func (c *appCache) load(id string, now time.Time, l *sharedLoad[appEntry]) {
	ctx, cancel := context.WithTimeout(c.ctx, loadTimeout)
	defer cancel()
	l.v, l.err = c.read(ctx, id, now)
	c.mu.Lock()
	c.loading.finish(id, l)
	if errors.Is(l.err, store.ErrNotFound) {
		delete(c.m, id)
	}
	if l.err == nil && !l.stale {
		if len(c.m) >= c.max {
			evictOne(c.m)
		}
		c.m[id] = l.v
	}
	c.mu.Unlock()
	close(l.done)
}

func (c *appCache) read(ctx context.Context, id string, now time.Time) (appEntry, error) {
	a, err := c.st.App(ctx, id)
	if err != nil {
		return appEntry{}, err
	}
	revoked, err := c.st.LatestRevocation(ctx, id)
	if err != nil {
		return appEntry{}, err
	}
	return appEntry{app: a, revoked: revoked, at: now}, nil
}

func (c *appCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.loading.drop(id)
	c.mu.Unlock()
}

// convInfo is what the send path needs about a conversation: its kind and,
// for direct and group conversations, its members sorted by id.
type convInfo struct {
	conv    store.Conversation
	members []string
	at      time.Time
}

func (ci *convInfo) isMember(user string) bool {
	_, ok := slices.BinarySearch(ci.members, user)
	return ok
}

type convKey struct{ app, id string }

// convCache keeps conversation kinds and member lists for fan-out, bounded
// in entries. Membership changes drop the entry here and, through the bus,
// on other nodes; the TTL bounds staleness when that message is lost (a
// stale list can only delay a live delivery, which sync then heals).
type convCache struct {
	// ctx ends shared reads when the gateway closes.
	ctx        context.Context
	st         store.Store
	ttl        time.Duration
	max        int
	maxMembers int
	now        func() time.Time

	mu sync.Mutex
	m  map[convKey]*convInfo
	// loading holds the store reads in progress, one per conversation:
	// after a restart, a room's members all send or join at once, and they
	// all wait for one read of its member list instead of each making its
	// own.
	loading loads[convKey, *convInfo]
}

func (c *convCache) get(ctx context.Context, app, id string) (*convInfo, error) {
	k := convKey{app, id}
	now := c.now()
	c.mu.Lock()
	if ci, ok := c.m[k]; ok && now.Sub(ci.at) < c.ttl {
		c.mu.Unlock()
		return ci, nil
	}
	if l, ok := c.loading[k]; ok {
		c.mu.Unlock()
		return l.wait(ctx)
	}
	// This caller reads for everyone.
	l := c.loading.start(k)
	c.mu.Unlock()
	c.load(k, now, l)
	return l.v, l.err
}

// load reads conversation k for the callers of get waiting on l, caches it
// and wakes them, within loadTimeout.
func (c *convCache) load(k convKey, now time.Time, l *sharedLoad[*convInfo]) {
	ctx, cancel := context.WithTimeout(c.ctx, loadTimeout)
	defer cancel()
	conv, members, err := c.st.ConversationMembers(ctx, k.app, k.id, c.maxMembers)
	if err == nil {
		// isMember searches in Go's byte order, whatever the engine sorted by.
		slices.Sort(members)
		l.v = &convInfo{conv: conv, members: members, at: now}
	}
	l.err = err
	c.mu.Lock()
	c.loading.finish(k, l)
	if err == nil && !l.stale {
		if len(c.m) >= c.max {
			evictOne(c.m)
		}
		c.m[k] = l.v
	}
	c.mu.Unlock()
	close(l.done)
}

// drop forgets conversation app/id, and lets the next miss read it afresh
// even while an older read is in progress.
func (c *convCache) drop(app, id string) {
	k := convKey{app, id}
	c.mu.Lock()
	delete(c.m, k)
	c.loading.drop(k)
	c.mu.Unlock()
}

// evictOne removes an arbitrary entry; Go's randomised map iteration makes
// it a random eviction, which is good enough for a TTL cache.
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}
