package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// clientName is sent in auth, for the server's logs.
const clientName = "floodgate-go/1"

// Options configure a Client. App and Token are required, and where to
// connect: either Router, or URL (or URLs), not both.
type Options struct {
	// URL is the gateway's WebSocket endpoint, ws://HOST:PORT/v1/ws or
	// wss://…/v1/ws.
	URL string
	// URLs, when set, replaces URL: every connection attempt tries them in
	// order until one accepts, starting after the one a "reconnect to
	// another node" close moved away from.
	URLs []string
	// Router is the base URL of a Floodgate router (http://router:7000,
	// https://…), the alternative to URL and URLs for a cluster: before
	// each connection the client asks GET {Router}/v1/route?app=App which
	// gateway to use, and tries the answer's primary, then its secondary
	// if the primary cannot be dialled or refuses the upgrade (HTTP 503).
	// The answer is cached for its ttl_ms; a redirect (directive or close
	// 4200–4299) drops the cache and avoids the redirecting node on the
	// next attempt. When the router fails (unreachable, an error, a 503),
	// the client keeps using the last route it received, however old, so
	// that a dead router never keeps it from gateways that still work; it
	// asks the router again after the 503's Retry-After (plus jitter) or
	// a back-off. Without any route yet, it retries with back-off, or
	// after Retry-After plus jitter. An https router may only send the
	// client to wss gateways: an answer naming a ws:// one is refused. See
	// the package documentation, "Routing".
	Router string
	// HTTPClient is used to ask the Router (default: a client with a
	// timeout of DialTimeout, using TLSConfig). Each request is also
	// bounded by DialTimeout.
	HTTPClient *http.Client
	// App is the app id.
	App string
	// Token returns a user token (a JWT signed by the app's backend). It is
	// called for every connection, once a gateway has accepted it and
	// before auth, so an expired or revoked token (close 4300–4399) is
	// replaced by a fresh one, and attempts that find no gateway cost the
	// app's backend nothing. An error is retried with back-off. The context
	// ends after DialTimeout or on Close; meanwhile the gateway's auth
	// timeout runs, so a Token slower than that costs an attempt.
	Token func(ctx context.Context) (string, error)
	// Cursors starts the given conversations at these delivered seqs, for
	// instance as saved from Client.Cursors by a previous run: messages
	// after them are delivered, none at or before. Rooms among them must
	// also be in Rooms (or joined with JoinRoom before the first sync: in
	// practice, use Rooms), since the server forgets them otherwise.
	Cursors map[string]uint64
	// Rooms are joined on every connection, as if JoinRoom had been called
	// before Dial. With Cursors, a room resumes where the app left it.
	Rooms []string
	// BackoffMin and BackoffMax bound the exponential back-off between
	// connection attempts (defaults 250ms and 30s).
	BackoffMin, BackoffMax time.Duration
	// EventBuffer is how many events the client queues for the application
	// before it stops reading from the server (default 1024). See Events.
	EventBuffer int
	// MaxInFlight bounds the calls in progress at once (default 256); more
	// calls wait for a slot or their context.
	MaxInFlight int
	// DialTimeout bounds the TCP/TLS connect and WebSocket upgrade, the
	// Token call, the auth exchange, every write and every request to the
	// Router (default 10s).
	DialTimeout time.Duration
	// Logger receives the client's diagnostics (default: discarded).
	Logger *slog.Logger
	// TLSConfig is used for wss:// URLs, and for an https Router unless
	// HTTPClient is set (default: the system's roots).
	TLSConfig *tls.Config
	// NetDial, when set, opens the TCP connection to a gateway in place of
	// a net.Dialer: to pick a source address, go through a proxy or tune
	// the socket. Its context carries the attempt's DialTimeout; for a
	// wss:// URL the TLS handshake runs over the connection it returns.
	// The Router is asked through HTTPClient, not NetDial.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)

	hooks *hooks
}

// hooks let tests control time and randomness.
type hooks struct {
	// sleep replaces the wait between connection attempts; it records d.
	sleep func(ctx context.Context, d time.Duration, why string) error
	// rand replaces the jitter source.
	rand randFunc
	// stableAfter replaces stableAfter.
	stableAfter *time.Duration
	// now replaces the clock the route cache's TTL is measured with.
	now func() time.Time
}

// convBuffer bounds the out-of-order messages held per conversation. A gap
// is normally healed by one sync round trip; a conversation busier than
// this during that time is simply synced again.
const convBuffer = 512

// stableAfter is how long a connection must stay authenticated before the
// back-off starts again from BackoffMin. It is long on purpose: a cluster
// that accepts connections and fails a few seconds later must keep seeing
// its clients' back-off grow.
const stableAfter = 30 * time.Second

// Client is a connection to a Floodgate cluster that survives the loss of
// connections, nodes and whole clusters: it reconnects on its own, resumes
// every conversation it follows without loss or duplication, and resends
// calls that are safe to repeat. Its methods are safe for concurrent use,
// including from the goroutine that receives Events.
type Client struct {
	opts   Options
	urls   []string
	route  *router // with Options.Router; nil with URL or URLs
	log    *slog.Logger
	rand   randFunc
	now    func() time.Time
	stable time.Duration

	ctx    context.Context // the loop's lifetime: cancelled by Close
	cancel context.CancelFunc

	events    chan Event
	q         *eventQueue
	slots     chan struct{}
	firstAuth chan struct{}
	term      chan struct{} // closed when termErr is set
	quit      chan struct{} // closed by Close, after the loop ended
	loopDone  chan struct{}
	pumpDone  chan struct{}
	closeOnce sync.Once
	syncKick  chan struct{}

	mu       sync.Mutex
	seq      *sequencer
	rooms    map[string]struct{} // rooms to join on every connection
	presence map[string]*wsConn  // conversations to subscribe on every connection → where they are now
	cur      *wsConn             // the authenticated connection, nil when none
	ready    chan struct{}       // closed while cur != nil
	termErr  error               // ErrClosed or the stop's *CloseError
	nextID   uint64
	user     string
	limits   protocol.Limits
	authed   bool  // first auth done
	lastErr  error // why the last connection attempt ended, for Dial's error
}

// Dial starts a client and returns once its first connection is
// authenticated. It fails if ctx ends first (the client is then closed), or
// if the server refuses for good (a *CloseError, which also unwraps to the
// *protocol.Error of a refused auth such as token_invalid or app_disabled).
// Transient failures (network, 503, expired token, router unavailable, …)
// are retried with back-off until ctx ends. Invalid Options (including
// both or neither of Router and URL/URLs) fail at once. ctx bounds only
// Dial: the client lives until Close.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	go c.pump()
	go c.run()
	select {
	case <-c.firstAuth:
		return c, nil
	case <-c.term:
		err := c.terminal()
		_ = c.Close()
		return nil, err
	case <-ctx.Done():
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		_ = c.Close()
		if last != nil {
			return nil, fmt.Errorf("floodgate: dial: %w (last attempt: %v)", ctx.Err(), last)
		}
		return nil, ctx.Err()
	}
}

func newClient(o Options) (*Client, error) {
	urls := o.URLs
	if len(urls) == 0 && o.URL != "" {
		urls = []string{o.URL}
	}
	switch {
	case o.Router != "" && len(urls) > 0:
		return nil, errors.New("floodgate: set either Options.Router or Options.URL/URLs, not both")
	case o.Router == "" && len(urls) == 0:
		return nil, errors.New("floodgate: Options.Router, Options.URL or Options.URLs is required")
	}
	for _, u := range urls {
		if err := checkURL(u); err != nil {
			return nil, err
		}
	}
	if !protocol.ValidID(o.App) {
		return nil, fmt.Errorf("floodgate: invalid app id %q", o.App)
	}
	if o.Token == nil {
		return nil, errors.New("floodgate: Options.Token is required")
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	var route *router
	if o.Router != "" {
		var err error
		if route, err = newRouter(o); err != nil {
			return nil, err
		}
	}
	c := &Client{
		opts:      o,
		urls:      append([]string(nil), urls...),
		route:     route,
		log:       o.Logger,
		rand:      rand.Int64N,
		now:       time.Now,
		stable:    stableAfter,
		events:    make(chan Event),
		q:         newEventQueue(),
		slots:     make(chan struct{}, o.MaxInFlight),
		firstAuth: make(chan struct{}),
		term:      make(chan struct{}),
		quit:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		pumpDone:  make(chan struct{}),
		syncKick:  make(chan struct{}, 1),
		seq:       newSequencer(o.Cursors, convBuffer),
		rooms:     make(map[string]struct{}),
		presence:  make(map[string]*wsConn),
		ready:     make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if h := o.hooks; h != nil {
		if h.rand != nil {
			c.rand = h.rand
		}
		if h.stableAfter != nil {
			c.stable = *h.stableAfter
		}
		if h.now != nil {
			c.now = h.now
		}
	}
	if route != nil {
		route.retry.rand = c.rand
	}
	for _, r := range o.Rooms {
		if !protocol.ValidID(r) {
			return nil, fmt.Errorf("floodgate: invalid room id %q", r)
		}
		c.rooms[r] = struct{}{}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("floodgate: invalid URL %q: %w", s, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("floodgate: URL %q: scheme must be ws or wss", s)
	}
	return nil
}

// Events returns the channel of everything that happens: messages, read
// markers, typing, presence, membership, and connection state changes, in
// order. It is the same channel for the client's whole life; it is closed
// after EventStopped, or by Close.
//
// Consume it promptly. Up to Options.EventBuffer events wait for the
// application; beyond that the client stops reading from the server (it
// still reads when a call awaits its reply, so calling the client from the
// goroutine that consumes events never deadlocks; live messages that arrive
// then are fetched again later by sync). A client that stays behind is
// eventually disconnected by the server as a slow consumer (close 4100);
// it then reconnects and resumes with no loss.
func (c *Client) Events() <-chan Event { return c.events }

// Cursors returns, for every conversation the client follows, the seq of
// the last message the application has received from Events: a copy the
// application may persist and pass back as Options.Cursors to resume after
// a restart. Messages still queued inside the client do not count, so it
// never runs ahead of the application; it may lag behind by the message
// just received, for an instant. Persisting it after handling messages
// can therefore, after a crash, deliver a message again, but never skip
// one.
func (c *Client) Cursors() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.seq.Cursors()
	// Messages of a conversation are queued in seq order, so the oldest
	// one not yet received says where the application really is.
	c.q.undelivered(func(m *protocol.Message) {
		if d, ok := cur[m.Conv]; ok && m.Seq-1 < d {
			cur[m.Conv] = m.Seq - 1
		}
	})
	return cur
}

// Close sends a normal close (1000) to the server, stops the connection
// loop, fails pending and future calls with ErrClosed and closes the Events
// channel; undelivered events are dropped. It waits for the client's
// goroutines to end and is safe to call more than once, from any
// goroutine, including the one consuming events.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.setTerminal(ErrClosed)
		c.cancel()
		<-c.loopDone
		close(c.quit)
		<-c.pumpDone
		if c.route != nil && c.route.own {
			c.route.http.CloseIdleConnections()
		}
	})
	return nil
}

// setTerminal records the error every call fails with from now on; the
// first one wins (a stop before Close stays a stop).
func (c *Client) setTerminal(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.termErr == nil {
		c.termErr = err
		close(c.term)
	}
}

// terminal returns the error calls fail with, nil while the client runs.
func (c *Client) terminal() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.termErr
}

// emit queues ev for the application; c.mu must be held, so that events
// are queued in the order the state machine produced them.
func (c *Client) emit(ev Event) { c.q.push(ev) }

// emitMessages queues delivered messages.
func (c *Client) emitMessages(ms []protocol.Message) {
	for i := range ms {
		m := ms[i]
		c.emit(Event{Type: EventMessage, Message: &m})
	}
}

// kickSync wakes the connection loop when the state machine wants a sync;
// c.mu must be held.
func (c *Client) kickSync() {
	if !c.seq.SyncWanted() {
		return
	}
	select {
	case c.syncKick <- struct{}{}:
	default:
	}
}
