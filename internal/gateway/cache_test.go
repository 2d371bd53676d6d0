package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/memstore"
)

// slowApps counts the store reads of apps and holds each until release is
// closed.
type slowApps struct {
	store.Store
	reads   atomic.Int32
	release chan struct{}
}

func (s *slowApps) App(ctx context.Context, id string) (store.App, error) {
	s.reads.Add(1)
	select {
	case <-s.release:
	case <-ctx.Done():
		return store.App{}, ctx.Err()
	}
	return s.Store.App(ctx, id)
}

// newSlowCache returns an app cache over a store holding app1 (with
// secret s) whose app reads wait for st.release.
func newSlowCache(t *testing.T) (*appCache, *slowApps) {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	if err := mem.CreateApp(t.Context(), store.App{ID: "app1", Name: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	st := &slowApps{Store: mem, release: make(chan struct{})}
	return &appCache{ctx: t.Context(), st: st, ttl: time.Minute, max: 10, now: time.Now, m: map[string]appEntry{}}, st
}

// waitReads waits until a slow store has started n reads, failing the
// test after 10s: a read that never starts is a cache that did not ask.
func waitReads(t *testing.T, reads *atomic.Int32, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for reads.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d store reads after 10s, want %d", reads.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAppCacheSharesOneReadAmongConcurrentMisses(t *testing.T) {
	ctx := context.Background()
	c, st := newSlowCache(t)
	missTogether(t, &st.reads, st.release, func() error {
		e, err := c.get(ctx, "app1")
		if err == nil && e.app.Secret != "s" {
			t.Errorf("got secret %q", e.app.Secret)
		}
		return err
	})
	if _, err := c.get(ctx, "app1"); err != nil || st.reads.Load() != 1 {
		t.Fatalf("cached get: err %v, reads %d", err, st.reads.Load())
	}
}

func TestAppCacheWaiterHonoursItsContext(t *testing.T) {
	c, st := newSlowCache(t)
	go func() { _, _ = c.get(context.Background(), "app1") }()
	waitReads(t, &st.reads, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.get(ctx, "app1"); err != context.DeadlineExceeded {
		t.Fatalf("waiter got %v, want its own deadline", err)
	}
	close(st.release)
}

func TestAppCacheDropDuringReadIsNotCached(t *testing.T) {
	ctx := context.Background()
	c, st := newSlowCache(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.get(ctx, "app1")
	}()
	waitReads(t, &st.reads, 1)
	c.drop("app1") // the app changed while it was being read
	close(st.release)
	<-done
	if _, err := c.get(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	if n := st.reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2: a read that overlapped a change must not be cached", n)
	}
}

// failingApps fails every read of an app while fail is set.
type failingApps struct {
	store.Store
	reads atomic.Int32
	fail  atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *failingApps) App(ctx context.Context, id string) (store.App, error) {
	s.reads.Add(1)
	if s.fail.Load() {
		return store.App{}, errStoreDown
	}
	return s.Store.App(ctx, id)
}

// An expired entry keeps answering at once while one background read
// refreshes it, and while the store fails, up to appStaleLimit past the
// TTL; then the store's error shows.
func TestAppCacheServesStaleEntryWhileStoreFails(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	if err := mem.CreateApp(ctx, store.App{ID: "app1", Name: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	st := &failingApps{Store: mem}
	var clock atomic.Int64
	t0 := time.Unix(1_000_000, 0)
	now := func() time.Time { return t0.Add(time.Duration(clock.Load())) }
	c := &appCache{ctx: t.Context(), st: st, ttl: time.Minute, max: 10, now: now, m: map[string]appEntry{}}

	if _, err := c.get(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	clock.Store(int64(2 * time.Minute))
	for i := range 3 {
		e, err := c.get(ctx, "app1")
		if err != nil || e.app.Secret != "s" {
			t.Fatalf("get %d of an expired entry with the store failing: %+v, %v", i, e, err)
		}
	}
	waitLoaded(t, c, "app1")
	if n := st.reads.Load(); n < 2 || n > 4 {
		t.Fatalf("%d store reads, want the first and at most one per get since", n)
	}

	clock.Store(int64(time.Minute + appStaleLimit))
	if _, err := c.get(ctx, "app1"); !errors.Is(err, errStoreDown) {
		t.Fatalf("get of an entry past the stale limit: %v, want the store's error", err)
	}

	// The store is back: the background refresh replaces the entry.
	st.fail.Store(false)
	clock.Store(int64(3 * time.Minute))
	if _, err := c.get(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, c, "app1")
	c.mu.Lock()
	at := c.m["app1"].at
	c.mu.Unlock()
	if !at.Equal(now()) {
		t.Fatalf("entry read at %v, want refreshed at %v", at, now())
	}
}

// waitLoaded waits until no read of app id is in progress.
func waitLoaded(t *testing.T, c *appCache, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		_, loading := c.loading[id]
		c.mu.Unlock()
		if !loading {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("app read still in progress after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// slowConvs counts the store reads of conversations and holds each until
// release is closed.
type slowConvs struct {
	store.Store
	reads   atomic.Int32
	release chan struct{}
}

func (s *slowConvs) ConversationMembers(ctx context.Context, app, id string, limit int) (store.Conversation, []string, error) {
	s.reads.Add(1)
	select {
	case <-s.release:
	case <-ctx.Done():
		return store.Conversation{}, nil, ctx.Err()
	}
	return s.Store.ConversationMembers(ctx, app, id, limit)
}

// newSlowConvCache returns a conversation cache over a store holding group
// g1 of app1 (members bob and alice), whose reads wait for st.release.
func newSlowConvCache(t *testing.T) (*convCache, *slowConvs) {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	if err := mem.CreateApp(t.Context(), store.App{ID: "app1", Name: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.CreateConversation(t.Context(), store.Conversation{App: "app1", ID: "g1", Kind: store.KindGroup}, []string{"bob", "alice"}); err != nil {
		t.Fatal(err)
	}
	st := &slowConvs{Store: mem, release: make(chan struct{})}
	return &convCache{ctx: t.Context(), st: st, ttl: time.Minute, max: 10, maxMembers: 100, now: time.Now, m: map[convKey]*convInfo{}}, st
}

// Concurrent misses of one conversation (a room's members all sending after
// a restart) share one store read, whose result every caller gets.
func TestConvCacheSharesOneReadAmongConcurrentMisses(t *testing.T) {
	c, st := newSlowConvCache(t)
	missTogether(t, &st.reads, st.release, func() error {
		ci, err := c.get(context.Background(), "app1", "g1")
		if err == nil && !ci.isMember("alice") {
			t.Errorf("members %v", ci.members)
		}
		return err
	})
}

// missTogether runs get from 50 goroutines at once while the store holds
// its reads (counted by reads) until release is closed, and wants every
// get to succeed after exactly one read.
func missTogether(t *testing.T, reads *atomic.Int32, release chan struct{}, get func() error) {
	t.Helper()
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() { errs <- get() })
	}
	waitReads(t, reads, 1)
	// Every caller is waiting (or about to) while the one read is held;
	// one that arrives after the release finds the cached entry, so the
	// count below does not depend on this pause.
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d store reads for %d concurrent misses, want 1", n, callers)
	}
}

// A membership change during a read drops it: the next miss reads afresh
// rather than wait for the older read, and only the newer one is cached.
func TestConvCacheDropDuringRead(t *testing.T) {
	c, st := newSlowConvCache(t)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.get(context.Background(), "app1", "g1") })
	waitReads(t, &st.reads, 1)
	c.drop("app1", "g1") // e.g. carol joined while g1 was being read
	var newer *convInfo
	wg.Go(func() { newer, _ = c.get(context.Background(), "app1", "g1") })
	waitReads(t, &st.reads, 2) // not waiting for the dropped read
	close(st.release)
	wg.Wait()
	ci, err := c.get(context.Background(), "app1", "g1")
	if err != nil {
		t.Fatal(err)
	}
	if ci != newer || st.reads.Load() != 2 {
		t.Fatalf("cached entry %p after %d reads, want the newer read's %p after 2", ci, st.reads.Load(), newer)
	}
}

// The read does not depend on the context of the caller that started it:
// its end must not fail the others waiting.
func TestConvCacheReadOutlivesItsCaller(t *testing.T) {
	c, st := newSlowConvCache(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var first error
	wg.Go(func() { _, first = c.get(ctx, "app1", "g1") })
	waitReads(t, &st.reads, 1)
	var waiter error
	wg.Go(func() { _, waiter = c.get(context.Background(), "app1", "g1") })
	cancel()
	close(st.release)
	wg.Wait()
	if first != nil || waiter != nil {
		t.Fatalf("after the first caller's context ended: first %v, waiter %v", first, waiter)
	}
}
