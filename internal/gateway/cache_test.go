package gateway

import (
	"context"
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
	return &appCache{st: st, ttl: time.Minute, max: 10, now: time.Now, m: map[string]appEntry{}}, st
}

// waitForRead waits until the slow store has been asked for an app.
func waitForRead(st *slowApps) {
	for st.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
}

func TestAppCacheSharesOneReadAmongConcurrentMisses(t *testing.T) {
	ctx := context.Background()
	c, st := newSlowCache(t)

	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			e, err := c.get(ctx, "app1")
			if err == nil && e.app.Secret != "s" {
				t.Errorf("got secret %q", e.app.Secret)
			}
			errs <- err
		})
	}
	// Every caller is waiting (or about to) while the one read is held;
	// one that arrives after the release finds the cached entry, so the
	// count below does not depend on this pause.
	waitForRead(st)
	time.Sleep(20 * time.Millisecond)
	close(st.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := st.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for %d concurrent misses, want 1", n, callers)
	}
	if _, err := c.get(ctx, "app1"); err != nil || st.reads.Load() != 1 {
		t.Fatalf("cached get: err %v, reads %d", err, st.reads.Load())
	}
}

func TestAppCacheWaiterHonoursItsContext(t *testing.T) {
	c, st := newSlowCache(t)
	go func() { _, _ = c.get(context.Background(), "app1") }()
	waitForRead(st)
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
	waitForRead(st)
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
