package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/memstore"
	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

// fakeConn is a transport.Conn that records what is sent to it.
type fakeConn struct {
	id     uint64
	sent   atomic.Int64
	mu     sync.Mutex
	frames [][]byte
	keep   bool
	closed atomic.Int32
}

func (c *fakeConn) ID() uint64           { return c.id }
func (c *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }
func (c *fakeConn) Send(f []byte) error {
	c.sent.Add(1)
	if c.keep {
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
	return nil
}
func (c *fakeConn) Close(code int, reason string)     { c.closed.Store(int32(code)) }
func (c *fakeConn) SetIdleTimeout(time.Duration, int) {}
func (c *fakeConn) last() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) == 0 {
		return nil
	}
	return c.frames[len(c.frames)-1]
}

// fakeBus records subscriptions; publishes are delivered synchronously to
// the handler when loop is set.
type fakeBus struct {
	mu    sync.Mutex
	subs  map[bus.Topic]int // subscribe count
	unsub map[bus.Topic]int
	h     bus.Handler
	age   time.Duration // InterestAge of every subscribed topic
}

func newFakeBus() *fakeBus {
	return &fakeBus{subs: map[bus.Topic]int{}, unsub: map[bus.Topic]int{}}
}

func (b *fakeBus) Publish(t bus.Topic, data []byte) error {
	if b.h != nil {
		b.h.Deliver(t, data)
	}
	return nil
}
func (b *fakeBus) Subscribe(_ context.Context, t bus.Topic) error {
	b.mu.Lock()
	b.subs[t]++
	b.mu.Unlock()
	return nil
}
func (b *fakeBus) Unsubscribe(t bus.Topic) error {
	b.mu.Lock()
	b.unsub[t]++
	b.mu.Unlock()
	return nil
}
func (b *fakeBus) Gather(context.Context, []byte, int) ([][]byte, error) { return nil, nil }
func (b *fakeBus) Healthy() error                                        { return nil }
func (b *fakeBus) Broadcast(string, []byte) error                        { return nil }
func (b *fakeBus) Listen(context.Context, string, func([]byte)) error    { return nil }
func (b *fakeBus) Subscriptions() int                                    { return 0 }
func (b *fakeBus) InterestAge(t bus.Topic) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs[t] == 0 {
		return 0
	}
	return b.age
}
func (b *fakeBus) Close() error { return nil }

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The hub holds one bus subscription per topic however many sessions
// follow it, and drops it only after the grace period, so a flapping client
// does not churn the bus.
func TestHubSubscribesOncePerTopicAndLingers(t *testing.T) {
	fb := newFakeBus()
	clk := &clock{t: time.Unix(1000, 0)}
	h := newHub(fb, 5*time.Second, clk.now)
	topic := bus.Topic{Kind: bus.User, App: "a", ID: "u"}
	ss := []*Session{{id: 1}, {id: 2}, {id: 3}}
	for i, s := range ss {
		first, err := h.follow(t.Context(), topic, s, nil)
		if err != nil || first != (i == 0) {
			t.Fatalf("follow %d: first=%v err=%v", i, first, err)
		}
	}
	if fb.subs[topic] != 1 {
		t.Fatalf("subscribed %d times, want 1", fb.subs[topic])
	}
	for i, s := range ss {
		if last := h.unfollow(topic, s, nil); last != (i == 2) {
			t.Fatalf("unfollow %d: last=%v", i, last)
		}
	}
	// Within the grace period nothing is unsubscribed, and a returning
	// session reuses the subscription.
	clk.add(4 * time.Second)
	h.sweep(t.Context())
	if fb.unsub[topic] != 0 {
		t.Fatal("unsubscribed within the grace period")
	}
	if _, err := h.follow(t.Context(), topic, ss[0], nil); err != nil {
		t.Fatal(err)
	}
	h.unfollow(topic, ss[0], nil)
	clk.add(4 * time.Second)
	h.sweep(t.Context())
	if fb.unsub[topic] != 0 || fb.subs[topic] != 1 {
		t.Fatalf("flap churned the bus: %d subscribes, %d unsubscribes", fb.subs[topic], fb.unsub[topic])
	}
	clk.add(2 * time.Second)
	h.sweep(t.Context())
	if fb.unsub[topic] != 1 || h.topicCount() != 0 {
		t.Fatalf("after the grace period: %d unsubscribes, %d topics", fb.unsub[topic], h.topicCount())
	}
}

func newTestGateway(t testing.TB, fb *fakeBus, adjust ...func(*Options)) *Gateway {
	o := Options{Node: "n1", Store: memstore.New(memstore.Options{}), Metrics: metrics.New(),
		Limits: Limits{MaxFrameBytes: 1 << 16, MaxBodyBytes: 1 << 14, MaxRooms: 10, MaxSyncConvs: 100,
			MaxGroupMembers: 100, MaxPresence: 5, PresenceMembers: 50, Rate: 1e6, Burst: 1e6}}
	for _, f := range adjust {
		f(&o)
	}
	g := New(o)
	fb.h = g
	g.Start(fb)
	t.Cleanup(g.Close)
	return g
}

// A frame published once is sent to every local follower with the same
// bytes, skipping the session it came from.
func TestDeliverFanout(t *testing.T) {
	fb := newFakeBus()
	g := newTestGateway(t, fb)
	topic := bus.Topic{Kind: bus.Room, App: "a", ID: "r"}
	var conns []*fakeConn
	for i := range 10 {
		c := &fakeConn{id: uint64(i + 1), keep: true}
		s := &Session{g: g, conn: c, id: uint64(i + 1), app: "a", user: fmt.Sprint("u", i)}
		s.authed.Store(true)
		if _, err := g.hub.follow(t.Context(), topic, s, nil); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	frame := []byte(`{"ev":"typing","data":{}}`)
	g.Deliver(topic, frameMsg(3, frame))
	for i, c := range conns {
		want := int64(1)
		if i == 2 {
			want = 0 // session 3 is skipped
		}
		if c.sent.Load() != want {
			t.Fatalf("conn %d got %d frames, want %d", i, c.sent.Load(), want)
		}
		if want == 1 && &c.last()[0] != &conns[0].last()[0] {
			t.Fatal("frames were copied per connection, not shared")
		}
	}
}

// BenchmarkLocalFanout measures delivering one message to 1000 local
// connections of a room: the bus payload is forwarded to each connection
// without decoding or copying.
func BenchmarkLocalFanout(b *testing.B) {
	fb := newFakeBus()
	g := newTestGateway(b, fb)
	topic := bus.Topic{Kind: bus.Room, App: "a", ID: "r"}
	const conns = 1000
	cs := make([]*fakeConn, conns)
	for i := range conns {
		cs[i] = &fakeConn{id: uint64(i + 1)}
		s := &Session{g: g, conn: cs[i], id: uint64(i + 1), app: "a", user: fmt.Sprint("u", i)}
		s.authed.Store(true)
		if _, err := g.hub.follow(context.Background(), topic, s, nil); err != nil {
			b.Fatal(err)
		}
	}
	frame, _ := protocol.EncodeEvent(protocol.EvMessage, protocol.Message{Conv: "r", Seq: 1, TS: 1, Sender: "u1", Body: []byte(`{"text":"hello, room"}`)})
	msg := frameMsg(0, frame)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g.Deliver(topic, msg)
	}
	b.ReportMetric(float64(b.N*conns)/b.Elapsed().Seconds(), "deliveries/s")
}

// Sessions scheduled for a catch-up resync come due in order, once.
func TestCatchUpDue(t *testing.T) {
	var c catchUp
	t0 := time.Unix(100, 0)
	s1, s2, s3 := &Session{id: 1}, &Session{id: 2}, &Session{id: 3}
	c.add(s1, t0.Add(2*time.Second))
	c.add(s2, t0.Add(3*time.Second))
	c.add(s3, t0.Add(3*time.Second))
	if got := c.due(t0.Add(time.Second)); len(got) != 0 {
		t.Fatalf("due early: %d", len(got))
	}
	if got := c.due(t0.Add(2 * time.Second)); len(got) != 1 || got[0].s != s1 {
		t.Fatalf("at 2s: %v", got)
	}
	if got := c.due(t0.Add(10 * time.Second)); len(got) != 2 || got[0].s != s2 || got[1].s != s3 {
		t.Fatalf("at 10s: %v", got)
	}
	if got := c.due(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("due twice: %d", len(got))
	}
}

// A drain moves every session, in several batches.
func TestDrainMovesEverySession(t *testing.T) {
	fb := newFakeBus()
	g := newTestGateway(t, fb)
	var conns []*fakeConn
	for i := range 40 {
		c := &fakeConn{id: uint64(i + 1), keep: true}
		conns = append(conns, c)
		g.sessions.add(&Session{g: g, conn: c, id: uint64(i + 1)})
	}
	if moved := g.Drain(t.Context(), 3*drainStep); moved != 40 {
		t.Fatalf("moved %d, want 40", moved)
	}
	for i, c := range conns {
		if c.closed.Load() != protocol.CloseDraining || !strings.Contains(string(c.last()), `"action":"redirect"`) {
			t.Fatalf("conn %d: closed with %d after %s", i, c.closed.Load(), c.last())
		}
	}
}

// A node that dies without announcing its users offline does not leave
// them online forever: when it leaves the membership, watchers are told.
func TestPresenceOfDeadNode(t *testing.T) {
	fb := newFakeBus()
	g := newTestGateway(t, fb)
	c := &fakeConn{id: 1, keep: true}
	s := &Session{g: g, conn: c, id: 1, app: "a", user: "alice"}
	s.authed.Store(true)
	w := &watch{s: s, conv: "g1", users: []string{"bob"}}
	topic := bus.Topic{Kind: bus.Presence, App: "a", ID: "bob"}
	if _, err := g.hub.follow(t.Context(), topic, nil, w); err != nil {
		t.Fatal(err)
	}
	g.Deliver(topic, jsonMsg(msgPresence, presenceChange{Node: "n2", Online: true}))
	if !strings.Contains(string(c.last()), `"online":true`) {
		t.Fatalf("online event: %s", c.last())
	}
	g.NodeGone("n3") // another node: nothing changes
	if n := c.sent.Load(); n != 1 {
		t.Fatalf("%d frames after an unrelated node left", n)
	}
	g.NodeGone("n2")
	if !strings.Contains(string(c.last()), `"online":false`) || !strings.Contains(string(c.last()), `"user":"bob"`) {
		t.Fatalf("offline event: %s", c.last())
	}
}

// A topic's session list stays exact through adds and removes on both
// sides of the size at which it gains an index.
func TestEntrySessions(t *testing.T) {
	var e entry
	ss := make([]*Session, 100)
	for i := range ss {
		ss[i] = &Session{id: uint64(i)}
		e.add(ss[i])
	}
	e.add(ss[5]) // indexed now: a second add is ignored
	if len(e.sessions) != 100 {
		t.Fatalf("%d sessions", len(e.sessions))
	}
	for i := 0; i < 100; i += 2 {
		if !e.remove(ss[i]) {
			t.Fatalf("remove %d", i)
		}
	}
	if e.remove(ss[0]) {
		t.Fatal("removed twice")
	}
	left := map[*Session]bool{}
	for _, s := range e.sessions {
		left[s] = true
	}
	for i, s := range ss {
		if left[s] != (i%2 == 1) {
			t.Fatalf("session %d present=%v", i, left[s])
		}
		if e.index != nil && i%2 == 1 && e.sessions[e.index[s]] != s {
			t.Fatalf("index of %d is stale", i)
		}
	}
	for i := 1; i < 100; i += 2 {
		e.remove(ss[i])
	}
	if len(e.sessions) != 0 || e.index != nil {
		t.Fatal("not empty")
	}
}

// Admit refuses connections once MaxPendingAuth are open and not yet
// authenticated; a session leaves the count once, when it authenticates or
// closes, whichever comes first.
func TestAdmitBoundsPendingAuth(t *testing.T) {
	g := newTestGateway(t, newFakeBus(), func(o *Options) { o.MaxPendingAuth = 2 })
	ctx := t.Context()
	if err := g.st.CreateApp(ctx, store.App{ID: "app1", Name: "a", Secret: "secret"}); err != nil {
		t.Fatal(err)
	}
	tok, err := token.Mint("secret", token.Claims{User: "alice", App: "app1", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	if !g.Admit() {
		t.Fatal("refused with no connection pending")
	}
	a := g.Open(&fakeConn{id: 1}).(*Session)
	b := g.Open(&fakeConn{id: 2}).(*Session)
	if g.Admit() {
		t.Fatal("admitted a third connection with two pending and MaxPendingAuth 2")
	}
	a.Frame(fmt.Appendf(nil, `{"id":1,"op":"auth","args":{"app":"app1","token":%q}}`, tok))
	if !a.authed.Load() {
		t.Fatal("auth failed")
	}
	if !g.Admit() {
		t.Fatal("still refusing after one pending connection authenticated")
	}
	a.Closed(1000, nil) // authenticated: not pending any more
	b.Closed(1000, nil)
	b.Closed(1000, nil) // a second report must not count twice
	if n := g.pendingAuth.Load(); n != 0 {
		t.Fatalf("pendingAuth %d after every session closed, want 0", n)
	}
}
