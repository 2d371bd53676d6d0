package gateway

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/memstore"
	"github.com/floodgate/floodgate/protocol"
)

// stateReads counts the sequence-state reads a sync makes.
type stateReads struct {
	store.Store
	mu        sync.Mutex
	userConvs int
	byID      [][]string // the ids of each ConvStates call
}

func (s *stateReads) UserConversations(ctx context.Context, app, user string, limit int) ([]store.ConvState, error) {
	s.mu.Lock()
	s.userConvs++
	s.mu.Unlock()
	return s.Store.UserConversations(ctx, app, user, limit)
}

func (s *stateReads) ConvStates(ctx context.Context, app, user string, ids []string) ([]store.ConvState, error) {
	s.mu.Lock()
	s.byID = append(s.byID, slices.Clone(ids))
	s.mu.Unlock()
	return s.Store.ConvStates(ctx, app, user, ids)
}

func (s *stateReads) reset() (userConvs int, byID [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	userConvs, byID = s.userConvs, s.byID
	s.userConvs, s.byID = 0, nil
	return userConvs, byID
}

// A sync with all=true answers the listed conversations the user is a
// member of from the one read of the user's conversations; only the others
// (here one the user is not in) are read by id, and the reply is the same
// as reading each by id.
func TestSyncReadsStatesOnce(t *testing.T) {
	ctx := t.Context()
	reads := &stateReads{Store: memstore.New(memstore.Options{})}
	g := newTestGateway(t, newFakeBus(), func(o *Options) { o.Store = reads })
	if err := reads.CreateApp(ctx, store.App{ID: "a", Name: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id      string
		members []string
	}{{"g1", []string{"alice", "bob"}}, {"g2", []string{"bob"}}, {"g3", []string{"alice"}}} {
		if _, err := reads.CreateConversation(ctx, store.Conversation{App: "a", ID: c.id, Kind: store.KindGroup, Creator: "bob"}, c.members); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if _, err := reads.AppendMessage(ctx, store.NewMessage{App: "a", Conv: c.id, Sender: "bob",
				ClientMsgID: c.id + string(rune('0'+i)), Body: []byte(`"hi"`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	reads.reset()
	alice := Caller{App: "a", User: "alice"}

	res, perr := g.sync(ctx, alice, protocol.SyncArgs{Convs: map[string]uint64{"g1": 1, "g2": 0}, All: true})
	if perr != nil {
		t.Fatal(perr)
	}
	if uc, byID := reads.reset(); uc != 1 || !slices.EqualFunc(byID, [][]string{{"g2"}}, slices.Equal) {
		t.Fatalf("store reads: %d UserConversations, ConvStates %v; want 1 and [[g2]]", uc, byID)
	}
	got := map[string]protocol.SyncConv{}
	for _, sc := range res.Convs {
		got[sc.Conv] = sc
	}
	if len(got) != 3 || !got["g2"].Gone || got["g1"].Gone || got["g3"].Gone {
		t.Fatalf("sync reply %+v: want g1 and g3 readable, g2 gone", res.Convs)
	}
	if m := got["g1"].Messages; len(m) != 1 || m[0].Seq != 2 || got["g1"].LastSeq != 2 {
		t.Fatalf("g1: %+v, want seq 2 only (the client had 1)", got["g1"])
	}
	if m := got["g3"].Messages; len(m) != 2 || m[0].Seq != 1 {
		t.Fatalf("g3 (not listed): %+v, want seqs 1 and 2", got["g3"])
	}

	// Every listed conversation is among the user's: no read by id.
	if _, perr := g.sync(ctx, alice, protocol.SyncArgs{Convs: map[string]uint64{"g1": 2, "g3": 2}, All: true}); perr != nil {
		t.Fatal(perr)
	}
	if uc, byID := reads.reset(); uc != 1 || len(byID) != 0 {
		t.Fatalf("store reads: %d UserConversations, ConvStates %v; want 1 and none", uc, byID)
	}

	// Without all, the listed conversations are read by id only.
	if _, perr := g.sync(ctx, alice, protocol.SyncArgs{Convs: map[string]uint64{"g1": 2}}); perr != nil {
		t.Fatal(perr)
	}
	if uc, byID := reads.reset(); uc != 0 || !slices.EqualFunc(byID, [][]string{{"g1"}}, slices.Equal) {
		t.Fatalf("store reads: %d UserConversations, ConvStates %v; want 0 and [[g1]]", uc, byID)
	}
}

// A catch-up resync is sent unless a complete full sync began at or after
// its due time: one that listed every room of the session and was not cut
// short.
func TestCatchUpSkippedAfterFullSync(t *testing.T) {
	ctx := t.Context()
	clk := &clock{t: time.Unix(1000, 0)}
	g := newTestGateway(t, newFakeBus(), func(o *Options) { o.Now = clk.now; o.CatchUp = 2 * time.Second })
	if err := g.st.CreateApp(ctx, store.App{ID: "a", Name: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.st.CreateConversation(ctx, store.Conversation{App: "a", ID: "r1", Kind: store.KindRoom, Creator: "bob"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		syncAt   time.Duration // after the subscription; <0: no sync
		args     protocol.SyncArgs
		inRoom   bool
		resynced bool
	}{
		{"no sync", -1, protocol.SyncArgs{}, false, true},
		{"full sync before the due time", time.Second, protocol.SyncArgs{All: true}, false, true},
		{"full sync at the due time", 2 * time.Second, protocol.SyncArgs{All: true}, false, false},
		{"sync without all", 3 * time.Second, protocol.SyncArgs{Convs: map[string]uint64{"r1": 0}}, false, true},
		{"full sync leaving out a room", 3 * time.Second, protocol.SyncArgs{All: true}, true, true},
		{"full sync listing the room", 3 * time.Second, protocol.SyncArgs{All: true, Convs: map[string]uint64{"r1": 0}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := &fakeConn{id: 1, keep: true}
			s := &Session{g: g, conn: conn, id: 1, app: "a", user: "alice"}
			s.authed.Store(true)
			if tc.inRoom {
				s.rooms = map[string]struct{}{"r1": {}}
			}
			subscribed := clk.now()
			g.scheduleCatchUp(s)
			if tc.syncAt >= 0 {
				clk.add(tc.syncAt)
				if _, perr := g.sync(ctx, s.caller(), tc.args); perr != nil {
					t.Fatal(perr)
				}
			}
			clk.add(time.Hour)
			for _, e := range g.catchUps.due(clk.now()) {
				if !e.at.Equal(subscribed.Add(2 * time.Second)) {
					t.Fatalf("catch-up due at %v, want 2s after %v", e.at, subscribed)
				}
				g.catchUpDue(e, 0)
			}
			if got := conn.sent.Load() == 1; got != tc.resynced {
				t.Fatalf("resync sent: %v, want %v (frames %d)", got, tc.resynced, conn.sent.Load())
			}
		})
	}
}

// No catch-up is scheduled when the node's interest in every topic the
// session followed is older than the catch-up delay: it has reached every
// bus server. One fresh topic is enough to schedule it.
func TestCatchUpSkippedWhenInterestSettled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		age       time.Duration // of every subscribed topic
		subscribe []bus.Topic
		scheduled bool
	}{
		{"settled", 3 * time.Second, []bus.Topic{userTopic, appTopic}, false},
		{"fresh", time.Second, []bus.Topic{userTopic, appTopic}, true},
		{"one topic not followed", 3 * time.Second, []bus.Topic{appTopic}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBus()
			fb.age = tc.age
			g := newTestGateway(t, fb, func(o *Options) { o.CatchUp = 2 * time.Second })
			for _, tp := range tc.subscribe {
				_ = fb.Subscribe(t.Context(), tp)
			}
			s := &Session{g: g, conn: &fakeConn{id: 1, keep: true}, id: 1, app: "a", user: "alice"}
			g.scheduleCatchUp(s, userTopic, appTopic)
			g.catchUps.mu.Lock()
			n := len(g.catchUps.pending)
			g.catchUps.mu.Unlock()
			if got := n == 1; got != tc.scheduled {
				t.Errorf("catch-up scheduled: %v, want %v", got, tc.scheduled)
			}
			var m dto.Metric
			if err := g.m.CatchUpsSkipped.Write(&m); err != nil {
				t.Fatal(err)
			}
			if skipped := m.GetCounter().GetValue() == 1; skipped == tc.scheduled {
				t.Errorf("skip counted: %v with the catch-up scheduled: %v", skipped, tc.scheduled)
			}
		})
	}
}

var (
	userTopic = bus.Topic{Kind: bus.User, App: "a", ID: "alice"}
	appTopic  = bus.Topic{Kind: bus.App, App: "a"}
)
