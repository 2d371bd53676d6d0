package bus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlushGroupSharesRoundTrips(t *testing.T) {
	var g flushGroup
	var flushes atomic.Int32
	release := make(chan struct{})
	flush := func() error {
		flushes.Add(1)
		<-release
		return nil
	}
	// The first caller's flush is in flight; everyone after it must wait
	// for a new one, which they share.
	first := make(chan error, 1)
	go func() { first <- g.do(context.Background(), flush) }()
	for flushes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	const callers = 100
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			if err := g.do(context.Background(), flush); err != nil {
				t.Error(err)
			}
		})
	}
	waitGroupState(t, &g, func() bool { return g.next != nil && g.next.callers == callers })
	if n := flushes.Load(); n != 1 {
		t.Fatalf("%d flushes started while the first was in flight, want 1", n)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := flushes.Load(); n != 2 {
		t.Fatalf("%d flushes for 1+%d callers, want 2", n, callers)
	}
}

// A caller must be answered by a flush that started after it called: one
// in flight when it arrived may have been sent before its subscription.
func TestFlushGroupNeverAnswersWithAnEarlierFlush(t *testing.T) {
	var g flushGroup
	var started atomic.Int64 // start time of the latest flush, ns
	flush := func() error {
		started.Store(time.Now().UnixNano())
		time.Sleep(time.Millisecond)
		return nil
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				called := time.Now().UnixNano()
				if err := g.do(context.Background(), flush); err != nil {
					t.Error(err)
					return
				}
				if s := started.Load(); s < called {
					t.Errorf("answered by a flush started %d ns before the call", called-s)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestFlushGroupErrorsAndContexts(t *testing.T) {
	var g flushGroup
	boom := errors.New("boom")
	if err := g.do(context.Background(), func() error { return boom }); err != boom {
		t.Fatalf("got %v, want the flush's error", err)
	}
	release := make(chan struct{})
	go func() { _ = g.do(context.Background(), func() error { <-release; return nil }) }()
	waitGroupState(t, &g, func() bool { return g.inflight != nil })
	// This caller leads the next wave, which waits for the one in flight;
	// a follower of that wave gives up when its own context ends.
	go func() { _ = g.do(context.Background(), func() error { return nil }) }()
	waitGroupState(t, &g, func() bool { return g.next != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := g.do(ctx, func() error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("follower got %v, want its deadline", err)
	}
	close(release)
}

// waitGroupState waits until cond, evaluated with g.mu held, is true.
func waitGroupState(t *testing.T, g *flushGroup, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		ok := cond()
		g.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("flush group never reached the expected state")
		}
		time.Sleep(time.Millisecond)
	}
}
