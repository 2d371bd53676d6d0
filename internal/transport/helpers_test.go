package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// patience bounds every wait in these tests; reaching it is a failure, never
// an expected path.
const patience = 10 * time.Second

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// closeEvent is one Session.Closed call.
type closeEvent struct {
	id   uint64
	code int
	err  error
}

// recorder is a Handler that records what happens and lets a test react to
// frames.
type recorder struct {
	onOpen  func(c Conn)
	onFrame func(c Conn, data []byte)

	mu     sync.Mutex
	conns  []Conn
	frames [][]byte
	closed []closeEvent
}

func (h *recorder) Open(c Conn) Session {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	if h.onOpen != nil {
		h.onOpen(c)
	}
	return &recSession{h: h, c: c}
}

type recSession struct {
	h *recorder
	c Conn
}

func (s *recSession) Frame(data []byte) {
	s.h.mu.Lock()
	s.h.frames = append(s.h.frames, bytes.Clone(data))
	s.h.mu.Unlock()
	if s.h.onFrame != nil {
		s.h.onFrame(s.c, data)
	}
}

func (s *recSession) Closed(code int, err error) {
	s.h.mu.Lock()
	s.h.closed = append(s.h.closed, closeEvent{id: s.c.ID(), code: code, err: err})
	s.h.mu.Unlock()
}

func (h *recorder) conn(i int) Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i >= len(h.conns) {
		return nil
	}
	return h.conns[i]
}

func (h *recorder) numConns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *recorder) closedEvents() []closeEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]closeEvent(nil), h.closed...)
}

func (h *recorder) frameList() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.frames...)
}

// waitConn waits for the i-th connection to be opened.
func (h *recorder) waitConn(t testing.TB, i int) Conn {
	t.Helper()
	waitFor(t, "connection open", func() bool { return h.numConns() > i })
	return h.conn(i)
}

// connOf returns the server side of cl's connection.
func (h *recorder) connOf(t testing.TB, cl *client) Conn {
	t.Helper()
	var found Conn
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
	return found
}

// waitClosed waits for n Closed calls and returns them.
func (h *recorder) waitClosed(t testing.TB, n int) []closeEvent {
	t.Helper()
	waitFor(t, "Session.Closed", func() bool { return len(h.closedEvents()) >= n })
	return h.closedEvents()
}

// testServer is a Server behind a real TCP listener.
type testServer struct {
	*Server
	http *httptest.Server
	url  string // ws:// or wss://
	tls  bool
}

// dialSocket connects to ts without a handshake, over TLS if ts is a TLS
// server.
func (ts *testServer) dialSocket(t testing.TB) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: patience}
	addr := ts.http.Listener.Addr().String()
	var (
		nc  net.Conn
		err error
	)
	if ts.tls {
		nc, err = tls.DialWithDialer(&d, "tcp", addr, testTLS().client)
	} else {
		nc, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// mode is how a test's server serves its connections.
type mode struct {
	name string
	// goroutines: Options.GoroutinePerConn, a reader goroutine per
	// connection; otherwise the event loops where the platform has them.
	goroutines bool
	// tls: the server listens with NewTLSListener, clients dial wss.
	tls bool
}

var (
	eventLoops    = mode{name: "epoll"}
	goroutines    = mode{name: "goroutine", goroutines: true}
	tlsEventLoops = mode{name: "tls-epoll", tls: true}
	tlsGoroutines = mode{name: "tls-goroutine", goroutines: true, tls: true}
)

// forModes runs test once per mode, as subtests.
func forModes(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range []mode{eventLoops, goroutines, tlsEventLoops, tlsGoroutines} {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// testTLS is the tests' TLS setup: a self-signed ECDSA P-256 certificate
// for 127.0.0.1, what the server presents and what clients trust.
var testTLS = sync.OnceValue(func() (setup struct{ server, client *tls.Config }) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "transport test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	setup.server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	setup.client = &tls.Config{RootCAs: roots}
	return setup
})

// options returns opts set for m.
func (m mode) options(opts Options) Options {
	opts.GoroutinePerConn = m.goroutines
	return opts
}

// evented reports whether m serves connections with event loops on this
// platform.
func (m mode) evented() bool { return !m.goroutines && runtime.GOOS == "linux" }

// serveHTTP serves s from a test HTTP server, behind NewTLSListener if m
// is a TLS mode, and returns the server and its WebSocket URL.
func serveHTTP(s *Server, m mode) (*httptest.Server, string) {
	hs := httptest.NewUnstartedServer(s)
	scheme := "ws"
	if m.tls {
		hs.Listener = NewTLSListener(hs.Listener, testTLS().server)
		scheme = "wss"
	}
	hs.Start()
	return hs, scheme + strings.TrimPrefix(hs.URL, "http")
}

// startServer starts a Server serving in mode m and shuts it down at the
// end of the test, checking that its goroutines all end and that its
// connections were served as m says.
func startServer(t testing.TB, h Handler, m mode, opts Options) *testServer {
	t.Helper()
	s := New(h, m.options(opts))
	hs, url := serveHTTP(s, m)
	ts := &testServer{Server: s, http: hs, url: url, tls: m.tls}
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		// Shutdown returns only once every goroutine it started has
		// ended; a hang here is a leak.
		done := make(chan struct{})
		go func() { _ = s.Shutdown(ctx); close(done) }()
		select {
		case <-done:
		case <-time.After(patience):
			t.Errorf("Shutdown did not return")
		}
		want := uint64(0)
		if m.evented() {
			want = s.stats.accepted.Load()
		}
		if got := s.stats.evented.Load(); got != want {
			t.Errorf("%d connections served by event loops, want %d", got, want)
		}
	})
	return ts
}

// client is the test's side of a WebSocket connection, speaking frames
// directly so that tests can send what a well-behaved client would not.
type client struct {
	t  testing.TB
	nc net.Conn
	r  io.Reader
}

// upgradeRequest is a WebSocket upgrade request, for tests that speak
// HTTP themselves.
const upgradeRequest = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// dialThrough dials url with the test dialer, its TCP connection passed
// through wrap (which may replace it, or just keep it).
func dialThrough(t testing.TB, url string, wrap func(net.Conn) net.Conn) *client {
	t.Helper()
	d := dialer(url)
	d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return wrap(nc), nil
	}
	return dialWith(t, url, d)
}

// dialer is a WebSocket dialer for url, trusting the test certificate.
func dialer(url string) ws.Dialer {
	var d ws.Dialer
	if strings.HasPrefix(url, "wss:") {
		d.TLSConfig = testTLS().client
	}
	return d
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	return dialWith(t, url, dialer(url))
}

// dialWith dials url with d.
func dialWith(t testing.TB, url string, d ws.Dialer) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: t, nc: nc, r: nc}
	if br != nil {
		// The server's first frames may have come with the handshake.
		c.r = io.MultiReader(br, nc)
	}
	return c
}

// frameBytes encodes a client frame; masked unless told otherwise.
func frameBytes(op ws.OpCode, fin bool, payload []byte, masked bool) []byte {
	f := ws.NewFrame(op, fin, bytes.Clone(payload))
	if masked {
		f = ws.MaskFrameInPlace(f)
	}
	var buf bytes.Buffer
	if err := ws.WriteFrame(&buf, f); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func (c *client) write(p []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(patience))
	if _, err := c.nc.Write(p); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

func (c *client) send(op ws.OpCode, fin bool, payload []byte) {
	c.t.Helper()
	c.write(frameBytes(op, fin, payload, true))
}

func (c *client) text(s string) { c.t.Helper(); c.send(ws.OpText, true, []byte(s)) }

// read reads one frame from the server, which must be unmasked.
func (c *client) read() (ws.Header, []byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(patience))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, errors.New("server frame is masked")
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.r, p)
	return h, p, err
}

func (c *client) mustRead() (ws.Header, []byte) {
	c.t.Helper()
	h, p, err := c.read()
	if err != nil {
		c.t.Fatalf("client read: %v", err)
	}
	return h, p
}

// expectText reads a frame that must be the text message want.
func (c *client) expectText(want string) {
	c.t.Helper()
	h, p := c.mustRead()
	if h.OpCode != ws.OpText || !h.Fin || string(p) != want {
		c.t.Fatalf("got op %v fin %v %q, want text %q", h.OpCode, h.Fin, p, want)
	}
}

// expectCloseNext reads a frame that must be a close frame and returns its
// code.
func (c *client) expectCloseNext() int {
	c.t.Helper()
	h, p := c.mustRead()
	if h.OpCode != ws.OpClose {
		c.t.Fatalf("got op %v %q, want close", h.OpCode, p)
	}
	if len(p) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(p))
}

// closeWith answers the server's close with code, as a client should.
func (c *client) closeWith(code int) {
	c.t.Helper()
	c.send(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusCode(code), ""))
}

// fakeConn is a net.Conn over a fixed input stream whose output is
// discarded, for driving the reader without a network.
type fakeConn struct {
	in      io.Reader // nil: Read blocks until Close, like an idle client
	done    chan struct{}
	mu      sync.Mutex
	closed  bool
	written int
	writes  int
	out     *bytes.Buffer // if set, keeps what was written
}

func newFakeConn(in io.Reader) *fakeConn {
	return &fakeConn{in: in, done: make(chan struct{})}
}

func (f *fakeConn) Read(p []byte) (int, error) {
	if f.in == nil {
		<-f.done
		return 0, net.ErrClosed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	return f.in.Read(p)
}

func (f *fakeConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	f.written += len(p)
	f.writes++
	if f.out != nil {
		f.out.Write(p)
	}
	return len(p), nil
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
	return nil
}

func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// serveFake serves nc as an upgraded connection, as ServeHTTP would.
func (s *Server) serveFake(nc net.Conn, pending []byte) bool {
	if !s.reserve() {
		return false
	}
	s.start(nc, pending)
	return true
}
