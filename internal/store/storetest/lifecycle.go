package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/floodgate/floodgate/internal/store"
)

func testPing(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	if err := s.Ping(ctxFor(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testClose(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice")
	appendMsg(t, s, "a", "g:1", "alice", "")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := ctxFor(t)
	for name, call := range allCalls("a", "g:1", "alice") {
		wantErr(t, name+" after Close", call(ctx, s), store.ErrClosed)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
}

func testCloseInFlight(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice")
	acks := closeWhileAppending(t, s, "a", "g:1")
	// Every append that got in was acknowledged (Close writes what is
	// queued), so the acknowledged seqs are exactly 1..n.
	seen := map[uint64]bool{}
	for _, r := range acks {
		seen[r.out.Seq] = true
	}
	for seq := uint64(1); seq <= uint64(len(acks)); seq++ {
		if !seen[seq] {
			t.Errorf("seq %d missing among %d acknowledged appends", seq, len(acks))
		}
	}
}

// closeWhileAppending runs 32 appenders to app's conv, closes s once the
// first append is acknowledged, and returns the acknowledged appends. Every
// append that fails must fail with store.ErrClosed.
func closeWhileAppending(t *testing.T, s store.Store, app, conv string) []appendResult {
	t.Helper()
	ctx := ctxFor(t)
	const workers, maxPerWorker = 32, 10000
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		acks    []appendResult
		once    sync.Once
		started = make(chan struct{})
	)
	for w := range workers {
		wg.Go(func() {
			for i := range maxPerWorker {
				m := store.NewMessage{App: app, Conv: conv, Sender: fmt.Sprintf("u%d", w),
					ClientMsgID: fmt.Sprintf("c%d", i), Body: body(fmt.Sprintf("%d/%d", w, i))}
				a, err := s.AppendMessage(ctx, m)
				if err != nil {
					if !errors.Is(err, store.ErrClosed) {
						t.Errorf("AppendMessage racing Close: %v, want success or ErrClosed", err)
					}
					return
				}
				mu.Lock()
				acks = append(acks, appendResult{in: m, out: a})
				mu.Unlock()
				once.Do(func() { close(started) })
			}
		})
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatalf("no append acknowledged: %v", ctx.Err())
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close with appends in flight: %v", err)
	}
	wg.Wait()
	return acks
}
