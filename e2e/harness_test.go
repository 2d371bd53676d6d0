// Package e2e holds Floodgate's end-to-end tests: real servers (in-process
// on random ports, or the floodgate binary as a child process) driven
// through the public protocol with the Go SDK or a raw WebSocket client.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/server"
	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

// patience bounds every wait; reaching it is a failure.
const patience = 30 * time.Second

const adminToken = "e2e-admin-token"

// node is an in-process Floodgate server.
type node struct {
	t    testing.TB
	srv  *server.Server
	cfg  config.Config
	stop context.CancelFunc
	done chan error
}

// startNode starts a server on random loopback ports with a fresh data
// directory; mutate adjusts the configuration first.
func startNode(t testing.TB, mutate func(*config.Config), opts ...server.Option) *node {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.OpsListen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.AdminToken = adminToken
	cfg.SQLiteSync = "normal"
	cfg.ShutdownTimeout = 5 * time.Second
	// Tests send as fast as they can; TestRateLimit sets its own.
	cfg.Rate, cfg.Burst = 1e5, 1e5
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("E2E_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log, opts...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	n := &node{t: t, srv: srv, cfg: cfg, stop: cancel, done: make(chan error, 1)}
	go func() { n.done <- srv.Run(ctx) }()
	t.Cleanup(n.close)
	return n
}

// close shuts the node down and waits for it.
func (n *node) close() {
	n.stop()
	select {
	case <-n.done:
	case <-time.After(patience):
		n.t.Error("node did not shut down")
	}
}

func (n *node) url() string { return n.srv.URL() }

// app is a tenant created through the admin API.
type app struct {
	ID, Secret string
	n          *node
}

func (n *node) createApp(t testing.TB, name string) app {
	t.Helper()
	var a struct{ ID, Secret string }
	status := n.admin(t, "POST", "/admin/v1/apps", map[string]string{"name": name}, &a)
	if status != http.StatusCreated {
		t.Fatalf("create app: HTTP %d", status)
	}
	return app{ID: a.ID, Secret: a.Secret, n: n}
}

// admin calls the admin API and decodes the answer into out.
func (n *node) admin(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	return httpJSON(t, method, n.srv.HTTPURL()+path, body, out, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+adminToken)
	})
}

// server calls the server API as app a.
func (a app) server(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	return httpJSON(t, method, a.n.srv.HTTPURL()+path, body, out, func(r *http.Request) { r.SetBasicAuth(a.ID, a.Secret) })
}

func httpJSON(t testing.TB, method, url string, body, out any, auth func(*http.Request)) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	auth(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode
}

// token mints a valid token for user.
func (a app) token(t testing.TB, user string) string {
	t.Helper()
	tok, err := token.Mint(a.Secret, token.Claims{User: user, App: a.ID, IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects an SDK client for user and closes it at the end of the
// test. mutate adjusts the options.
func (a app) dial(t testing.TB, user string, mutate ...func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{
		URL: a.n.url(), App: a.ID,
		Token:      func(context.Context) (string, error) { return a.token(t, user), nil },
		BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		EventBuffer: 4096,
	}
	for _, m := range mutate {
		m(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// collector gathers the messages a client receives, per conversation.
type collector struct {
	mu   sync.Mutex
	msgs map[string][]protocol.Message
	evs  []client.Event
	cond *sync.Cond
}

// collect consumes c's events until the channel closes.
func collect(c *client.Client) *collector {
	col := &collector{msgs: make(map[string][]protocol.Message)}
	col.cond = sync.NewCond(&col.mu)
	go func() {
		for ev := range c.Events() {
			col.mu.Lock()
			if ev.Type == client.EventMessage {
				col.msgs[ev.Message.Conv] = append(col.msgs[ev.Message.Conv], *ev.Message)
			} else {
				col.evs = append(col.evs, ev)
			}
			col.cond.Broadcast()
			col.mu.Unlock()
		}
	}()
	return col
}

// messages returns a copy of what was received in conv.
func (col *collector) messages(conv string) []protocol.Message {
	col.mu.Lock()
	defer col.mu.Unlock()
	return append([]protocol.Message(nil), col.msgs[conv]...)
}

// waitCount waits until n messages of conv have arrived.
func (col *collector) waitCount(t testing.TB, conv string, n int) []protocol.Message {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages in %s", n, conv), func() bool { return len(col.messages(conv)) >= n })
	return col.messages(conv)
}

// waitEvent waits for an event satisfying match and returns it.
func (col *collector) waitEvent(t testing.TB, what string, match func(client.Event) bool) client.Event {
	t.Helper()
	var found client.Event
	waitFor(t, what, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, ev := range col.evs {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// checkSeqs fails unless msgs are exactly seqs from..to, once each, in order.
func checkSeqs(t testing.TB, who string, msgs []protocol.Message, from, to uint64) {
	t.Helper()
	if uint64(len(msgs)) != to-from+1 {
		t.Fatalf("%s: got %d messages, want %d (seqs %d..%d)", who, len(msgs), to-from+1, from, to)
	}
	for i, m := range msgs {
		if m.Seq != from+uint64(i) {
			t.Fatalf("%s: message %d has seq %d, want %d", who, i, m.Seq, from+uint64(i))
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

// raw is a bare WebSocket client speaking protocol v1 by hand, for what
// the SDK would never send.
type raw struct {
	t      testing.TB
	conn   net.Conn
	nextID uint64
	// closed is the code of the server's close frame, once read.
	closed int
}

func (n *node) raw(t testing.TB) *raw {
	t.Helper()
	return rawAt(t, n.url())
}

// rawAt dials a raw client to the WebSocket URL url.
func rawAt(t testing.TB, url string) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &raw{t: t, conn: conn}
}

// write sends one text frame.
func (r *raw) write(frame []byte) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(patience))
	if err := wsutil.WriteClientText(r.conn, frame); err != nil {
		r.t.Fatal(err)
	}
}

// call sends op with args and returns the reply, skipping events.
func (r *raw) call(op string, args any) protocol.Frame {
	r.t.Helper()
	r.nextID++
	id := r.nextID
	a, _ := json.Marshal(args)
	b, _ := json.Marshal(protocol.Request{ID: id, Op: op, Args: a})
	r.write(b)
	for {
		f, ok := r.read()
		if !ok {
			r.t.Fatalf("%s: connection closed before the reply", op)
		}
		if f.Ev == "" && f.ID == id {
			return f
		}
	}
}

// read returns the next frame; ok is false once the server closed. A
// close frame's code is kept in lastClose.
func (r *raw) read() (protocol.Frame, bool) {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(patience))
	for {
		data, op, err := wsutil.ReadServerData(r.conn)
		if err != nil {
			if ce, ok := err.(wsutil.ClosedError); ok {
				r.closed = int(ce.Code)
			}
			return protocol.Frame{}, false
		}
		if op != ws.OpText && op != ws.OpBinary {
			continue
		}
		var f protocol.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			r.t.Fatalf("server sent invalid JSON %q: %v", data, err)
		}
		return f, true
	}
}

// closeCode reads until the server closes and returns the close code (0
// when the socket ended without one), and the frames seen before.
func (r *raw) closeCode() (int, []protocol.Frame) {
	r.t.Helper()
	var frames []protocol.Frame
	for {
		f, ok := r.read()
		if !ok {
			return r.closed, frames
		}
		frames = append(frames, f)
	}
}

func (r *raw) auth(a app, user string) protocol.Frame {
	r.t.Helper()
	return r.call(protocol.OpAuth, protocol.AuthArgs{App: a.ID, Token: a.token(r.t, user)})
}

func errCode(f protocol.Frame) string {
	if f.Error == nil {
		return ""
	}
	return f.Error.Code
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// scrape returns the node's /metrics text.
func scrape(t testing.TB, n *node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.srv.OpsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grepLines returns the lines of text containing s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
