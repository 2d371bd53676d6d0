package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// waitTimeout bounds every wait for the client to reach a state; a test
// that hits it has failed (nothing here asserts on timing).
const waitTimeout = 15 * time.Second

// harness runs a Client against a fake server, collects its events and
// records the waits the connection loop asks for (without really waiting
// them out: the tests check the waits, not the clock).
type harness struct {
	t *testing.T
	c *Client

	mu      sync.Mutex
	evs     []Event
	changed chan struct{} // closed and replaced on every new event or wait
	waits   []recordedWait
	tokens  int
	done    chan struct{}
}

type recordedWait struct {
	d   time.Duration
	why string
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testOptions are fast-retrying options for s with deterministic jitter
// (the top of every range).
func testOptions(t *testing.T, s *fakeServer) Options {
	stable := time.Duration(0)
	return Options{
		URL:         s.URL(),
		App:         "app1",
		BackoffMin:  time.Millisecond,
		BackoffMax:  20 * time.Millisecond,
		DialTimeout: 5 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		hooks:       &hooks{rand: randMax, stableAfter: &stable},
	}
}

// start dials with opts (a Token of "tok-alice" unless set) and returns the
// harness; the client is closed when the test ends.
func start(t *testing.T, opts Options) *harness {
	t.Helper()
	h, err := tryStart(t, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return h
}

func tryStart(t *testing.T, opts Options) (*harness, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	h := newHarness(t)
	return h, h.dial(ctx, opts)
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, changed: make(chan struct{}), done: make(chan struct{})}
}

// dial dials with opts (a Token of "tok-alice" unless set) and starts
// collecting events; the client is closed when the test ends.
func (h *harness) dial(ctx context.Context, opts Options) error {
	t := h.t
	if opts.hooks == nil {
		opts.hooks = &hooks{}
	}
	opts.hooks.sleep = h.sleep
	if opts.Token == nil {
		opts.Token = func(context.Context) (string, error) { return "tok-alice", nil }
	}
	token := opts.Token
	opts.Token = func(ctx context.Context) (string, error) {
		h.mu.Lock()
		h.tokens++
		h.mu.Unlock()
		return token(ctx)
	}
	c, err := Dial(ctx, opts)
	if err != nil {
		return err
	}
	h.c = c
	go h.collect()
	t.Cleanup(func() {
		_ = c.Close()
		<-h.done
	})
	return nil
}

func (h *harness) sleep(ctx context.Context, d time.Duration, why string) error {
	h.mu.Lock()
	h.waits = append(h.waits, recordedWait{d, why})
	h.notifyLocked()
	h.mu.Unlock()
	// A token pause keeps a reconnect loop from spinning; the recorded d
	// is what the tests check.
	t := time.NewTimer(min(d, 2*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *harness) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *harness) collect() {
	defer close(h.done)
	for ev := range h.c.Events() {
		h.mu.Lock()
		h.evs = append(h.evs, ev)
		h.notifyLocked()
		h.mu.Unlock()
	}
}

// waitUntil waits for cond, evaluated on every change, or fails the test.
func (h *harness) waitUntil(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond) // for conditions on the fake server's state
	defer tick.Stop()
	for {
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			h.t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func (h *harness) events(typ EventType) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, ev := range h.evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func (h *harness) count(typ EventType) int { return len(h.events(typ)) }

// seqs returns the seqs of conv's messages, in delivery order.
func (h *harness) seqs(conv string) []uint64 {
	var out []uint64
	for _, ev := range h.events(EventMessage) {
		if ev.Message.Conv == conv {
			out = append(out, ev.Message.Seq)
		}
	}
	return out
}

func (h *harness) recordedWaits() []recordedWait {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.waits)
}

func (h *harness) tokenCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tokens
}

// waitMessages waits until conv has n messages delivered and checks they
// are exactly 1..n, once each and in order.
func (h *harness) waitMessages(conv string, n int) {
	h.t.Helper()
	h.waitUntil(fmt.Sprintf("%d messages of %s", n, conv), func() bool { return len(h.seqs(conv)) >= n })
	h.checkExactlyOnce(conv, 0, n)
}

// checkExactlyOnce checks conv's deliveries are from+1..from+n.
func (h *harness) checkExactlyOnce(conv string, from, n int) {
	h.t.Helper()
	got := h.seqs(conv)
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(from + i + 1)
	}
	if !slices.Equal(got, want) {
		h.t.Fatalf("%s: delivered %v, want %v", conv, got, want)
	}
}

// waitSynced waits until the fake answered the client's first sync, so that
// what a test injects next arrives live rather than in that sync.
func (h *harness) waitSynced(s *fakeServer) {
	h.t.Helper()
	h.waitUntil("the first sync", func() bool { _, _, syncs, _ := s.stats(); return len(syncs) >= 1 })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestSendAndReceive(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice", "bob")
	h := start(t, testOptions(t, s))
	res, err := h.c.Send(ctxT(t), "g1", map[string]string{"text": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1 || res.Duplicate {
		t.Fatalf("send result %+v", res)
	}
	h.waitMessages("g1", 1)
	// Cursors catches up with what the application received.
	h.waitUntil("the cursor at 1", func() bool { return h.c.Cursors()["g1"] == 1 })
	if h.count(EventConnected) != 1 {
		t.Fatalf("connected %d times", h.count(EventConnected))
	}
}

func TestResumeAfterDropMidStream(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	h := start(t, testOptions(t, s))
	s.inject("g1", 20)
	h.waitUntil("a few live messages", func() bool { return len(h.seqs("g1")) >= 5 })
	s.drop("alice") // mid-stream: some of the 20 may not have been read yet
	s.inject("g1", 30)
	h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) >= 2 })
	s.inject("g1", 10)
	h.waitMessages("g1", 60)
	if h.count(EventDisconnected) < 1 {
		t.Fatal("no EventDisconnected")
	}
}

func TestResumeAfterServerRestart(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) { s.pageLimit, s.replyConvs = 3, 1 }) // many has_more and more pages
	s.addConv("g1", protocol.KindGroup, "alice")
	s.addConv("g2", protocol.KindGroup, "alice", "bob")
	s.addConv("d:alice:bob", protocol.KindDirect, "alice", "bob")
	h := start(t, testOptions(t, s))
	s.inject("g1", 4)
	h.waitMessages("g1", 4)

	s.down()
	h.waitUntil("the disconnect", func() bool { return h.count(EventDisconnected) >= 1 })
	// Messages written while the client is away, by the rest of the
	// cluster, including in conversations it has never seen.
	s.inject("g1", 20)
	s.inject("g2", 11)
	s.inject("d:alice:bob", 7)
	h.waitUntil("a few failed attempts", func() bool { return len(h.recordedWaits()) >= 3 })
	s.up()

	h.waitMessages("g1", 24)
	h.waitMessages("g2", 11)
	h.waitMessages("d:alice:bob", 7)
	_, _, syncs, _ := s.stats()
	if len(syncs) < 5 {
		t.Fatalf("only %d syncs: paging was not exercised", len(syncs))
	}
	// Back-off while the cluster was down: growing, within its bounds.
	for _, w := range h.recordedWaits() {
		if w.d < 0 || w.d > 20*time.Millisecond {
			t.Fatalf("wait %v outside [0, BackoffMax]", w.d)
		}
	}
}

func TestGapHealing(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	s.set(func(s *fakeServer) {
		s.dropLive = func(m protocol.Message) bool { return m.Seq == 2 } // lost on the bus
	})
	h := start(t, testOptions(t, s))
	h.waitSynced(s)
	s.inject("g1", 3)
	h.waitMessages("g1", 3)
	_, _, syncs, _ := s.stats()
	healed := slices.ContainsFunc(syncs, func(a protocol.SyncArgs) bool {
		seq, ok := a.Convs["g1"]
		return ok && seq == 1 && !a.All
	})
	if !healed {
		t.Fatalf("no sync of g1 from 1 among %+v", syncs)
	}
}

func TestTailLossHealedByResync(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	s.set(func(s *fakeServer) {
		s.dropLive = func(m protocol.Message) bool { return m.Seq == 3 } // the last one: no later message reveals the gap
	})
	h := start(t, testOptions(t, s))
	h.waitSynced(s)
	s.inject("g1", 3)
	h.waitMessages("g1", 2)
	_, _, before, _ := s.stats()
	s.resync("alice", 20)
	h.waitMessages("g1", 3)
	if h.count(EventConnected) != 1 {
		t.Fatal("resync must not reconnect")
	}
	_, _, after, _ := s.stats()
	if len(after) <= len(before) {
		t.Fatal("no sync after resync")
	}
}

func TestDirectives(t *testing.T) {
	t.Run("reconnect within retry_after", func(t *testing.T) {
		s := newFakeServer(t)
		h := start(t, testOptions(t, s))
		s.kick("alice", &protocol.Directive{Action: protocol.ActionReconnect, Code: 4000, RetryAfterMS: 300}, 4000)
		h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
		checkWaits(t, h, 300*time.Millisecond)
	})
	t.Run("backoff retry_after plus jitter", func(t *testing.T) {
		s := newFakeServer(t)
		h := start(t, testOptions(t, s))
		s.kick("alice", &protocol.Directive{Action: protocol.ActionBackoff, Code: 4101, RetryAfterMS: 200}, 4101)
		h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
		checkWaits(t, h, 400*time.Millisecond) // 200 + all of the jitter
		ev := h.events(EventDisconnected)[0]
		if ev.State.Code != 4101 || ev.State.Directive == nil || ev.State.Directive.Action != protocol.ActionBackoff {
			t.Fatalf("disconnected state %+v", ev.State)
		}
	})
	t.Run("redirect to url", func(t *testing.T) {
		a, b := newFakeServer(t), newFakeServer(t)
		h := start(t, testOptions(t, a))
		a.kick("alice", &protocol.Directive{Action: protocol.ActionRedirect, Code: 4200, RetryAfterMS: 50, URL: b.URL()}, 4200)
		h.waitUntil("the connection to b", func() bool { auths, _, _, _ := b.stats(); return auths == 1 })
		checkWaits(t, h, 50*time.Millisecond)
	})
	t.Run("stop", func(t *testing.T) {
		s := newFakeServer(t)
		s.addConv("g1", protocol.KindGroup, "alice")
		h := start(t, testOptions(t, s))
		s.kick("alice", &protocol.Directive{Action: protocol.ActionStop, Code: 4403, Reason: "app disabled"}, 4403)
		checkStopped(t, h, 4403)
	})
}

// checkWaits checks the loop's only wait so far was want.
func checkWaits(t *testing.T, h *harness, want time.Duration) {
	t.Helper()
	ws := h.recordedWaits()
	if len(ws) != 1 || ws[0].d != want {
		t.Fatalf("waits %+v, want one of %v", ws, want)
	}
}

// checkStopped checks the stop's event, the end of the events, and that
// calls fail with the stop's *CloseError.
func checkStopped(t *testing.T, h *harness, code int) {
	t.Helper()
	select {
	case <-h.done: // the channel is closed after EventStopped
	case <-time.After(waitTimeout):
		t.Fatal("Events not closed after a stop")
	}
	st := h.events(EventStopped)
	if len(st) != 1 {
		t.Fatalf("%d EventStopped", len(st))
	}
	var ce *CloseError
	if !errors.As(st[0].State.Err, &ce) || ce.Code != code {
		t.Fatalf("stopped with %v, want a *CloseError %d", st[0].State.Err, code)
	}
	_, err := h.c.Send(ctxT(t), "g1", "late")
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("Send after stop: %v", err)
	}
}

func TestCloseCodeRanges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		code     int // 0: the connection just breaks
		wantWait time.Duration
		other    bool // reconnects to the next URL
		refresh  bool // fetched a new token
	}{
		{name: "1000 reconnect now", code: 1000, wantWait: 20 * time.Millisecond},
		{name: "1001 reconnect now", code: 1001, wantWait: 20 * time.Millisecond},
		{name: "4000-4099 reconnect now, spread", code: 4077, wantWait: 20 * time.Millisecond},
		{name: "4100-4199 back-off", code: 4100, wantWait: time.Millisecond},
		{name: "4200-4299 another node", code: 4200, wantWait: 20 * time.Millisecond, other: true},
		{name: "4300-4399 new token", code: 4300, wantWait: time.Millisecond, refresh: true},
		{name: "unknown code: back-off", code: 4999, wantWait: time.Millisecond},
		{name: "abnormal: back-off", code: 0, wantWait: time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFakeServer(t), newFakeServer(t)
			opts := testOptions(t, a)
			opts.URL, opts.URLs = "", []string{a.URL(), b.URL()}
			h := start(t, opts)
			if tc.code == 0 {
				a.drop("alice")
			} else {
				a.kick("alice", nil, tc.code)
			}
			h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
			checkWaits(t, h, tc.wantWait)
			authsB, _, _, _ := b.stats()
			if got := authsB == 1; got != tc.other {
				t.Fatalf("reconnected to the other node: %v, want %v", got, tc.other)
			}
			if got := h.tokenCalls(); got != 2 {
				t.Fatalf("Token called %d times, want once per connection", got)
			}
			if d := h.events(EventDisconnected)[0]; tc.code != 0 && d.State.Code != tc.code {
				t.Fatalf("disconnected with code %d, want %d", d.State.Code, tc.code)
			}
		})
	}
	t.Run("4400-4499 stop", func(t *testing.T) {
		s := newFakeServer(t)
		h := start(t, testOptions(t, s))
		s.kick("alice", nil, 4450)
		checkStopped(t, h, 4450)
	})
}

func TestOneConnectionAtATime(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	h := start(t, testOptions(t, s))
	for i := range 15 {
		if i%2 == 0 {
			s.kick("alice", &protocol.Directive{Action: protocol.ActionReconnect, Code: 4000}, 4000)
		} else {
			s.drop("alice")
		}
		h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == i+2 })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxConns != 1 {
		t.Fatalf("the server saw %d connections of one client at once", s.maxConns)
	}
}

func TestRetryAfter503(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) { s.refuse, s.retryAfter = 2, "2" })
	h := start(t, testOptions(t, s))
	ws := h.recordedWaits()
	if len(ws) != 2 {
		t.Fatalf("waits %+v, want two", ws)
	}
	for _, w := range ws {
		if w.d != 4*time.Second { // Retry-After plus all of the jitter
			t.Fatalf("wait %v after a 503 with Retry-After: 2, want 4s", w.d)
		}
	}
}

func TestSendResentAcrossDroppedConnection(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	var once sync.Once
	s.set(func(s *fakeServer) {
		s.beforeReply = func(fc *fakeConn, req protocol.Request) bool {
			drop := false
			if req.Op == protocol.OpSend {
				once.Do(func() { drop = true }) // committed, but the reply is lost
			}
			return drop
		}
	})
	h := start(t, testOptions(t, s))
	res, err := h.c.SendWithID(ctxT(t), "g1", "m-1", map[string]string{"text": "once"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1 || !res.Duplicate {
		t.Fatalf("result %+v, want seq 1 flagged duplicate", res)
	}
	_, ids, _, _ := s.stats()
	if !slices.Equal(ids, []string{"m-1", "m-1"}) {
		t.Fatalf("server saw client_msg_ids %v", ids)
	}
	h.waitMessages("g1", 1)
	s.inject("g1", 1) // anything after it proves there is no second copy
	h.waitMessages("g1", 2)
}

func TestSendWaitsForConnection(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	h := start(t, testOptions(t, s))
	s.down()
	h.waitUntil("the disconnect", func() bool { return h.count(EventDisconnected) == 1 })
	done := make(chan error, 1)
	go func() {
		_, err := h.c.Send(ctxT(t), "g1", "queued")
		done <- err
	}()
	s.up()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.waitMessages("g1", 1)
}

func TestNonIdempotentCallReportsUnknownOutcome(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	var dropped sync.Map
	s.set(func(s *fakeServer) {
		s.beforeReply = func(fc *fakeConn, req protocol.Request) bool {
			if req.Op != protocol.OpConvCreate && req.Op != protocol.OpConvGet {
				return false
			}
			_, seen := dropped.LoadOrStore(req.Op, true)
			return !seen
		}
	})
	h := start(t, testOptions(t, s))
	if _, err := h.c.CreateGroup(ctxT(t), "climbing", []string{"bob"}); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("CreateGroup: %v, want ErrConnectionLost", err)
	}
	// A read is resent instead.
	got, err := h.c.Conversation(ctxT(t), "g1")
	if err != nil || got.Conversation.ID != "g1" {
		t.Fatalf("Conversation: %+v, %v", got, err)
	}
}

// While no gateway accepts the connection, the client retries without
// asking for a token: an outage costs the app's backend nothing.
func TestNoTokenWithoutConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + ln.Addr().String() + "/v1/ws"
	ln.Close() // connections to it are now refused
	s := newFakeServer(t)
	opts := testOptions(t, s)
	opts.URL = dead
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- h.dial(ctx, opts) }()
	h.waitUntil("three failed attempts", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.waits) >= 3
	})
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	if got := h.tokenCalls(); got != 0 {
		t.Fatalf("Token called %d times with no gateway up, want 0", got)
	}
}

func TestTokenRefresh(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) { s.tokens["tok-old"] = "!" + protocol.CodeTokenExpired })
	var mu sync.Mutex
	tokens := []string{"tok-old", "tok-alice"}
	opts := testOptions(t, s)
	opts.Token = func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		tok := tokens[0]
		if len(tokens) > 1 {
			tokens = tokens[1:]
		}
		return tok, nil
	}
	h := start(t, opts)
	if h.tokenCalls() != 2 {
		t.Fatalf("Token called %d times, want 2", h.tokenCalls())
	}
	// And while connected: 4300 without a directive.
	s.kick("alice", nil, protocol.CloseTokenExpired)
	h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
	if h.tokenCalls() != 3 {
		t.Fatalf("Token called %d times, want 3", h.tokenCalls())
	}
}

func TestStopOnInvalidToken(t *testing.T) {
	s := newFakeServer(t)
	opts := testOptions(t, s)
	opts.Token = func(context.Context) (string, error) { return "forged", nil }
	h, err := tryStart(t, opts)
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTokenInvalid {
		t.Fatalf("Dial: %v, want a *protocol.Error token_invalid", err)
	}
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CloseTokenInvalid {
		t.Fatalf("Dial: %v, want a *CloseError 4400", err)
	}
	if h.tokenCalls() != 1 {
		t.Fatalf("Token called %d times: the loop did not stop", h.tokenCalls())
	}
}

func TestKeepalive(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) { s.pingMS = 30 })
	h := start(t, testOptions(t, s))
	s.silence("alice") // a dead peer: the socket stays open
	h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
	if d := h.events(EventDisconnected)[0]; d.State.Err == nil || !strings.Contains(d.State.Err.Error(), "keepalive") {
		t.Fatalf("disconnected with %v, want a keepalive timeout", d.State.Err)
	}
}

func TestRoomJoinAndRejoin(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("r1", protocol.KindRoom)
	s.inject("r1", 5) // before the join: not part of the client's stream
	h := start(t, testOptions(t, s))
	conv, err := h.c.JoinRoom(ctxT(t), "r1")
	if err != nil || conv.LastSeq != 5 {
		t.Fatalf("JoinRoom: %+v, %v", conv, err)
	}
	s.inject("r1", 1)
	h.waitUntil("seq 6", func() bool { return len(h.seqs("r1")) == 1 })
	s.down()
	h.waitUntil("the disconnect", func() bool { return h.count(EventDisconnected) == 1 })
	s.inject("r1", 2) // while away
	s.up()
	h.waitUntil("7 and 8", func() bool { return len(h.seqs("r1")) == 3 })
	h.checkExactlyOnce("r1", 5, 3)
	if _, _, _, joins := s.stats(); !slices.Equal(joins, []string{"r1", "r1"}) {
		t.Fatalf("joins %v, want the room joined again after the reconnect", joins)
	}

	if err := h.c.LeaveRoom(ctxT(t), "r1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.c.Cursors()["r1"]; ok {
		t.Fatal("a left room is still followed")
	}
}

func TestUnknownGroupStartsWhereTheUserJoined(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g9", protocol.KindGroup, "bob")
	s.inject("g9", 10) // before alice was a member
	h := start(t, testOptions(t, s))
	s.addMember("g9", "alice")
	s.inject("g9", 2)
	h.waitUntil("11 and 12", func() bool { return len(h.seqs("g9")) == 2 })
	h.checkExactlyOnce("g9", 10, 2)
}

func TestCursorsOption(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	s.inject("g1", 5)
	opts := testOptions(t, s)
	opts.Cursors = map[string]uint64{"g1": 3}
	h := start(t, opts)
	h.waitUntil("4 and 5", func() bool { return len(h.seqs("g1")) == 2 })
	h.checkExactlyOnce("g1", 3, 2)
}

// TestSlowConsumerCallingFromEventGoroutine floods a client whose event
// buffer is tiny while the goroutine consuming events makes a call per
// message: no deadlock, and every message once, in order.
func TestSlowConsumerCallingFromEventGoroutine(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	opts := testOptions(t, s)
	opts.EventBuffer = 2
	opts.Token = func(context.Context) (string, error) { return "tok-alice", nil }
	opts.hooks.sleep = func(context.Context, time.Duration, string) error { return nil }
	ctx := ctxT(t)
	dctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	c, err := Dial(dctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 300
	s.inject("g1", n)
	var got []uint64
	for ev := range c.Events() {
		if ev.Type != EventMessage {
			continue
		}
		got = append(got, ev.Message.Seq)
		if _, err := c.Conversation(ctx, "g1"); err != nil {
			t.Fatal(err)
		}
		if len(got) == n {
			break
		}
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("delivered %v", got)
		}
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	h := start(t, testOptions(t, s))
	s.down()
	h.waitUntil("the disconnect", func() bool { return h.count(EventDisconnected) == 1 })
	done := make(chan error, 1)
	go func() {
		_, err := h.c.Send(context.Background(), "g1", "never")
		done <- err
	}()
	_ = h.c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending Send: %v, want ErrClosed", err)
	}
	if _, err := h.c.Send(ctxT(t), "g1", "after"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		t.Fatal("Events not closed by Close")
	}
}

func TestPresenceRenewedOnReconnect(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice", "bob")
	h := start(t, testOptions(t, s))
	online, err := h.c.SubscribePresence(ctxT(t), "g1")
	if err != nil || !slices.Equal(online, []string{"alice"}) {
		t.Fatalf("SubscribePresence: %v, %v", online, err)
	}
	s.drop("alice")
	h.waitUntil("the renewed list", func() bool { return h.count(EventOnline) == 1 })
	if ev := h.events(EventOnline)[0]; ev.Online.Conv != "g1" || !slices.Equal(ev.Online.Users, []string{"alice"}) {
		t.Fatalf("online %+v", ev.Online)
	}
}

// TestCursorsCountOnlyReceivedMessages checks that Cursors, which the
// application persists, never runs ahead of what it has received.
func TestCursorsCountOnlyReceivedMessages(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	opts := testOptions(t, s)
	opts.Token = func(context.Context) (string, error) { return "tok-alice", nil }
	opts.Cursors = map[string]uint64{"g1": 0}
	c, err := Dial(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.inject("g1", 5)
	// Nothing received yet: wait for the five messages to be queued.
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for c.q.len() < 5 { // the pump holds EventConnected, the queue the messages
		if time.Now().After(deadline) {
			t.Fatal("messages not queued")
		}
		<-tick.C
	}
	if got := c.Cursors()["g1"]; got != 0 {
		t.Fatalf("cursor %d before anything was received, want 0", got)
	}
	for ev := range c.Events() {
		if ev.Type == EventMessage && ev.Message.Seq == 2 {
			break
		}
	}
	// The client learns that 2 was received just after the application
	// does: the cursor catches up, and never passes what was received.
	for {
		got := c.Cursors()["g1"]
		if got > 2 {
			t.Fatalf("cursor %d after receiving 2: ahead of the application", got)
		}
		if got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor stuck at %d after receiving 2", got)
		}
		<-tick.C
	}
}

func TestRedirectNeverDowngradesToPlainText(t *testing.T) {
	for _, tc := range []struct {
		urls   []string
		target string
		ok     bool
	}{
		{[]string{"wss://a/v1/ws"}, "wss://b/v1/ws", true},
		{[]string{"wss://a/v1/ws"}, "ws://b/v1/ws", false},
		{[]string{"ws://a/v1/ws"}, "ws://b/v1/ws", true},
		{[]string{"ws://a/v1/ws", "wss://c/v1/ws"}, "ws://b/v1/ws", false},
		{[]string{"wss://a/v1/ws"}, "https://b/v1/ws", false},
	} {
		c := &Client{urls: tc.urls}
		if err := c.checkRedirect(tc.target); (err == nil) != tc.ok {
			t.Errorf("redirect from %v to %s: %v, want ok=%v", tc.urls, tc.target, err, tc.ok)
		}
	}
}

func TestDialErrorSaysWhy(t *testing.T) {
	opts := Options{URL: "ws://127.0.0.1:1/v1/ws", App: "app1", BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Token: func(context.Context) (string, error) { return "t", nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, opts)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last attempt") {
		t.Fatalf("Dial: %v, want the deadline and the last attempt's error", err)
	}
}

func TestCloseFromEventGoroutine(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	opts := testOptions(t, s)
	opts.EventBuffer = 1
	opts.Token = func(context.Context) (string, error) { return "tok-alice", nil }
	c, err := Dial(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.inject("g1", 50)           // keep the reader busy and the queue full
	for ev := range c.Events() { // ends because Close closes the channel
		if ev.Type == EventMessage {
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestRetryAfterRefusals(t *testing.T) {
	s := newFakeServer(t)
	s.addConv("g1", protocol.KindGroup, "alice")
	var refusals []string
	s.set(func(s *fakeServer) {
		s.refuseOp = func(req protocol.Request) *protocol.Error {
			switch {
			case req.Op == protocol.OpSend && len(refusals) == 0:
				refusals = append(refusals, protocol.CodeRateLimited)
				return &protocol.Error{Code: protocol.CodeRateLimited, RetryAfterMS: 5}
			case req.Op == protocol.OpSend && len(refusals) == 1:
				refusals = append(refusals, protocol.CodeUnavailable)
				return &protocol.Error{Code: protocol.CodeUnavailable, RetryAfterMS: 5}
			case req.Op == protocol.OpConvCreate:
				return &protocol.Error{Code: protocol.CodeUnavailable, RetryAfterMS: 5}
			}
			return nil
		}
	})
	h := start(t, testOptions(t, s))
	res, err := h.c.Send(ctxT(t), "g1", "hi")
	if err != nil || res.Seq != 1 || res.Duplicate {
		t.Fatalf("Send: %+v, %v", res, err)
	}
	s.mu.Lock()
	n := len(refusals)
	s.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d refusals, want Send to have retried through 2", n)
	}
	// Not safe to repeat on "unavailable": the application decides.
	var perr *protocol.Error
	if _, err := h.c.CreateGroup(ctxT(t), "x", nil); !errors.As(err, &perr) || perr.Code != protocol.CodeUnavailable {
		t.Fatalf("CreateGroup: %v, want unavailable", err)
	}
}

// A connection the server closes right after answering its auth may end
// before the client has made it the current one. The client must count it
// as lost and go on, whichever comes first (it used to close its "ready"
// channel twice and panic on the next connection).
func TestConnectionClosedRightAfterAuth(t *testing.T) {
	s := newFakeServer(t)
	const closes = 30
	s.set(func(s *fakeServer) { s.closeAfterAuth = closes })
	h := start(t, testOptions(t, s))
	h.waitUntil("every closed connection and one more", func() bool {
		n, _, _, _ := s.stats()
		return n > closes
	})
	var res protocol.PingResult
	if err := h.c.Call(ctxT(t), protocol.OpPing, nil, &res); err != nil {
		t.Fatal(err)
	}
}
