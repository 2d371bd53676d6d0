package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// RunPersistence runs the durability tests of an engine that persists: open
// must open the store kept in dir (a directory the suite creates empty), and
// a later open of the same dir must see everything acknowledged before the
// previous store was closed. The suite closes every store it opens.
func RunPersistence(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	o := func(t *testing.T, dir string) store.Store { return opened(t, open(t, dir)) }
	t.Run("ReopenKeepsEverything", func(t *testing.T) { testReopen(t, o) })
	t.Run("CloseWithAppendsInFlight", func(t *testing.T) { testReopenInFlight(t, o) })
}

func testReopen(t *testing.T, open func(*testing.T, string) store.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := ctxFor(t)
	convs := []string{"g:1", "g:2", "r:1", "d:ab"}
	users := []string{"alice", "bob", "carol", "u0", "u7"}

	createApp(t, s, "a")
	createApp(t, s, "b")
	if _, err := s.RotateAppSecret(ctx, "a", "rotated", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatalf("RotateAppSecret: %v", err)
	}
	if err := s.SetAppDisabled(ctx, "b", true); err != nil {
		t.Fatalf("SetAppDisabled: %v", err)
	}
	createGroup(t, s, "a", "g:1", "alice", "bob", "u0")
	createGroup(t, s, "a", "g:2", "alice")
	createConv(t, s, "a", "r:1", store.KindRoom)
	if _, err := s.EnsureDirect(ctx, "a", "d:ab", "alice", "bob"); err != nil {
		t.Fatalf("EnsureDirect: %v", err)
	}
	results := appendConcurrently(t, s, 16, 8, func(w, i int) store.NewMessage {
		return store.NewMessage{App: "a", Conv: []string{"g:1", "r:1", "d:ab"}[w%3], Sender: fmt.Sprintf("u%d", w),
			ClientMsgID: fmt.Sprintf("m%d", i), Body: body(fmt.Sprintf("%d/%d", w, i))}
	})
	for _, rs := range results {
		for _, r := range rs {
			if r.err != nil {
				t.Fatalf("AppendMessage: %v", r.err)
			}
		}
	}
	if _, err := s.AddMembers(ctx, "a", "g:1", []string{"carol"}); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if _, err := s.RemoveMembers(ctx, "a", "g:1", []string{"bob"}); err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	if _, err := s.SetReadSeq(ctx, "a", "d:ab", "alice", 3); err != nil {
		t.Fatalf("SetReadSeq: %v", err)
	}
	if err := s.RevokeSessions(ctx, "a", "alice", time.Date(2025, 2, 3, 4, 5, 6, 7000000, time.UTC)); err != nil {
		t.Fatalf("RevokeSessions: %v", err)
	}
	before := map[string]snapshot{"a": takeSnapshot(t, s, "a", convs, users), "b": takeSnapshot(t, s, "b", convs, users)}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for round := range 2 {
		s = open(t, dir)
		for app, want := range before {
			if diff := want.diff(takeSnapshot(t, s, app, convs, users)); diff != "" {
				t.Errorf("reopen %d: app %s differs:\n%s", round+1, app, diff)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}

	// Seqs continue and dedupe still finds messages written before.
	s = open(t, dir)
	g1 := getConv(t, s, "a", "g:1")
	if a := appendMsg(t, s, "a", "g:1", "alice", ""); a.Seq != g1.LastSeq+1 {
		t.Errorf("first append after reopen: seq %d, want %d", a.Seq, g1.LastSeq+1)
	}
	if a := appendMsg(t, s, "a", "g:1", "u0", "m0"); !a.Duplicate {
		t.Errorf("a client id sent before the reopen was not deduplicated: %s", fmtMessage(a.Message))
	}
	apps, err := s.Apps(ctx)
	if err != nil || len(apps) != 2 {
		t.Errorf("Apps after reopen = %v, %v", apps, err)
	}
}

func testReopenInFlight(t *testing.T, open func(*testing.T, string) store.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice")
	acks := closeWhileAppending(t, s, "a", "g:1")

	s = open(t, dir)
	// Close writes everything queued, so nothing beyond the acknowledged
	// appends can be in the log, and every one of them must be.
	checkConversationLog(t, s, "a", "g:1", acks)
}
