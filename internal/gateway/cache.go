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
	// wait for one read instead of each making its own. Its size is
	// bounded by the auth requests in progress.
	loading map[string]*appLoad
}

// appLoad is one store read of an app that concurrent misses share; e and
// err are set before done is closed.
type appLoad struct {
	done chan struct{}
	e    appEntry
	err  error
	// stale (under appCache.mu): the app changed during the read, whose
	// result is then given to its waiters but not cached.
	stale bool
}

// appLoadTimeout bounds a shared read of an app. It does not depend on the
// context of the request that started it, whose end must not fail the
// others waiting for the same read.
const appLoadTimeout = 5 * time.Second

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
			l = c.startLoadLocked(id)
			go c.load(id, now, l)
		}
		c.mu.Unlock()
		return e, nil
	}
	if !loading {
		// This caller reads for everyone.
		l = c.startLoadLocked(id)
		c.mu.Unlock()
		c.load(id, now, l)
		return l.e, l.err
	}
	c.mu.Unlock()
	select {
	case <-l.done:
		return l.e, l.err
	case <-ctx.Done():
		return appEntry{}, ctx.Err()
	}
}

// startLoadLocked registers a read of app id, which the caller then runs.
func (c *appCache) startLoadLocked(id string) *appLoad {
	l := &appLoad{done: make(chan struct{})}
	if c.loading == nil {
		c.loading = make(map[string]*appLoad)
	}
	c.loading[id] = l
	return l
}

// load reads app id for the callers of get waiting on l, caches it and
// wakes them. It always ends within appLoadTimeout, sooner when the cache's
// context ends. A failed read leaves an older entry in place.
func (c *appCache) load(id string, now time.Time, l *appLoad) {
	ctx, cancel := context.WithTimeout(c.ctx, appLoadTimeout)
	defer cancel()
	l.e, l.err = c.read(ctx, id, now)
	c.mu.Lock()
	if c.loading[id] == l {
		delete(c.loading, id)
	}
	if errors.Is(l.err, store.ErrNotFound) {
		delete(c.m, id)
	}
	if l.err == nil && !l.stale {
		if len(c.m) >= c.max {
			evictOne(c.m)
		}
		c.m[id] = l.e
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
	if l, ok := c.loading[id]; ok {
		l.stale = true
		delete(c.loading, id)
	}
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
	st         store.Store
	ttl        time.Duration
	max        int
	maxMembers int
	now        func() time.Time

	mu sync.Mutex
	m  map[convKey]*convInfo
}

func (c *convCache) get(ctx context.Context, app, id string) (*convInfo, error) {
	k := convKey{app, id}
	now := c.now()
	c.mu.Lock()
	ci, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Sub(ci.at) < c.ttl {
		return ci, nil
	}
	conv, members, err := c.st.ConversationMembers(ctx, app, id, c.maxMembers)
	if err != nil {
		return nil, err
	}
	// isMember searches in Go's byte order, whatever the engine sorted by.
	slices.Sort(members)
	ci = &convInfo{conv: conv, members: members, at: now}
	c.mu.Lock()
	if len(c.m) >= c.max {
		evictOne(c.m)
	}
	c.m[k] = ci
	c.mu.Unlock()
	return ci, nil
}

func (c *convCache) drop(app, id string) {
	c.mu.Lock()
	delete(c.m, convKey{app, id})
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
