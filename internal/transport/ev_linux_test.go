//go:build linux

package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// idleConnsMax is 10000, or fewer if the descriptor limit cannot hold both
// sides of that many connections and some spare.
func idleConnsMax() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 2000
	}
	return max(2000, min(10000, int(rl.Cur-100)/2/1000*1000))
}

// streamPair returns the two ends of a Unix stream socket pair, the first
// for the server: a socket like TCP's for the event loops, without the
// ports that fuzzing through TCP would use up.
func streamPair(t *testing.T) (server, client net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// perConn is a Handler recording each connection's messages apart.
type perConn struct {
	onOpen  func(c Conn)
	onFrame func(c Conn, data []byte)

	mu     sync.Mutex
	conns  []*conn
	frames map[uint64][]string
	closed map[uint64]closeEvent
}

func newPerConn() *perConn {
	return &perConn{frames: map[uint64][]string{}, closed: map[uint64]closeEvent{}}
}

func (h *perConn) Open(c Conn) Session {
	h.mu.Lock()
	h.conns = append(h.conns, c.(*conn))
	h.mu.Unlock()
	if h.onOpen != nil {
		h.onOpen(c)
	}
	return &perConnSession{h: h, c: c}
}

type perConnSession struct {
	h *perConn
	c Conn
}

func (s *perConnSession) Frame(data []byte) {
	s.h.mu.Lock()
	s.h.frames[s.c.ID()] = append(s.h.frames[s.c.ID()], string(data))
	s.h.mu.Unlock()
	if s.h.onFrame != nil {
		s.h.onFrame(s.c, data)
	}
}

func (s *perConnSession) Closed(code int, err error) {
	s.h.mu.Lock()
	s.h.closed[s.c.ID()] = closeEvent{id: s.c.ID(), code: code, err: err}
	s.h.mu.Unlock()
}

func (h *perConn) framesOf(c Conn) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.frames[c.ID()]...)
}

func (h *perConn) closedOf(t *testing.T, c Conn) closeEvent {
	t.Helper()
	var ev closeEvent
	waitFor(t, "Session.Closed", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		var ok bool
		ev, ok = h.closed[c.ID()]
		return ok
	})
	return ev
}

// connFor returns the server side of cl.
func (h *perConn) connFor(t *testing.T, cl *client) *conn {
	t.Helper()
	var found *conn
	waitFor(t, "connection open", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			if c.RemoteAddr().String() == cl.nc.LocalAddr().String() {
				found = c
				return true
			}
		}
		return false
	})
	if found.nc != nil {
		t.Fatal("connection not served by the event loops")
	}
	return found
}

// waitRead waits until cond holds of c's read state.
func waitRead(t *testing.T, c *conn, what string, cond func(st *frameState) bool) {
	t.Helper()
	waitFor(t, what, func() bool { return inspect(c, cond) })
}

// inspect calls f with c's read state if no read pass runs or is queued,
// keeping any from starting meanwhile as a queued pass would, and returns
// what f does, or false.
func inspect(c *conn, f func(st *frameState) bool) bool {
	if !c.ev.rs.CompareAndSwap(0, 1) {
		return false
	}
	ok := f(c.ev.rd)
	if !c.ev.rs.CompareAndSwap(1, 0) {
		// The socket had news meanwhile: the pass it asked for is owed.
		c.srv.ev.queue.push(c)
	}
	return ok
}

// waitQuiet waits until no read pass runs or is queued for c and returns
// its read state.
func waitQuiet(t *testing.T, c *conn) (st *frameState) {
	t.Helper()
	waitRead(t, c, "read pass to end", func(s *frameState) bool { st = s; return true })
	return st
}

// forEvModes runs test, as subtests, in the modes served by the event
// loops: plain and TLS.
func forEvModes(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range []mode{eventLoops, tlsEventLoops} {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// TestEvInterleavedPartialFrames writes the frames of many connections one
// byte at a time, round robin, so that every header, payload and control
// frame arrives in pieces, interleaved with the other connections'.
func TestEvInterleavedPartialFrames(t *testing.T) { forEvModes(t, testEvInterleavedPartialFrames) }

func testEvInterleavedPartialFrames(t *testing.T, m mode) {
	const n = 40
	h := newPerConn()
	ts := startServer(t, h, m, Options{})
	cls := make([]*client, n)
	streams := make([][]byte, n)
	want := make([][]string, n)
	for i := range cls {
		cls[i] = dial(t, ts.url)
		long := strings.Repeat(string(rune('a'+i%26)), 300)
		first := fmt.Sprintf("first of %d", i)
		streams[i] = bytes.Join([][]byte{
			frameBytes(ws.OpText, true, []byte(first), true),
			frameBytes(ws.OpText, false, []byte("ab"), true),
			frameBytes(ws.OpPing, true, []byte(fmt.Sprint(i)), true),
			frameBytes(ws.OpContinuation, false, nil, true),
			frameBytes(ws.OpContinuation, true, []byte("cd"), true),
			frameBytes(ws.OpText, true, []byte(long), true),
			frameBytes(ws.OpText, true, nil, true),
		}, nil)
		want[i] = []string{first, "abcd", long, ""}
	}
	for pos := 0; ; pos++ {
		wrote := false
		for i, cl := range cls {
			if pos < len(streams[i]) {
				cl.write(streams[i][pos : pos+1])
				wrote = true
			}
		}
		if !wrote {
			break
		}
	}
	for i, cl := range cls {
		hd, p := cl.mustRead()
		if hd.OpCode != ws.OpPong || string(p) != fmt.Sprint(i) {
			t.Fatalf("conn %d: got op %v %q, want pong", i, hd.OpCode, p)
		}
		c := h.connFor(t, cl)
		waitFor(t, "messages", func() bool { return len(h.framesOf(c)) == len(want[i]) })
		if got := h.framesOf(c); !equalStrings(got, want[i]) {
			t.Fatalf("conn %d: got %q, want %q", i, got, want[i])
		}
		if st := waitQuiet(t, c); st != nil {
			t.Fatalf("conn %d: idle connection holds read state %+v", i, st)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEvFrameSplitAcrossReads sends frames cut at awkward places, pausing
// so that the server reads each piece on its own.
func TestEvFrameSplitAcrossReads(t *testing.T) { forEvModes(t, testEvFrameSplitAcrossReads) }

func testEvFrameSplitAcrossReads(t *testing.T, m mode) {
	h := newPerConn()
	ts := startServer(t, h, m, Options{MaxFrameBytes: 1 << 20})
	cl := dial(t, ts.url)
	c := h.connFor(t, cl)
	pause := func(what string, cond func(st *frameState) bool) {
		t.Helper()
		waitRead(t, c, what, cond)
	}

	big := bytes.Repeat([]byte("0123456789"), 20_000)
	f := frameBytes(ws.OpText, true, big, true)
	hl := headerLen(f)
	cl.write(f[:hl+100]) // the header and 100 bytes of payload
	bufCap := 0
	pause("first piece", func(st *frameState) bool {
		if st == nil || !st.inFrame || st.got != 100 {
			return false
		}
		bufCap = cap(*st.msg)
		return true
	})
	if bufCap > firstChunk {
		t.Fatalf("buffer of %d bytes for 100 received", bufCap)
	}
	cl.write(f[hl+100 : 50_000])
	pause("second piece", func(st *frameState) bool { return st != nil && st.got == int64(50_000-hl) })
	cl.write(f[50_000:])

	// A header cut after its first byte, then inside its mask.
	g := frameBytes(ws.OpText, true, []byte("split header"), true)
	cl.write(g[:1])
	pause("one header byte", func(st *frameState) bool { return st != nil && st.nhdr == 1 })
	cl.write(g[1:4])
	pause("four header bytes", func(st *frameState) bool { return st != nil && st.nhdr == 4 })
	cl.write(g[4:])

	// Two frames and a half in one write; the half is a continuation.
	k := bytes.Join([][]byte{
		frameBytes(ws.OpText, true, []byte("one"), true),
		frameBytes(ws.OpText, false, []byte("tw"), true),
		frameBytes(ws.OpContinuation, true, []byte("o!"), true),
	}, nil)
	cl.write(k[:len(k)-1])
	pause("half a continuation", func(st *frameState) bool { return st != nil && st.inFrame && st.got == 1 })
	cl.write(k[len(k)-1:])

	want := []string{string(big), "split header", "one", "two!"}
	waitFor(t, "messages", func() bool { return len(h.framesOf(c)) == len(want) })
	if got := h.framesOf(c); !equalStrings(got, want) {
		t.Fatalf("got %d messages, want %d, or different ones", len(got), len(want))
	}
	if st := waitQuiet(t, c); st != nil {
		t.Fatalf("idle connection holds read state %+v", st)
	}
}

// TestEvSlowHandler blocks Frame on one connection: the others go on, the
// blocked one gets its later messages in order once Frame returns, and no
// more Frame calls run at once than FrameWorkers.
func TestEvSlowHandler(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	blocked := 0
	h := newPerConn()
	h.onFrame = func(c Conn, data []byte) {
		if bytes.HasPrefix(data, []byte("block")) {
			mu.Lock()
			blocked++
			mu.Unlock()
			<-release
		}
		_ = c.Send(bytes.Clone(data))
	}
	ts := startServer(t, h, eventLoops, Options{FrameWorkers: 3})
	slow1, slow2, fast := dial(t, ts.url), dial(t, ts.url), dial(t, ts.url)
	slow1.text("block 1")
	slow1.text("after 1")
	slow1.text("after 2")
	slow2.text("block 2")
	waitFor(t, "Frame to block", func() bool { mu.Lock(); defer mu.Unlock(); return blocked == 2 })
	for i := range 20 {
		fast.text(fmt.Sprint("fast ", i))
		fast.expectText(fmt.Sprint("fast ", i))
	}
	c1 := h.connFor(t, slow1)
	if got := h.framesOf(c1); len(got) != 1 {
		t.Fatalf("%d messages delivered while Frame blocks", len(got))
	}
	close(release)
	for _, m := range []string{"block 1", "after 1", "after 2"} {
		slow1.expectText(m)
	}
	slow2.expectText("block 2")
}

// TestEvFrameWorkersBound checks that the pool never runs more Frame calls
// at once than FrameWorkers.
func TestEvFrameWorkersBound(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	inFrame, most := 0, 0
	h := newPerConn()
	h.onFrame = func(c Conn, data []byte) {
		mu.Lock()
		inFrame++
		most = max(most, inFrame)
		mu.Unlock()
		<-release
		mu.Lock()
		inFrame--
		mu.Unlock()
	}
	ts := startServer(t, h, eventLoops, Options{FrameWorkers: 2})
	for range 5 {
		dial(t, ts.url).text("x")
	}
	waitFor(t, "two Frame calls", func() bool { mu.Lock(); defer mu.Unlock(); return inFrame == 2 })
	time.Sleep(20 * time.Millisecond)
	close(release)
	waitFor(t, "every message", func() bool { return ts.Stats().FramesIn == 5 })
	if most != 2 {
		t.Fatalf("%d Frame calls at once, FrameWorkers 2", most)
	}
}

// TestEvCloseWithIncompleteFrame ends connections in the middle of a frame
// in every way.
func TestEvCloseWithIncompleteFrame(t *testing.T) { forEvModes(t, testEvCloseWithIncompleteFrame) }

func testEvCloseWithIncompleteFrame(t *testing.T, m mode) {
	half := frameBytes(ws.OpText, true, bytes.Repeat([]byte("h"), 1000), true)[:500]
	t.Run("client hangs up", func(t *testing.T) {
		h := newPerConn()
		ts := startServer(t, h, m, Options{})
		cl := dial(t, ts.url)
		c := h.connFor(t, cl)
		cl.write(half)
		waitRead(t, c, "half a frame", func(st *frameState) bool { return st != nil })
		_ = cl.nc.Close()
		ev := h.closedOf(t, c)
		if ev.code != 1006 || !errors.Is(ev.err, io.ErrUnexpectedEOF) {
			t.Fatalf("Closed(%d, %v), want (1006, unexpected EOF)", ev.code, ev.err)
		}
	})
	t.Run("client half-closes", func(t *testing.T) {
		h := newPerConn()
		ts := startServer(t, h, m, Options{})
		cl := dial(t, ts.url)
		c := h.connFor(t, cl)
		cl.write(half)
		_ = cl.nc.(interface{ CloseWrite() error }).CloseWrite()
		ev := h.closedOf(t, c)
		if ev.code != 1006 || !errors.Is(ev.err, io.ErrUnexpectedEOF) {
			t.Fatalf("Closed(%d, %v), want (1006, unexpected EOF)", ev.code, ev.err)
		}
		if _, _, err := cl.read(); !errors.Is(err, io.EOF) {
			t.Fatalf("client read %v, want EOF", err)
		}
	})
	t.Run("server closes", func(t *testing.T) {
		h := newPerConn()
		ts := startServer(t, h, m, Options{})
		cl := dial(t, ts.url)
		c := h.connFor(t, cl)
		cl.write(half)
		waitRead(t, c, "half a frame", func(st *frameState) bool { return st != nil })
		c.Close(4000, "bye")
		if code := cl.expectCloseNext(); code != 4000 {
			t.Fatalf("close code %d", code)
		}
		rest := frameBytes(ws.OpText, true, bytes.Repeat([]byte("h"), 1000), true)[500:]
		cl.write(rest)
		cl.closeWith(4000)
		ev := h.closedOf(t, c)
		if ev.code != 4000 || ev.err != nil {
			t.Fatalf("Closed(%d, %v), want (4000, nil)", ev.code, ev.err)
		}
		if got := h.framesOf(c); len(got) != 0 {
			t.Fatalf("%d messages delivered after Close", len(got))
		}
	})
	t.Run("shutdown forces", func(t *testing.T) {
		h := newPerConn()
		ts := startServer(t, h, m, Options{})
		cl := dial(t, ts.url)
		c := h.connFor(t, cl)
		cl.write(half)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := ts.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown: %v", err)
		}
		ev := h.closedOf(t, c)
		if ev.code != 1006 || !errors.Is(ev.err, context.Canceled) {
			t.Fatalf("Closed(%d, %v), want (1006, context.Canceled)", ev.code, ev.err)
		}
	})
}

// TestEvTLSRecordSplitAcrossReads sends TLS records in pieces of a few
// bytes with pauses, so that the server reads incomplete records, which the
// tls.Conn must keep until the rest arrives, and records that end inside a
// WebSocket frame.
func TestEvTLSRecordSplitAcrossReads(t *testing.T) {
	h := newPerConn()
	ts := startServer(t, h, tlsEventLoops, Options{})
	var trickle atomic.Bool
	cl := dialThrough(t, ts.url, func(nc net.Conn) net.Conn { return &trickleConn{Conn: nc, on: &trickle} })
	c := h.connFor(t, cl)
	trickle.Store(true)
	want := []string{"short", strings.Repeat("x", 300), "", "last"}
	for _, m := range want {
		cl.text(m)
	}
	waitFor(t, "messages", func() bool { return len(h.framesOf(c)) == len(want) })
	if got := h.framesOf(c); !equalStrings(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestEvIdleSparesQueuedReads: a connection whose frame waits for a busy
// worker is not idle, and the sweeper leaves it open; one that sent
// nothing is closed as usual.
func TestEvIdleSparesQueuedReads(t *testing.T) { forEvModes(t, testEvIdleSparesQueuedReads) }

func testEvIdleSparesQueuedReads(t *testing.T, m mode) {
	var clock atomic.Int64
	clock.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	release := make(chan struct{})
	h := newPerConn()
	h.onOpen = func(c Conn) { c.SetIdleTimeout(30*time.Second, 4104) }
	h.onFrame = func(c Conn, data []byte) {
		if string(data) == "block" {
			<-release
		}
	}
	ts := startServer(t, h, m, Options{FrameWorkers: 1, sweepEvery: time.Millisecond,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the server's shutdown, which waits for the worker
	busy, waiting, silent := dial(t, ts.url), dial(t, ts.url), dial(t, ts.url)
	w := h.connFor(t, waiting)
	h.connFor(t, silent) // opened, with its idle timeout set
	busy.text("block")
	waitFor(t, "the worker to block", func() bool { return len(h.framesOf(h.connFor(t, busy))) == 1 })
	waiting.text("queued")
	waitFor(t, "the read pass to queue", w.readQueued)
	clock.Add(int64(31 * time.Second))
	waitFor(t, "the silent connection's idle close", func() bool { return ts.Stats().IdleCloses >= 1 })
	for n := ts.sweeps.Load() + 3; ts.sweeps.Load() < n; {
		time.Sleep(time.Millisecond)
	}
	if st := ts.Stats(); st.IdleCloses != 1 {
		t.Fatalf("%d idle closes, want 1 (the silent connection)", st.IdleCloses)
	}
	unblock()
	waitFor(t, "the queued frame", func() bool { return len(h.framesOf(w)) == 1 })
	if code := silent.expectCloseNext(); code != 4104 {
		t.Fatalf("silent connection closed with %d", code)
	}
}

// TestEvTLS12 runs the round trip and the close handshake over TLS 1.2,
// whose records the event loops decrypt as well as TLS 1.3's.
func TestEvTLS12(t *testing.T) {
	h := newPerConn()
	h.onFrame = func(c Conn, data []byte) { _ = c.Send(bytes.Clone(data)) }
	ts := startServer(t, h, tlsEventLoops, Options{})
	d := dialer(ts.url)
	d.TLSConfig = d.TLSConfig.Clone()
	d.TLSConfig.MaxVersion = tls.VersionTLS12
	cl := dialWith(t, ts.url, d)
	if v := cl.nc.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS12 {
		t.Fatalf("TLS version %x", v)
	}
	c := h.connFor(t, cl)
	for _, m := range []string{"twelve", strings.Repeat("t", 50_000)} {
		cl.text(m)
		cl.expectText(m)
	}
	c.Close(4000, "bye")
	if code := cl.expectCloseNext(); code != 4000 {
		t.Fatalf("close code %d", code)
	}
	cl.closeWith(4000)
	if ev := h.closedOf(t, c); ev.code != 4000 || ev.err != nil {
		t.Fatalf("Closed(%d, %v), want (4000, nil)", ev.code, ev.err)
	}
}

// TestEvTLSBadRecord: a record that does not decrypt ends the connection
// as lost (1006, with the TLS error), and nothing of it reaches the
// session.
func TestEvTLSBadRecord(t *testing.T) {
	h := newPerConn()
	ts := startServer(t, h, tlsEventLoops, Options{})
	var raw net.Conn
	c := h.connFor(t, dialThrough(t, ts.url, func(nc net.Conn) net.Conn { raw = nc; return nc }))
	// An application data record of 32 bytes that no key encrypted.
	bad := append([]byte{23, 3, 3, 0, 32}, bytes.Repeat([]byte{0x5a}, 32)...)
	if _, err := raw.Write(bad); err != nil {
		t.Fatal(err)
	}
	ev := h.closedOf(t, c)
	if ev.code != 1006 || ev.err == nil || !strings.Contains(ev.err.Error(), "tls") {
		t.Fatalf("Closed(%d, %v), want (1006, a TLS error)", ev.code, ev.err)
	}
	if got := h.framesOf(c); len(got) != 0 {
		t.Fatalf("%d messages from a bad record", len(got))
	}
}

// trickleConn writes in pieces of 5 bytes with a pause after each once on
// is set.
type trickleConn struct {
	net.Conn
	on *atomic.Bool
}

func (c *trickleConn) Write(p []byte) (int, error) {
	if !c.on.Load() {
		return c.Conn.Write(p)
	}
	n := 0
	for len(p) > 0 {
		k, err := c.Conn.Write(p[:min(len(p), 5)])
		n += k
		if err != nil {
			return n, err
		}
		p = p[k:]
		time.Sleep(100 * time.Microsecond)
	}
	return n, nil
}

// flushers counts the goroutines writing to sockets.
func flushers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("transport.(*conn).flush("))
}

// fillSocket sends numbered 16 KiB frames to c until its socket is full
// and the flusher has parked; it returns how many it sent.
func fillSocket(t *testing.T, c *conn) int {
	t.Helper()
	// A small send buffer fills sooner; the client's receive buffer
	// stays as large as it is when not read.
	if err := unix.SetsockoptInt(c.ev.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	n := 0
	for !c.ev.wwait.Load() {
		if n == 1000 {
			t.Fatal("the socket never filled")
		}
		frame := append(fmt.Appendf(nil, "%06d", n), bytes.Repeat([]byte("w"), 16<<10)...)
		if err := c.Send(frame); err != nil {
			t.Fatal(err)
		}
		n++
		time.Sleep(time.Millisecond)
	}
	return n
}

// TestEvWriteWaitsForWritable fills a connection whose client does not
// read: the flusher parks its batch and exits, and when the client reads
// again the loop resumes the writing, every frame arriving in order.
func TestEvWriteWaitsForWritable(t *testing.T) { forEvModes(t, testEvWriteWaitsForWritable) }

func testEvWriteWaitsForWritable(t *testing.T, m mode) {
	h := newPerConn()
	ts := startServer(t, h, m, Options{QueueBytes: 64 << 20})
	cl := dial(t, ts.url)
	c := h.connFor(t, cl)
	n := fillSocket(t, c)
	waitFor(t, "flusher to exit", func() bool { return flushers() == 0 })
	c.mu.Lock()
	parked := c.ev.wb != nil && c.flushing && c.ev.timer != nil
	c.mu.Unlock()
	if !parked {
		t.Fatal("no parked batch")
	}
	// Frames sent meanwhile queue behind the parked batch.
	for ; n < 100; n++ {
		if err := c.Send(append(fmt.Appendf(nil, "%06d", n), bytes.Repeat([]byte("w"), 16<<10)...)); err != nil {
			t.Fatal(err)
		}
	}
	if flushers() != 0 {
		t.Fatal("Send started a flusher while a batch is parked")
	}
	for i := range n {
		_, p := cl.mustRead()
		if want := fmt.Sprintf("%06d", i); string(p[:6]) != want || len(p) != 6+16<<10 {
			t.Fatalf("frame %d: %q..., %d bytes", i, p[:6], len(p))
		}
	}
	waitFor(t, "queue to drain", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.flushing && c.queued == 0 && c.ev.timer == nil && c.ev.wb == nil
	})
	if st := ts.Stats(); st.WriteErrors != 0 || st.FramesOut != uint64(n) {
		t.Fatalf("stats %+v", st)
	}
}

// TestEvWriteTimeoutWhileParked: a client that stops reading for good is
// closed when the parked write's deadline passes.
func TestEvWriteTimeoutWhileParked(t *testing.T) { forEvModes(t, testEvWriteTimeoutWhileParked) }

func testEvWriteTimeoutWhileParked(t *testing.T, m mode) {
	h := newPerConn()
	ts := startServer(t, h, m, Options{QueueBytes: 64 << 20, WriteTimeout: 200 * time.Millisecond,
		CloseTimeout: 100 * time.Millisecond})
	cl := dial(t, ts.url)
	c := h.connFor(t, cl)
	// Frames behind the parked batch, more than the kernel would take.
	for n := fillSocket(t, c); n < 300; n++ {
		if err := c.Send(append(fmt.Appendf(nil, "%06d", n), bytes.Repeat([]byte("w"), 16<<10)...)); err != nil {
			t.Fatal(err)
		}
	}
	ev := h.closedOf(t, c)
	if ev.code != 1006 || !errors.Is(ev.err, os.ErrDeadlineExceeded) {
		t.Fatalf("Closed(%d, %v), want (1006, deadline exceeded)", ev.code, ev.err)
	}
	if st := ts.Stats(); st.WriteErrors != 1 {
		t.Fatalf("WriteErrors = %d", st.WriteErrors)
	}
}

// openFDs counts the process's file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestEvShutdownStopsLoops checks that after Shutdown no goroutine and no
// descriptor of the server is left: loops, workers, epoll instances and
// the connections' duplicated sockets.
func TestEvShutdownStopsLoops(t *testing.T) {
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	h := echo()
	s := New(h, Options{FrameWorkers: 4})
	hs := httptest.NewServer(s)
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	var cls []*client
	for i := range 10 {
		cl := dial(t, url)
		cl.text(fmt.Sprint("m", i))
		cl.expectText(fmt.Sprint("m", i))
		cls = append(cls, cl)
	}
	if got := s.stats.evented.Load(); got != 10 {
		t.Fatalf("%d connections on the event loops", got)
	}
	for _, cl := range cls[:5] {
		cl.closeWith(1000)
		cl.expectCloseNext()
	}
	hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, cl := range cls {
		_ = cl.nc.Close()
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= g0 })
	waitFor(t, "descriptors to close", func() bool { return openFDs(t) <= fd0 })
}

// TestEvWriteManyParks: a client that reads in slow bursts makes the
// flusher park and resume many times while frames keep coming; every frame
// arrives exactly once, in order.
func TestEvWriteManyParks(t *testing.T) { forEvModes(t, testEvWriteManyParks) }

func testEvWriteManyParks(t *testing.T, m mode) {
	h := newPerConn()
	ts := startServer(t, h, m, Options{QueueBytes: 64 << 20})
	cl := dial(t, ts.url)
	c := h.connFor(t, cl)
	if err := unix.SetsockoptInt(c.ev.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	const frames = 3000
	go func() {
		for i := range frames {
			if err := c.Send(append(fmt.Appendf(nil, "%06d", i), bytes.Repeat([]byte("p"), 700)...)); err != nil {
				return
			}
		}
	}()
	for i := range frames {
		if i%200 == 0 {
			time.Sleep(5 * time.Millisecond) // let the socket fill
		}
		_, p := cl.mustRead()
		if want := fmt.Sprintf("%06d", i); string(p[:6]) != want || len(p) != 706 {
			t.Fatalf("frame %d: got %q (%d bytes)", i, p[:6], len(p))
		}
	}
}
