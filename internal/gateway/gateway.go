// Package gateway is the heart of a Floodgate node: it authenticates client
// connections, runs their requests against the store, and fans events out
// to local connections from the bus. It sees connections only through
// transport.Conn and the bus only through bus.Bus; it implements
// transport.Handler and bus.Handler so neither depends on it.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/transport"
	"github.com/floodgate/floodgate/protocol"
)

// Limits bound what one connection may do. Each is announced to clients or
// documented in docs/protocol.md.
type Limits struct {
	MaxFrameBytes   int
	MaxBodyBytes    int
	MaxRooms        int
	MaxSyncConvs    int
	MaxGroupMembers int
	MaxPresence     int
	PresenceMembers int
	Rate            float64
	Burst           int
}

// Options configure a Gateway. Zero durations get the defaults documented
// on each field.
type Options struct {
	Node    string
	Store   store.Store
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock of every decision (rate limits, caches, tokens);
	// default time.Now.
	Now    func() time.Time
	Limits Limits
	// AuthTimeout: a connection must authenticate within it (default 5s).
	AuthTimeout time.Duration
	// MaxPendingAuth bounds the connections open and not yet
	// authenticated; beyond it Admit refuses new ones. 0: no bound.
	MaxPendingAuth int
	// PingInterval is announced to clients (default 25s).
	PingInterval time.Duration
	// RequestTimeout bounds the store and bus calls of one request
	// (default 5s).
	RequestTimeout time.Duration
	// UnsubscribeGrace is how long a topic without local followers keeps its
	// bus subscription (default 5s).
	UnsubscribeGrace time.Duration
	// CacheTTL bounds how stale a cached app or member list may be when the
	// bus lost the message that should have dropped it (default 10s).
	CacheTTL time.Duration
	// ResyncSpread is the window over which clients told to resync after a
	// bus reconnect spread their syncs (default 5s).
	ResyncSpread time.Duration
	// Nodes returns how many gateway nodes answer presence queries (from
	// cluster membership); nil means a single node.
	Nodes func() int
	// CatchUp, when positive, makes every client resync this long after
	// its subscriptions were made (see catchUp). Zero with an in-process
	// bus, where a subscription is in place once Subscribe returns.
	CatchUp time.Duration
}

// maxUserConvs bounds the conversations a sync with all=true considers, so
// one request cannot read an unbounded list.
const maxUserConvs = 10000

// cacheEntries bounds each of the app and conversation caches.
const cacheEntries = 20000

// Gateway serves client sessions on one node. Create it with New, attach
// the bus with Start, and hand it to the transport as its Handler.
type Gateway struct {
	o     Options
	st    store.Store
	bus   bus.Bus
	m     *metrics.Metrics
	log   *slog.Logger
	now   func() time.Time
	hub   *hub
	apps  *appCache
	convs *convCache
	// pendingAuth counts open connections not yet authenticated (Admit).
	pendingAuth atomic.Int64

	ctx    context.Context // ends when the gateway closes; parent of request contexts
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessions sessionSet
	catchUps catchUp
	seed     maphash.Seed
}

// New returns a gateway; it serves nothing until Start.
func New(o Options) *Gateway {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AuthTimeout, 5*time.Second)
	def(&o.PingInterval, 25*time.Second)
	def(&o.RequestTimeout, 5*time.Second)
	def(&o.UnsubscribeGrace, 5*time.Second)
	def(&o.CacheTTL, 10*time.Second)
	def(&o.ResyncSpread, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		o:      o,
		st:     o.Store,
		m:      o.Metrics,
		log:    o.Logger,
		now:    o.Now,
		ctx:    ctx,
		cancel: cancel,
		seed:   maphash.MakeSeed(),
		apps:   &appCache{ctx: ctx, st: o.Store, ttl: o.CacheTTL, max: cacheEntries, now: o.Now, m: map[string]appEntry{}},
		convs: &convCache{ctx: ctx, st: o.Store, ttl: o.CacheTTL, max: cacheEntries, maxMembers: o.Limits.MaxGroupMembers,
			now: o.Now, m: map[convKey]*convInfo{}},
	}
	g.hub = newHub(nil, o.UnsubscribeGrace, o.Now)
	g.sessions.init()
	return g
}

// Start attaches the bus and starts the gateway's janitor. Call it once,
// before serving connections.
func (g *Gateway) Start(b bus.Bus) {
	g.bus = b
	g.hub.bus = b
	g.m.GaugeFunc("floodgate_sessions", "Authenticated client sessions on this node.", func() float64 { return float64(g.sessions.authed()) })
	g.m.GaugeFunc("floodgate_bus_subscriptions", "Bus topics this node subscribes to.", func() float64 { return float64(b.Subscriptions()) })
	g.wg.Add(1)
	go g.janitor()
}

// janitor sends due catch-up resyncs, and drops idle bus subscriptions and
// repairs failed ones about once a second, until the gateway closes.
func (g *Gateway) janitor() {
	defer g.wg.Done()
	const tick = 250 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		for _, e := range g.catchUps.due(g.now()) {
			g.catchUpDue(e, tick)
		}
		if n%4 == 0 {
			ctx, cancel := context.WithTimeout(g.ctx, g.o.RequestTimeout)
			for _, s := range g.hub.sweep(ctx) {
				g.resync(s, time.Second)
			}
			cancel()
		}
	}
}

// Open implements transport.Handler.
func (g *Gateway) Open(c transport.Conn) transport.Session {
	s := &Session{g: g, conn: c, id: g.newSessionID()}
	g.pendingAuth.Add(1)
	c.SetIdleTimeout(g.o.AuthTimeout, protocol.CloseAuthTimeout)
	g.sessions.add(s)
	return s
}

// Admit reports whether the node should take one more connection now: not
// while MaxPendingAuth connections are open and not yet authenticated. In
// a reconnect storm that number grows with the time an auth takes, so the
// node refuses upgrades (cheaply, with HTTP 503 and Retry-After) as soon as
// it is slow, instead of accepting connections whose auth would time out.
func (g *Gateway) Admit() bool {
	if g.o.MaxPendingAuth <= 0 {
		return true
	}
	if g.pendingAuth.Load() < int64(g.o.MaxPendingAuth) {
		return true
	}
	g.m.LimitHits.WithLabelValues("pending_auth").Inc()
	return false
}

// OversizeFrame is the frame the transport sends before closing a
// connection whose frame exceeded MaxFrameBytes.
func (g *Gateway) OversizeFrame() []byte {
	return protocol.EncodeError(0, &protocol.Error{Code: protocol.CodeFrameTooLarge,
		Message: "frame larger than max_frame_bytes"})
}

// newSessionID returns a random id, unique across nodes for practical
// purposes, so a frame published with "skip session X" skips only X.
func (g *Gateway) newSessionID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := binary.BigEndian.Uint64(b[:])
	if id == 0 {
		id = 1
	}
	return id
}

// Deliver implements bus.Handler.
func (g *Gateway) Deliver(t bus.Topic, data []byte) {
	if len(data) == 0 {
		return
	}
	body := data[1:]
	switch data[0] {
	case msgFrame:
		if len(body) < 8 {
			return
		}
		skip := binary.BigEndian.Uint64(body[:8])
		frame := body[8:]
		var sent, dropped int
		g.hub.sessions(t, func(s *Session) {
			if s.id == skip || !s.live() {
				return
			}
			if s.conn.Send(frame) != nil {
				dropped++
			} else {
				sent++
			}
		})
		g.m.Deliveries.Add(float64(sent))
		if dropped > 0 {
			g.m.DeliveryDrops.Add(float64(dropped))
		}
	case msgKick:
		var k kick
		if json.Unmarshal(body, &k) != nil {
			return
		}
		var victims []*Session
		g.hub.sessions(t, func(s *Session) { victims = append(victims, s) })
		for _, s := range victims {
			s.closeWith(k.Code, k.Reason)
		}
	case msgConv:
		g.convs.drop(t.App, string(body))
	case msgApp:
		var a appChange
		if json.Unmarshal(body, &a) != nil {
			return
		}
		g.apps.drop(t.App)
		if a.Disabled {
			var victims []*Session
			g.hub.sessions(t, func(s *Session) { victims = append(victims, s) })
			for _, s := range victims {
				s.closeWith(protocol.CloseAppDisabled, "app disabled")
			}
		}
	case msgPresence:
		var p presenceChange
		if json.Unmarshal(body, &p) != nil {
			return
		}
		g.presenceChanged(t, p)
	}
}

// Lost implements bus.Handler: the connections that may have missed a
// message are told to resync, spread over a window so a node-wide loss does
// not turn into a synchronised read storm on the store.
func (g *Gateway) Lost(t bus.Topic, all bool) {
	g.m.BusLost.Inc()
	if all {
		g.sessions.each(func(s *Session) { g.resync(s, g.o.ResyncSpread) })
		return
	}
	switch {
	case (t.Kind == bus.User || t.Kind == bus.Room) && t.ID == "":
		// Every user or room of the app: every session of the app.
		g.hub.sessions(bus.Topic{Kind: bus.App, App: t.App}, func(s *Session) { g.resync(s, g.o.ResyncSpread) })
	case t.Kind == bus.User || t.Kind == bus.Room:
		g.hub.sessions(t, func(s *Session) { g.resync(s, time.Second) })
	}
}

func (g *Gateway) resync(s *Session, spread time.Duration) {
	if !s.live() {
		return
	}
	f, _ := protocol.EncodeEvent(protocol.EvResync, protocol.ResyncEvent{DelayMS: spread.Milliseconds()})
	if s.conn.Send(f) == nil {
		g.m.Resyncs.Inc()
	}
}

// Query implements bus.Handler: it answers presence queries.
func (g *Gateway) Query(data []byte) []byte {
	var q presenceQuery
	if json.Unmarshal(data, &q) != nil || len(q.Users) > math.MaxInt16 {
		return nil
	}
	a := presenceAnswer{Node: g.o.Node, Online: []string{}}
	for _, u := range q.Users {
		if g.hub.count(bus.Topic{Kind: bus.User, App: q.App, ID: u}) > 0 {
			a.Online = append(a.Online, u)
		}
	}
	b, _ := json.Marshal(a)
	return b
}

// Shutdown tells every client to go away with code (4000 to reconnect, 4200
// to go elsewhere) and a directive carrying a random delay within spread,
// so the clients of a restarting node do not all come back at once. It does
// not wait; the transport's Shutdown does.
func (g *Gateway) Shutdown(code int, reason string, spread time.Duration) {
	action := protocol.ActionReconnect
	if protocol.CloseAction(code) == protocol.AfterRedirect {
		action = protocol.ActionRedirect
	}
	g.sessions.each(func(s *Session) {
		s.directive(protocol.Directive{Action: action, Code: code, Reason: reason, RetryAfterMS: spread.Milliseconds()})
	})
}

// Close stops the janitor. Sessions still open are left to the transport.
func (g *Gateway) Close() {
	g.cancel()
	g.wg.Wait()
}

// Sessions returns the number of open connections, authenticated or not.
func (g *Gateway) Sessions() int { return g.sessions.len() }

// sessionSet is every session of the node, sharded like the hub so that
// opening and closing connections does not contend on one lock.
type sessionSet struct {
	shards [hubShards]struct {
		mu sync.Mutex
		m  map[*Session]struct{}
	}
}

func (ss *sessionSet) init() {
	for i := range ss.shards {
		ss.shards[i].m = make(map[*Session]struct{})
	}
}

func (ss *sessionSet) shard(s *Session) int { return int(s.id % hubShards) }

func (ss *sessionSet) add(s *Session) {
	sh := &ss.shards[ss.shard(s)]
	sh.mu.Lock()
	sh.m[s] = struct{}{}
	sh.mu.Unlock()
}

func (ss *sessionSet) remove(s *Session) {
	sh := &ss.shards[ss.shard(s)]
	sh.mu.Lock()
	delete(sh.m, s)
	sh.mu.Unlock()
}

// each calls fn for every session, outside the shard locks.
func (ss *sessionSet) each(fn func(*Session)) {
	var batch []*Session
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		for s := range sh.m {
			batch = append(batch, s)
		}
		sh.mu.Unlock()
		for _, s := range batch {
			fn(s)
		}
	}
}

func (ss *sessionSet) len() int {
	n := 0
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (ss *sessionSet) authed() int {
	n := 0
	ss.each(func(s *Session) {
		if s.live() {
			n++
		}
	})
	return n
}
