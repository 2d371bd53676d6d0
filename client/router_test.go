package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// fakeRouter answers GET /v1/route like the cluster's router: the route a
// test sets, or 503 with Retry-After while refuse > 0. It can go down and
// come back on the same address.
type fakeRouter struct {
	t    *testing.T
	addr string
	wg   sync.WaitGroup

	mu         sync.Mutex
	srv        *http.Server
	route      protocol.RouteResult
	refuse     int    // requests still to refuse with 503
	retryAfter string // the 503's Retry-After
	hits       int    // requests answered (200 or 503)
	errs       []string
}

func newFakeRouter(t *testing.T, route protocol.RouteResult) *fakeRouter {
	t.Helper()
	r := &fakeRouter{t: t, route: route}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() {
		r.down()
		r.wg.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errs {
			t.Error("fake router: " + e)
		}
	})
	return r
}

func (r *fakeRouter) URL() string { return "http://" + r.addr }

func (r *fakeRouter) serve(ln net.Listener) {
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// down stops the router: its address refuses connections.
func (r *fakeRouter) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up starts it again on the same address. It may run on any goroutine.
func (r *fakeRouter) up() error {
	var (
		ln  net.Listener
		err error
	)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ln, err = net.Listen("tcp", r.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the port is released asynchronously
	}
	if err != nil {
		return err
	}
	r.serve(ln)
	return nil
}

func (r *fakeRouter) set(f func(r *fakeRouter)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *fakeRouter) hitCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits
}

func (r *fakeRouter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != http.MethodGet || req.URL.Path != "/v1/route" || req.URL.Query().Get("app") != "app1" {
		r.errs = append(r.errs, "unexpected request "+req.Method+" "+req.URL.String())
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	r.hits++
	w.Header().Set("Content-Type", "application/json")
	if r.refuse > 0 {
		r.refuse--
		if r.retryAfter != "" {
			w.Header().Set("Retry-After", r.retryAfter)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]*protocol.Error{"error": {Code: protocol.CodeUnavailable, Message: "no gateway", RetryAfterMS: 1}})
		return
	}
	_ = json.NewEncoder(w).Encode(r.route)
}

// fakeClock is the clock route TTLs are measured with; it moves only when
// a test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const routeTTL = time.Minute

func route(primary, secondary *fakeServer) protocol.RouteResult {
	r := protocol.RouteResult{Primary: primary.URL(), TTLMS: routeTTL.Milliseconds()}
	if secondary != nil {
		r.Secondary = secondary.URL()
	}
	return r
}

// routerOptions are testOptions that find the gateway through rt, with
// TTLs measured on clk.
func routerOptions(t *testing.T, rt *fakeRouter, clk *fakeClock) Options {
	opts := testOptions(t, &fakeServer{})
	opts.URL, opts.Router = "", rt.URL()
	opts.hooks.now = clk.Now
	return opts
}

func auths(s *fakeServer) int {
	n, _, _, _ := s.stats()
	return n
}

// reconnect makes the server end alice's connection with a "reconnect"
// close, which keeps the route, and waits for connection n.
func reconnect(h *harness, s *fakeServer, n int) {
	h.t.Helper()
	s.kick("alice", &protocol.Directive{Action: protocol.ActionReconnect, Code: 4000}, 4000)
	h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == n })
}

func TestRouterRouteCachedWithinTTL(t *testing.T) {
	a := newFakeServer(t)
	rt := newFakeRouter(t, route(a, nil))
	clk := newFakeClock()
	h := start(t, routerOptions(t, rt, clk))
	reconnect(h, a, 2)
	a.drop("alice")
	h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 3 })
	clk.advance(routeTTL - time.Millisecond)
	reconnect(h, a, 4)
	if n := rt.hitCount(); n != 1 {
		t.Fatalf("router asked %d times for 4 connections within the TTL, want once", n)
	}
	if n := auths(a); n != 4 {
		t.Fatalf("gateway saw %d auths, want 4", n)
	}
}

func TestRouterRouteRefreshedAfterTTL(t *testing.T) {
	a, b := newFakeServer(t), newFakeServer(t)
	rt := newFakeRouter(t, route(a, nil))
	clk := newFakeClock()
	h := start(t, routerOptions(t, rt, clk))
	rt.set(func(r *fakeRouter) { r.route = route(b, nil) }) // the cluster changed
	reconnect(h, a, 2)                                      // within the TTL: a again
	clk.advance(routeTTL)
	reconnect(h, a, 3) // expired: asks the router, which says b
	if n := rt.hitCount(); n != 2 {
		t.Fatalf("router asked %d times, want twice", n)
	}
	if na, nb := auths(a), auths(b); na != 2 || nb != 1 {
		t.Fatalf("auths a=%d b=%d, want 2 and 1", na, nb)
	}
}

func TestRouterSecondaryWhenPrimaryFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(a *fakeServer)
	}{
		{"primary down", func(a *fakeServer) { a.down() }},
		{"primary 503", func(a *fakeServer) { a.set(func(s *fakeServer) { s.refuse, s.retryAfter = 1000, "5" }) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFakeServer(t), newFakeServer(t)
			tc.fail(a)
			rt := newFakeRouter(t, route(a, b))
			h := start(t, routerOptions(t, rt, newFakeClock()))
			if nb := auths(b); nb != 1 {
				t.Fatalf("secondary saw %d auths, want 1", nb)
			}
			if ws := h.recordedWaits(); len(ws) != 0 {
				t.Fatalf("waited %+v: the secondary belongs to the same attempt", ws)
			}
			// A session that ended is not a dial failure: the cached route
			// is kept, primary first, and b still takes the client.
			reconnect(h, b, 2)
			if n := rt.hitCount(); n != 1 {
				t.Fatalf("router asked %d times, want once", n)
			}
			if na, nb := auths(a), auths(b); na != 0 || nb != 2 {
				t.Fatalf("auths a=%d b=%d, want 0 and 2", na, nb)
			}
		})
	}
	t.Run("not after an authenticated session", func(t *testing.T) {
		a, b := newFakeServer(t), newFakeServer(t)
		rt := newFakeRouter(t, route(a, b))
		h := start(t, routerOptions(t, rt, newFakeClock()))
		a.kick("alice", nil, 4100) // back-off, same route
		h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
		if na, nb := auths(a), auths(b); na != 2 || nb != 0 {
			t.Fatalf("auths a=%d b=%d, want 2 and 0", na, nb)
		}
	})
}

func TestRouterAskedAgainWhenNoGatewayOfTheRouteWorks(t *testing.T) {
	a, b, c := newFakeServer(t), newFakeServer(t), newFakeServer(t)
	rt := newFakeRouter(t, route(a, b))
	h := start(t, routerOptions(t, rt, newFakeClock()))
	rt.set(func(r *fakeRouter) { r.route = route(c, nil) })
	b.down()
	a.down() // both gone, well within the TTL
	h.waitUntil("the connection to c", func() bool { return h.count(EventConnected) == 2 })
	if n := rt.hitCount(); n != 2 || auths(c) != 1 {
		t.Fatalf("router asked %d times, c saw %d auths; want 2 and 1", n, auths(c))
	}
}

func TestRouterDownUsesLastRoute(t *testing.T) {
	a := newFakeServer(t)
	rt := newFakeRouter(t, route(a, nil))
	clk := newFakeClock()
	h := start(t, routerOptions(t, rt, clk))
	rt.down()
	clk.advance(10 * routeTTL) // long expired: still the best there is
	reconnect(h, a, 2)
	a.drop("alice")
	h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 3 })
	for _, w := range h.recordedWaits() {
		if w.why == "no route" {
			t.Fatalf("waits %+v: the client waited for the router", h.recordedWaits())
		}
	}
	// Back up: asked again once the hold after the failure (at most
	// BackoffMax) is over.
	if err := rt.up(); err != nil {
		t.Fatal(err)
	}
	reconnect(h, a, 4)
	if n := rt.hitCount(); n != 1 {
		t.Fatalf("router asked %d times during its hold, want only the first time", n)
	}
	clk.advance(time.Second)
	reconnect(h, a, 5)
	if n := rt.hitCount(); n != 2 {
		t.Fatalf("router asked %d times, want it asked again after the hold", n)
	}
}

func TestRouterDownWithoutRouteBacksOff(t *testing.T) {
	a := newFakeServer(t)
	rt := newFakeRouter(t, route(a, nil))
	rt.down()
	h := newHarness(t)
	upErr := make(chan error, 1)
	go func() {
		// Up again after a few failed attempts.
		deadline := time.Now().Add(waitTimeout)
		for len(h.recordedWaits()) < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		upErr <- rt.up()
	}()
	if err := h.dial(ctxT(t), routerOptions(t, rt, newFakeClock())); err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := <-upErr; err != nil {
		t.Fatal(err)
	}
	ws := h.recordedWaits()
	if len(ws) < 3 {
		t.Fatalf("waits %+v, want at least 3", ws)
	}
	for _, w := range ws {
		if w.why != "no route" || w.d < 0 || w.d > 20*time.Millisecond {
			t.Fatalf("wait %+v, want back-off within [0, BackoffMax] for no route", w)
		}
	}
	if n := h.tokenCalls(); n != 1 {
		t.Fatalf("Token called %d times: only an attempt with a gateway needs one", n)
	}
	if n := rt.hitCount(); n != 1 || auths(a) != 1 {
		t.Fatalf("router answered %d times, gateway %d auths; want 1 and 1", n, auths(a))
	}
}

func TestRouter503RetryAfter(t *testing.T) {
	a := newFakeServer(t)
	rt := newFakeRouter(t, route(a, nil))
	rt.set(func(r *fakeRouter) { r.refuse, r.retryAfter = 2, "2" })
	clk := newFakeClock()
	h := start(t, routerOptions(t, rt, clk))
	ws := h.recordedWaits()
	if len(ws) != 2 {
		t.Fatalf("waits %+v, want two", ws)
	}
	for _, w := range ws {
		if w.d != 4*time.Second || w.why != "router 503" { // Retry-After plus all of the jitter
			t.Fatalf("wait %+v after a router 503 with Retry-After: 2, want 4s", w)
		}
	}
	if n := rt.hitCount(); n != 3 {
		t.Fatalf("router asked %d times, want 3", n)
	}

	// With a route in hand, a 503 does not delay the reconnect: the last
	// route serves, and the router is left alone for Retry-After plus
	// jitter (10s here).
	clk.advance(routeTTL)
	rt.set(func(r *fakeRouter) { r.refuse, r.retryAfter = 1, "5" })
	reconnect(h, a, 2)
	reconnect(h, a, 3)
	clk.advance(9 * time.Second)
	reconnect(h, a, 4)
	if n := rt.hitCount(); n != 4 {
		t.Fatalf("router asked %d times within its Retry-After, want 4", n)
	}
	clk.advance(2 * time.Second)
	reconnect(h, a, 5)
	if n := rt.hitCount(); n != 5 {
		t.Fatalf("router asked %d times after its Retry-After, want 5", n)
	}
	for _, w := range h.recordedWaits()[2:] {
		if w.why == "router 503" {
			t.Fatalf("waits %+v: a router 503 delayed a client that had a route", h.recordedWaits())
		}
	}
}

func TestRouterRedirect(t *testing.T) {
	for _, tc := range []struct {
		name string
		kick func(a *fakeServer)
	}{
		{"close 4200", func(a *fakeServer) { a.kick("alice", nil, 4200) }},
		{"directive without url", func(a *fakeServer) {
			a.kick("alice", &protocol.Directive{Action: protocol.ActionRedirect, Code: 4200}, 4200)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFakeServer(t), newFakeServer(t)
			rt := newFakeRouter(t, route(a, b)) // a stays primary: the router lags
			h := start(t, routerOptions(t, rt, newFakeClock()))
			tc.kick(a)
			h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
			if n := rt.hitCount(); n != 2 {
				t.Fatalf("router asked %d times, want again after the redirect (within the TTL)", n)
			}
			if na, nb := auths(a), auths(b); na != 1 || nb != 1 {
				t.Fatalf("auths a=%d b=%d: want the redirecting node avoided", na, nb)
			}
		})
	}
	t.Run("directive with url", func(t *testing.T) {
		a, c := newFakeServer(t), newFakeServer(t)
		rt := newFakeRouter(t, route(a, nil))
		h := start(t, routerOptions(t, rt, newFakeClock()))
		a.kick("alice", &protocol.Directive{Action: protocol.ActionRedirect, Code: 4200, URL: c.URL()}, 4200)
		h.waitUntil("the connection to c", func() bool { return h.count(EventConnected) == 2 })
		if n := auths(c); n != 1 || rt.hitCount() != 1 {
			t.Fatalf("c saw %d auths, router asked %d times; want 1 and 1 (the url needs no route)", n, rt.hitCount())
		}
		// The route was dropped: the next connection asks the router.
		reconnect(h, c, 3)
		if n := rt.hitCount(); n != 2 || auths(a) != 2 {
			t.Fatalf("router asked %d times, a saw %d auths; want 2 and 2", n, auths(a))
		}
	})
	t.Run("router down", func(t *testing.T) {
		a, b := newFakeServer(t), newFakeServer(t)
		rt := newFakeRouter(t, route(a, b))
		h := start(t, routerOptions(t, rt, newFakeClock()))
		rt.down()
		a.kick("alice", nil, 4200)
		h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
		if na, nb := auths(a), auths(b); na != 1 || nb != 1 {
			t.Fatalf("auths a=%d b=%d: want the last route's secondary", na, nb)
		}
	})
	t.Run("the only node", func(t *testing.T) {
		a := newFakeServer(t)
		rt := newFakeRouter(t, route(a, nil))
		h := start(t, routerOptions(t, rt, newFakeClock()))
		a.kick("alice", nil, 4200)
		h.waitUntil("the reconnect", func() bool { return h.count(EventConnected) == 2 })
		// Not straight back: one attempt without a gateway, then the
		// router's answer is used.
		ws := h.recordedWaits()
		if len(ws) != 2 || ws[1].why != "no route" {
			t.Fatalf("waits %+v, want the redirect's, then one for no route", ws)
		}
		if n := rt.hitCount(); n != 2 {
			t.Fatalf("router asked %d times, want 2", n)
		}
	})
}

func TestRouterRefusesDowngrade(t *testing.T) {
	gw := newFakeServer(t)
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_ = json.NewEncoder(w).Encode(route(gw, nil)) // ws:// from an https router
	}))
	defer srv.Close()
	opts := testOptions(t, gw)
	opts.URL, opts.Router, opts.HTTPClient = "", srv.URL, srv.Client()
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		deadline := time.Now().Add(waitTimeout)
		for hits.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := newHarness(t).dial(ctx, opts)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "plain-text gateway") {
		t.Fatalf("Dial: %v, want it cancelled after refusing the plain-text gateway", err)
	}
	if n := auths(gw); n != 0 {
		t.Fatalf("the plain-text gateway saw %d auths", n)
	}

	// Nor may a gateway redirect such a client to plain text.
	c := &Client{route: &router{tlsOnly: true}}
	if err := c.checkRedirect("ws://b/v1/ws"); err == nil {
		t.Fatal("redirect from an https router's gateway to ws accepted")
	}
	if err := c.checkRedirect("wss://b/v1/ws"); err != nil {
		t.Fatal(err)
	}
	if err := (&Client{route: &router{}}).checkRedirect("ws://b/v1/ws"); err != nil {
		t.Fatalf("http router, ws redirect: %v", err)
	}
}

func TestRouterOptions(t *testing.T) {
	tok := func(context.Context) (string, error) { return "t", nil }
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"both", Options{URL: "ws://a/v1/ws", Router: "http://r", App: "app1", Token: tok}, "not both"},
		{"both URLs", Options{URLs: []string{"ws://a/v1/ws"}, Router: "http://r", App: "app1", Token: tok}, "not both"},
		{"neither", Options{App: "app1", Token: tok}, "is required"},
		{"ws router", Options{Router: "ws://r:7000", App: "app1", Token: tok}, "http:// or https://"},
		{"no scheme", Options{Router: "router:7000", App: "app1", Token: tok}, "http:// or https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	c, err := newClient(Options{Router: "https://r.example:7000/floodgate/?region=eu", App: "app1", Token: tok, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://r.example:7000/floodgate/v1/route?app=app1&region=eu"; c.route.endpoint != want {
		t.Fatalf("endpoint %s, want %s", c.route.endpoint, want)
	}
	if !c.route.tlsOnly || !c.route.own || c.route.http.Timeout != 3*time.Second {
		t.Fatalf("router %+v: want TLS only and a client of its own with DialTimeout", c.route)
	}
}
