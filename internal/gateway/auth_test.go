package gateway

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

// waitFor polls cond until it holds, failing the test after a while that
// only a bug reaches.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// authFrame returns an auth request for user in app1, whose secret is
// "secret".
func authFrame(t *testing.T, g *Gateway, user string) []byte {
	t.Helper()
	if _, err := g.st.App(t.Context(), "app1"); err != nil {
		if err := g.st.CreateApp(t.Context(), store.App{ID: "app1", Name: "a", Secret: "secret"}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := token.Mint("secret", token.Claims{User: user, App: "app1", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `{"id":1,"op":"auth","args":{"app":"app1","token":%q}}`, tok)
}

// replies returns the ids of the replies c was sent, in order.
func replies(t *testing.T, c *fakeConn) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for _, f := range c.frames {
		var fr protocol.Frame
		if err := json.Unmarshal(f, &fr); err != nil {
			t.Fatalf("bad frame %s", f)
		}
		if fr.Ev == "" {
			ids = append(ids, fr.ID)
		}
	}
	return ids
}

// An auth waiting for its subscriptions does not hold the caller of
// Frame (a transport worker): Frame returns, the requests that follow
// wait, and once the subscription is confirmed the auth is answered
// first and the others after it, in order.
func TestAuthWaitsForSubscriptionsOffTheFrameCaller(t *testing.T) {
	fb := newFakeBus()
	fb.gate = make(chan struct{})
	g := newTestGateway(t, fb)
	c := &fakeConn{id: 1, keep: true}
	s := g.Open(c).(*Session)
	s.Frame(authFrame(t, g, "alice")) // returns although Subscribe waits
	s.Frame([]byte(`{"id":2,"op":"ping"}`))
	s.Frame([]byte(`{"id":3,"op":"ping"}`))
	if ids := replies(t, c); len(ids) != 0 || s.authed.Load() {
		t.Fatalf("replies %v (authed %v) before the subscription was confirmed", ids, s.authed.Load())
	}
	close(fb.gate)
	waitFor(t, "three replies", func() bool { return len(replies(t, c)) == 3 })
	if ids := replies(t, c); ids[0] != 1 || ids[1] != 2 || ids[2] != 3 {
		t.Fatalf("replies in order %v, want [1 2 3]", ids)
	}
	// Frames go straight to the handler again.
	s.Frame([]byte(`{"id":4,"op":"ping"}`))
	if ids := replies(t, c); len(ids) != 4 || ids[3] != 4 {
		t.Fatalf("replies %v after the auth", ids)
	}
}

// A client closed while its auth waits is taken out of the topics the
// auth then follows, and its held requests are dropped.
func TestAuthClosedWhileSubscribing(t *testing.T) {
	fb := newFakeBus()
	fb.gate = make(chan struct{})
	g := newTestGateway(t, fb)
	c := &fakeConn{id: 1, keep: true}
	s := g.Open(c).(*Session)
	s.Frame(authFrame(t, g, "bob"))
	s.Frame([]byte(`{"id":2,"op":"ping"}`))
	s.Closed(1006, nil)
	close(fb.gate)
	waitFor(t, "the auth to finish", func() bool { return !s.holding.Load() })
	user := bus.Topic{Kind: bus.User, App: "app1", ID: "bob"}
	n := 0
	g.hub.sessions(user, func(*Session) { n++ })
	if n != 0 {
		t.Fatalf("closed session still follows %v", user)
	}
	if ids := replies(t, c); len(ids) > 1 {
		t.Fatalf("held requests answered after close: %v", ids)
	}
}

// What a client may send before its auth is answered is bounded: past
// the bound it is closed with 4102.
func TestAuthHeldFramesBounded(t *testing.T) {
	fb := newFakeBus()
	fb.gate = make(chan struct{})
	defer close(fb.gate)
	g := newTestGateway(t, fb)
	c := &fakeConn{id: 1}
	s := g.Open(c).(*Session)
	s.Frame(authFrame(t, g, "carol"))
	for i := range maxHeldFrames {
		s.Frame(fmt.Appendf(nil, `{"id":%d,"op":"ping"}`, i+2))
	}
	if code := c.closed.Load(); code != 0 {
		t.Fatalf("closed with %d within the bound", code)
	}
	s.Frame([]byte(`{"id":99,"op":"ping"}`))
	if code := c.closed.Load(); code != protocol.CloseRateLimited {
		t.Fatalf("closed with %d past the bound, want %d", code, protocol.CloseRateLimited)
	}
}
