package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func echo() *recorder {
	return &recorder{onFrame: func(c Conn, data []byte) { _ = c.Send(bytes.Clone(data)) }}
}

func TestEchoRoundTrip(t *testing.T) { forModes(t, testEchoRoundTrip) }

func testEchoRoundTrip(t *testing.T, m mode) {
	h := echo()
	ts := startServer(t, h, m, Options{MaxFrameBytes: 1 << 20})
	cl := dial(t, ts.url)

	msgs := []string{"hello", "", strings.Repeat("a", 125), strings.Repeat("b", 126),
		strings.Repeat("c", 0xffff), strings.Repeat("d", 0x10000), strings.Repeat("e", 200_000)}
	for _, m := range msgs {
		cl.text(m)
		cl.expectText(m)
	}
	// Binary messages are delivered like text ones.
	cl.send(ws.OpBinary, true, []byte{0, 1, 2})
	cl.expectText("\x00\x01\x02")

	cl.closeWith(1000)
	if code := cl.expectCloseNext(); code != 1000 {
		t.Fatalf("close answer %d, want 1000", code)
	}
	ev := h.waitClosed(t, 1)
	if ev[0].code != 1000 || ev[0].err != nil {
		t.Fatalf("Closed(%d, %v), want (1000, nil)", ev[0].code, ev[0].err)
	}
	waitFor(t, "Stats.Conns to drop", func() bool { return ts.Stats().Conns == 0 })
	st := ts.Stats()
	n := uint64(len(msgs) + 1)
	if st.Accepted != 1 || st.FramesIn != n || st.FramesOut != n || st.BytesIn == 0 || st.BytesOut == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConcurrentSendsKeepOrder(t *testing.T) { forModes(t, testConcurrentSendsKeepOrder) }

func testConcurrentSendsKeepOrder(t *testing.T, m mode) {
	h := &recorder{}
	ts := startServer(t, h, m, Options{})
	cl := dial(t, ts.url)
	c := h.waitConn(t, 0)

	const senders, each = 16, 300
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				if err := c.Send(fmt.Appendf(nil, "%d:%d", g, i)); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for range senders * each {
		h, p := cl.mustRead()
		if h.OpCode != ws.OpText || !h.Fin {
			t.Fatalf("got op %v fin %v", h.OpCode, h.Fin)
		}
		var g, i int
		if _, err := fmt.Sscanf(string(p), "%d:%d", &g, &i); err != nil {
			t.Fatalf("garbled frame %q", p)
		}
		if i != next[g] {
			t.Fatalf("sender %d: got %d, want %d", g, i, next[g])
		}
		next[g]++
	}
	wg.Wait()
}

func TestFragmentedMessage(t *testing.T) { forModes(t, testFragmentedMessage) }

func testFragmentedMessage(t *testing.T, m mode) {
	h := echo()
	ts := startServer(t, h, m, Options{})
	cl := dial(t, ts.url)

	cl.send(ws.OpText, false, []byte("hel"))
	cl.send(ws.OpPing, true, []byte("mid")) // control frames may interleave
	cl.send(ws.OpContinuation, false, []byte("lo "))
	cl.send(ws.OpContinuation, false, nil)
	cl.send(ws.OpContinuation, true, []byte("world"))
	hd, p := cl.mustRead()
	if hd.OpCode != ws.OpPong || string(p) != "mid" {
		t.Fatalf("got op %v %q, want pong mid", hd.OpCode, p)
	}
	cl.expectText("hello world")

	cl.send(ws.OpBinary, false, []byte("ab"))
	cl.send(ws.OpContinuation, true, []byte("cd"))
	cl.expectText("abcd")
}

func TestPingPong(t *testing.T) { forModes(t, testPingPong) }

func testPingPong(t *testing.T, m mode) {
	h := echo()
	ts := startServer(t, h, m, Options{})
	cl := dial(t, ts.url)
	for _, payload := range []string{"", "x", strings.Repeat("p", 125)} {
		cl.send(ws.OpPing, true, []byte(payload))
		hd, p := cl.mustRead()
		if hd.OpCode != ws.OpPong || string(p) != payload {
			t.Fatalf("got op %v %q, want pong %q", hd.OpCode, p, payload)
		}
	}
	// A pong from the client is ignored.
	cl.send(ws.OpPong, true, []byte("unsolicited"))
	cl.text("after")
	cl.expectText("after")
}

const oversizeJSON = `{"type":"error","code":"frame_too_large"}`

func oversizeOptions() Options {
	return Options{MaxFrameBytes: 1024, OversizeFrame: []byte(oversizeJSON)}
}

// expectOversize checks the server's answer to a message over the limit.
func expectOversize(t *testing.T, h *recorder, ts *testServer, cl *client) {
	t.Helper()
	cl.expectText(oversizeJSON)
	if code := cl.expectCloseNext(); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
	cl.closeWith(1009)
	ev := h.waitClosed(t, 1)
	if ev[0].code != 1009 || !errors.Is(ev[0].err, ErrMessageTooBig) {
		t.Fatalf("Closed(%d, %v), want (1009, ErrMessageTooBig)", ev[0].code, ev[0].err)
	}
	if n := len(h.frameList()); n != 0 {
		t.Fatalf("%d frames delivered", n)
	}
	if st := ts.Stats(); st.OversizeCloses != 1 {
		t.Fatalf("OversizeCloses = %d", st.OversizeCloses)
	}
}

func TestOversizeSingleFrame(t *testing.T) { forModes(t, testOversizeSingleFrame) }

func testOversizeSingleFrame(t *testing.T, m mode) {
	h := &recorder{}
	ts := startServer(t, h, m, oversizeOptions())
	cl := dial(t, ts.url)
	cl.send(ws.OpText, true, make([]byte, 1025))
	expectOversize(t, h, ts, cl)
}

func TestOversizeAssembledMessage(t *testing.T) { forModes(t, testOversizeAssembledMessage) }

func testOversizeAssembledMessage(t *testing.T, m mode) {
	h := &recorder{}
	ts := startServer(t, h, m, oversizeOptions())
	cl := dial(t, ts.url)
	cl.send(ws.OpText, false, make([]byte, 400))
	cl.send(ws.OpContinuation, false, make([]byte, 400))
	cl.send(ws.OpContinuation, true, make([]byte, 400))
	expectOversize(t, h, ts, cl)
}

func TestOversizeDeclaredLengthNotAllocated(t *testing.T) {
	forModes(t, testOversizeDeclaredLengthNotAllocated)
}

func testOversizeDeclaredLengthNotAllocated(t *testing.T, m mode) {
	h := &recorder{}
	opts := oversizeOptions()
	// The client's answering close frame is taken for the rest of the
	// declared payload, so the server waits CloseTimeout for it.
	opts.CloseTimeout = 50 * time.Millisecond
	ts := startServer(t, h, m, opts)
	cl := dial(t, ts.url)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// A masked text frame header claiming 1 GiB, and no payload.
	cl.write([]byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4})
	expectOversize(t, h, ts, cl)
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
		t.Fatalf("allocated %d bytes for a frame that never came", d)
	}
}

func TestProtocolErrors(t *testing.T) { forModes(t, testProtocolErrors) }

func testProtocolErrors(t *testing.T, m mode) {
	masked := func(h ws.Header, payload []byte) []byte {
		h.Masked, h.Length = true, int64(len(payload))
		h.Mask = ws.NewMask()
		var buf bytes.Buffer
		_ = ws.WriteHeader(&buf, h)
		p := bytes.Clone(payload)
		ws.Cipher(p, h.Mask, 0)
		buf.Write(p)
		return buf.Bytes()
	}
	cases := []struct {
		name  string
		input []byte
		code  int
	}{
		{"unmasked", frameBytes(ws.OpText, true, []byte("hi"), false), 1002},
		{"rsv1", masked(ws.Header{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: ws.OpText}, []byte("hi")), 1002},
		{"rsv3", masked(ws.Header{Fin: true, Rsv: ws.Rsv(false, false, true), OpCode: ws.OpPing}, nil), 1002},
		{"reserved opcode", masked(ws.Header{Fin: true, OpCode: 3}, nil), 1002},
		{"continuation first", frameBytes(ws.OpContinuation, true, []byte("x"), true), 1002},
		{"new message mid-fragment", append(frameBytes(ws.OpText, false, []byte("a"), true),
			frameBytes(ws.OpText, true, []byte("b"), true)...), 1002},
		{"fragmented ping", frameBytes(ws.OpPing, false, nil, true), 1002},
		{"long ping", masked(ws.Header{Fin: true, OpCode: ws.OpPing}, make([]byte, 126)), 1002},
		{"close with one byte", frameBytes(ws.OpClose, true, []byte{3}, true), 1002},
		{"close with code 1005", frameBytes(ws.OpClose, true, []byte{0x03, 0xed}, true), 1002},
		{"close with bad utf-8", frameBytes(ws.OpClose, true, []byte{0x03, 0xe8, 0xff}, true), 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &recorder{}
			ts := startServer(t, h, m, Options{})
			cl := dial(t, ts.url)
			cl.write(tc.input)
			if code := cl.expectCloseNext(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			if !strings.HasPrefix(tc.name, "close") {
				cl.closeWith(tc.code)
			}
			ev := h.waitClosed(t, 1)
			if ev[0].code != tc.code || !errors.Is(ev[0].err, ErrProtocol) {
				t.Fatalf("Closed(%d, %v), want (%d, ErrProtocol)", ev[0].code, ev[0].err, tc.code)
			}
			if n := len(h.frameList()); n != 0 {
				t.Fatalf("%d frames delivered", n)
			}
		})
	}
}

func TestClientClose(t *testing.T) { forModes(t, testClientClose) }

func testClientClose(t *testing.T, m mode) {
	for _, tc := range []struct {
		name string
		body []byte
		code int
	}{
		{"with code", ws.NewCloseFrameBody(4321, "bye"), 4321},
		{"without code", nil, 1005},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &recorder{}
			ts := startServer(t, h, m, Options{})
			cl := dial(t, ts.url)
			cl.send(ws.OpClose, true, tc.body)
			if code := cl.expectCloseNext(); code != tc.code {
				t.Fatalf("close answer %d, want %d", code, tc.code)
			}
			if _, _, err := cl.read(); !errors.Is(err, io.EOF) {
				t.Fatalf("after close: %v, want EOF", err)
			}
			h.waitClosed(t, 1)
			if err := ts.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			ev := h.closedEvents()
			if len(ev) != 1 || ev[0].code != tc.code || ev[0].err != nil {
				t.Fatalf("Closed calls %+v, want one (%d, nil)", ev, tc.code)
			}
		})
	}
}

func TestAbruptDisconnect(t *testing.T) { forModes(t, testAbruptDisconnect) }

func testAbruptDisconnect(t *testing.T, m mode) {
	h := &recorder{}
	ts := startServer(t, h, m, Options{})
	cl := dial(t, ts.url)
	h.waitConn(t, 0)
	_ = cl.nc.Close()
	ev := h.waitClosed(t, 1)
	if ev[0].code != 1006 || ev[0].err == nil {
		t.Fatalf("Closed(%d, %v), want (1006, an error)", ev[0].code, ev[0].err)
	}
	if err := h.conn(0).Send([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after close: %v, want ErrClosed", err)
	}
}

func TestSlowConsumer(t *testing.T) { forModes(t, testSlowConsumer) }

func testSlowConsumer(t *testing.T, m mode) {
	const budget = 64 << 10
	h := &recorder{}
	ts := startServer(t, h, m, Options{
		QueueBytes:       budget,
		SlowConsumerCode: 4100,
		CloseTimeout:     100 * time.Millisecond,
	})
	cl := dial(t, ts.url) // and never read, until the end
	c := h.waitConn(t, 0)

	frame := bytes.Repeat([]byte("z"), 3000) // shared by every Send
	var err error
	deadline := time.Now().Add(patience)
	for err == nil {
		if time.Now().After(deadline) {
			t.Fatal("Send never overflowed")
		}
		err = c.Send(frame)
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Send: %v, want ErrSlowConsumer", err)
	}
	if err := c.Send(frame); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after overflow: %v, want ErrClosed", err)
	}
	ic := c.(*conn)
	ic.mu.Lock()
	hi := ic.hiwater
	ic.mu.Unlock()
	if hi > budget {
		t.Fatalf("queue reached %d bytes, budget %d", hi, budget)
	}
	if st := ts.Stats(); st.SlowConsumerCloses != 1 {
		t.Fatalf("SlowConsumerCloses = %d", st.SlowConsumerCloses)
	}

	// The client eventually sees either the close code, if it could be
	// written, or the end of the stream.
	got := 0
	for got == 0 {
		hd, p, err := cl.read()
		switch {
		case err != nil:
			got = 1006
		case hd.OpCode == ws.OpClose:
			got = int(p[0])<<8 | int(p[1])
		case !bytes.Equal(p, frame):
			t.Fatalf("corrupt frame: op %v, %d bytes", hd.OpCode, len(p))
		}
	}
	if got != 4100 && got != 1006 {
		t.Fatalf("client saw close %d", got)
	}
	ev := h.waitClosed(t, 1)
	if !errors.Is(ev[0].err, ErrSlowConsumer) || (ev[0].code != 4100 && ev[0].code != 1006) {
		t.Fatalf("Closed(%d, %v), want (4100 or 1006, ErrSlowConsumer)", ev[0].code, ev[0].err)
	}
}

func TestIdleTimeout(t *testing.T) { forModes(t, testIdleTimeout) }

func testIdleTimeout(t *testing.T, m mode) {
	var clock atomic.Int64
	clock.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	h := &recorder{onOpen: func(c Conn) { c.SetIdleTimeout(30*time.Second, 4103) }}
	ts := startServer(t, h, m, Options{
		Now:        func() time.Time { return time.Unix(0, clock.Load()) },
		sweepEvery: time.Millisecond,
	})
	cl := dial(t, ts.url)
	h.waitConn(t, 0)
	cl.text("I am here")
	waitFor(t, "frame", func() bool { return len(h.frameList()) == 1 })

	clock.Add(int64(31 * time.Second))
	if code := cl.expectCloseNext(); code != 4103 {
		t.Fatalf("close code %d, want 4103", code)
	}
	cl.closeWith(4103)
	ev := h.waitClosed(t, 1)
	if ev[0].code != 4103 || !errors.Is(ev[0].err, ErrIdleTimeout) {
		t.Fatalf("Closed(%d, %v), want (4103, ErrIdleTimeout)", ev[0].code, ev[0].err)
	}
	if st := ts.Stats(); st.IdleCloses != 1 {
		t.Fatalf("IdleCloses = %d", st.IdleCloses)
	}
}

// rawUpgrade sends a WebSocket upgrade request and returns the response.
func rawUpgrade(t *testing.T, ts *testServer) *http.Response {
	t.Helper()
	nc := ts.dialSocket(t)
	_ = nc.SetDeadline(time.Now().Add(patience))
	req := upgradeRequest
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// check503 checks a refusal with the default RetryAfter (5 s, plus up to
// half of it of jitter, rounded up).
func check503(t *testing.T, resp *http.Response) {
	t.Helper()
	checkRefusal(t, resp, 5, 8)
}

func checkRefusal(t *testing.T, resp *http.Response, minSecs, maxSecs int) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < minSecs || secs > maxSecs {
		t.Fatalf("Retry-After %q, want %d to %d seconds", resp.Header.Get("Retry-After"), minSecs, maxSecs)
	}
}

func TestMaxConns(t *testing.T) { forModes(t, testMaxConns) }

func testMaxConns(t *testing.T, m mode) {
	h := &recorder{}
	ts := startServer(t, h, m, Options{MaxConns: 1})
	cl := dial(t, ts.url)
	h.waitConn(t, 0)

	check503(t, rawUpgrade(t, ts))
	if st := ts.Stats(); st.Rejected != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Once the first connection is gone, its slot is free again.
	cl.closeWith(1000)
	h.waitClosed(t, 1)
	dial(t, ts.url)
	h.waitConn(t, 1)
}

func TestAdmitRefusesUpgrades(t *testing.T) { forModes(t, testAdmitRefusesUpgrades) }

func testAdmitRefusesUpgrades(t *testing.T, m mode) {
	var admit atomic.Bool
	h := &recorder{}
	ts := startServer(t, h, m, Options{MaxConns: 10, Admit: admit.Load})
	// A short Retry-After: DefaultAdmitRetryAfter (1 s) plus jitter.
	checkRefusal(t, rawUpgrade(t, ts), 1, 2)
	if st := ts.Stats(); st.Rejected != 1 || st.Accepted != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The refusal gave its MaxConns slot back: all ten can connect.
	admit.Store(true)
	for i := range 10 {
		dial(t, ts.url)
		h.waitConn(t, i)
	}
}

func TestCloseWritesQueuedFramesFirst(t *testing.T) { forModes(t, testCloseWritesQueuedFramesFirst) }

func testCloseWritesQueuedFramesFirst(t *testing.T, m mode) {
	var afterClose atomic.Value
	h := &recorder{onOpen: func(c Conn) {
		for i := range 200 {
			_ = c.Send(fmt.Appendf(nil, "m%d", i))
		}
		c.Close(4001, "bye")
		c.Close(4002, "twice") // ignored
		afterClose.Store(c.Send([]byte("late")))
	}}
	ts := startServer(t, h, m, Options{})
	cl := dial(t, ts.url)
	for i := range 200 {
		cl.expectText(fmt.Sprintf("m%d", i))
	}
	hd, p := cl.mustRead()
	if hd.OpCode != ws.OpClose || !bytes.Equal(p, ws.NewCloseFrameBody(4001, "bye")) {
		t.Fatalf("got op %v %q, want close 4001 bye", hd.OpCode, p)
	}
	// The server has half-closed and waits for the answer.
	cl.closeWith(4001)
	ev := h.waitClosed(t, 1)
	if ev[0].code != 4001 || ev[0].err != nil {
		t.Fatalf("Closed(%d, %v), want (4001, nil)", ev[0].code, ev[0].err)
	}
	if err, _ := afterClose.Load().(error); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
}

func TestCloseWithoutAnswerTimesOut(t *testing.T) { forModes(t, testCloseWithoutAnswerTimesOut) }

func testCloseWithoutAnswerTimesOut(t *testing.T, m mode) {
	h := &recorder{onOpen: func(c Conn) { c.Close(4000, "") }}
	ts := startServer(t, h, m, Options{CloseTimeout: 50 * time.Millisecond})
	cl := dial(t, ts.url)
	if code := cl.expectCloseNext(); code != 4000 {
		t.Fatalf("close code %d", code)
	}
	// The client neither answers nor hangs up; the server does.
	ev := h.waitClosed(t, 1)
	if ev[0].code != 4000 || ev[0].err != nil {
		t.Fatalf("Closed(%d, %v), want (4000, nil)", ev[0].code, ev[0].err)
	}
}

func TestBytesBufferedWithHandshake(t *testing.T) { forModes(t, testBytesBufferedWithHandshake) }

func testBytesBufferedWithHandshake(t *testing.T, m mode) {
	h := echo()
	ts := startServer(t, h, m, Options{})
	nc := ts.dialSocket(t)
	_ = nc.SetDeadline(time.Now().Add(patience))
	req := upgradeRequest
	// The first frames travel with the request, so net/http reads them.
	// Over TLS each write is a record, and the tls.Conn keeps the records
	// after the request's for the server's first read pass.
	writes := [][]byte{
		[]byte(req),
		frameBytes(ws.OpText, true, []byte("early"), true),
		frameBytes(ws.OpText, true, []byte("bird"), true),
	}
	if !ts.tls {
		writes = [][]byte{bytes.Join(writes, nil)}
	}
	for _, p := range writes {
		if _, err := nc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	cl := &client{t: t, nc: nc, r: br}
	cl.expectText("early")
	cl.expectText("bird")
}

func TestShutdownWaitsThenForces(t *testing.T) { forModes(t, testShutdownWaitsThenForces) }

func testShutdownWaitsThenForces(t *testing.T, m mode) {
	h := &recorder{}
	ts := startServer(t, h, m, Options{})
	cl1, cl2 := dial(t, ts.url), dial(t, ts.url)
	h.waitConn(t, 1)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	waitFor(t, "shutdown to begin", ts.shutting.Load)
	check503(t, rawUpgrade(t, ts))
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with connections open", err)
	default:
	}

	// The gateway closes one connection; Shutdown still waits for the other.
	h.connOf(t, cl1).Close(1001, "going away")
	cl1.expectCloseNext()
	cl1.closeWith(1001)
	h.waitClosed(t, 1)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection open", err)
	default:
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown: %v, want context.Canceled", err)
		}
	case <-time.After(patience):
		t.Fatal("Shutdown did not force the connection closed")
	}
	ev := h.closedEvents()
	if len(ev) != 2 || ev[1].code != 1006 || !errors.Is(ev[1].err, context.Canceled) {
		t.Fatalf("Closed calls %+v, want the second (1006, context.Canceled)", ev)
	}
	if _, _, err := cl2.read(); err == nil {
		t.Fatal("forced connection still readable")
	}
	if st := ts.Stats(); st.Conns != 0 {
		t.Fatalf("Conns = %d after Shutdown", st.Conns)
	}
}

// TestTLSEcho runs the round trip over TLS, where writes are coalesced
// rather than vectored and the close wait half-closes a TLS stream.
func TestTLSEcho(t *testing.T) {
	h := echo()
	s := New(h, Options{})
	hs := httptest.NewTLSServer(s)
	defer hs.Close()
	defer func() { _ = s.Shutdown(context.Background()) }()
	d := ws.Dialer{TLSConfig: &tls.Config{RootCAs: hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, "wss"+strings.TrimPrefix(hs.URL, "https"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cl := &client{t: t, nc: nc, r: nc}
	if br != nil {
		cl.r = io.MultiReader(br, nc)
	}
	for _, m := range []string{"secret", strings.Repeat("s", 40_000)} {
		cl.text(m)
		cl.expectText(m)
	}
	h.connOf(t, cl).Close(4000, "bye")
	if code := cl.expectCloseNext(); code != 4000 {
		t.Fatalf("close code %d", code)
	}
	cl.closeWith(4000)
	if ev := h.waitClosed(t, 1); ev[0].code != 4000 || ev[0].err != nil {
		t.Fatalf("Closed(%d, %v)", ev[0].code, ev[0].err)
	}
	// TLS connections from tls.NewListener, unlike those from
	// NewTLSListener, are not served by the event loops.
	if n := s.stats.evented.Load(); n != 0 {
		t.Fatalf("%d TLS connections on the event loops", n)
	}
}
