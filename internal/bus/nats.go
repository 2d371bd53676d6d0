package bus

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"
)

// Options configure a NATS bus.
type Options struct {
	// URLs of the NATS servers; ignored when InProcess is set.
	URLs []string
	// InProcess connects to an embedded server without a socket.
	InProcess nats.InProcessConnProvider
	// Name identifies this node's connection in NATS monitoring.
	Name string
	// Prefix starts every subject (default "fg").
	Prefix string
	// Dispatchers is the number of goroutines delivering to the Handler
	// (default 4). A topic always goes through the same one, which keeps its
	// order.
	Dispatchers int
	// Pending is how many received messages may wait for a dispatcher, in
	// all (default 65536). Beyond it NATS drops and the drop is reported
	// through Handler.Lost.
	Pending int
	// ReconnectBuf bounds the bytes published while disconnected
	// (default 8 MiB); beyond it Publish returns ErrUnavailable.
	ReconnectBuf int
	// WriteTimeout bounds a blocked write to the NATS socket (default 2s).
	WriteTimeout time.Duration
	// SubscribeRate caps subscribe and unsubscribe operations per second
	// (default 10000). In a NATS cluster every interest change travels to
	// every server, so a node that restarts and takes back all its clients
	// at once must not flood the cluster; Subscribe waits for its turn.
	SubscribeRate int
	// PerApp subscribes one wildcard subject per app and kind, instead of
	// one subject per user or room. Right for an in-process server, where
	// every message is for this node anyway and a NATS subscription per user
	// would cost about a kilobyte in the client and the server; wrong for a
	// cluster, where every node would receive every user's traffic.
	PerApp bool
	// PerAppUsers is PerApp for user topics only, for a cluster of a few
	// nodes. A node then follows a user without a subscription of its own:
	// authenticating makes no round trip to NATS and no interest change
	// that every NATS server must learn, and once the app's wildcard is
	// older than the propagation time, a user's interest is settled the
	// moment it is followed (InterestAge), so the client needs no catch-up
	// resync. The price: every node receives every user-topic message of
	// the apps it has users of, and drops those for users it does not hold.
	PerAppUsers bool

	Logger *slog.Logger
	// OnDrop is called for every message NATS reports as dropped (optional,
	// for metrics).
	OnDrop func(n int)
}

// NATS is a Bus over a NATS connection: one NATS subscription per topic, all
// feeding a few shared channels so that idle topics cost no goroutine.
type NATS struct {
	nc      *nats.Conn
	h       Handler
	log     *slog.Logger
	prefix  string
	seed    maphash.Seed
	chans   []chan *nats.Msg
	onDrop  func(int)
	qsub    *nats.Subscription
	closing atomic.Bool
	wg      sync.WaitGroup
	stop    chan struct{}
	limit   *rate.Limiter // subscribe and unsubscribe operations
	flushes flushGroup

	// now is the clock of interest ages (time.Now; tests set their own).
	now func() time.Time
	// linked is when the connection to NATS was last made, in Unix
	// nanoseconds; 0 while it is down. A reconnection registers every
	// subscription again, on a server that may be new to the cluster's
	// view of this node.
	linked atomic.Int64

	mu     sync.RWMutex
	subs   map[Topic]topicSub
	topics map[string]Topic // subject → topic, to decode deliveries without parsing

	// PerApp and PerAppUsers modes: the topics followed through wildcards,
	// and the wildcard subscriptions serving them with how many topics
	// each serves.
	perApp, perAppUsers bool
	local               map[Topic]struct{}
	wild                map[Topic]*wildSub // key: the topic with ID ""
}

// topicSub is the subscription of one topic and when it was made.
type topicSub struct {
	sub   *nats.Subscription
	since time.Time
}

type wildSub struct {
	sub   *nats.Subscription
	refs  int
	since time.Time
}

var b64 = base64.RawURLEncoding

// Connect connects to NATS and starts the dispatchers. h receives
// deliveries from then on.
func Connect(ctx context.Context, h Handler, o Options) (*NATS, error) {
	if o.Prefix == "" {
		o.Prefix = "fg"
	}
	if o.Dispatchers <= 0 {
		o.Dispatchers = 4
	}
	if o.Pending <= 0 {
		o.Pending = 65536
	}
	if o.ReconnectBuf <= 0 {
		o.ReconnectBuf = 8 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SubscribeRate <= 0 {
		o.SubscribeRate = 10000
	}
	b := &NATS{
		limit:  rate.NewLimiter(rate.Limit(o.SubscribeRate), max(o.SubscribeRate/10, 1)),
		h:      h,
		log:    o.Logger,
		prefix: o.Prefix,
		seed:   maphash.MakeSeed(),
		onDrop: o.OnDrop,
		stop:   make(chan struct{}),
		now:    time.Now,
		subs:   make(map[Topic]topicSub),
		topics: make(map[string]Topic),
		local:  make(map[Topic]struct{}),
		wild:   make(map[Topic]*wildSub),

		perApp:      o.PerApp,
		perAppUsers: o.PerAppUsers,
	}
	for range o.Dispatchers {
		b.chans = append(b.chans, make(chan *nats.Msg, o.Pending/o.Dispatchers))
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(o.ReconnectBuf),
		nats.FlusherTimeout(o.WriteTimeout),
		// A link that stays open but delivers nothing (a half-dead route,
		// a hung peer) is only found by pings: after about 2-3 intervals
		// the client reconnects, and the reconnect reports the loss.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ErrorHandler(b.asyncError),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.linkDown()
			if !b.closing.Load() {
				b.log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.linkUp()
			// Whatever was published to us while we were away is gone.
			b.log.Info("bus reconnected", "url", nc.ConnectedUrlRedacted())
			b.h.Lost(Topic{}, true)
		}),
	}
	url := strings.Join(o.URLs, ",")
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	b.nc = nc
	b.linkUp()
	b.qsub, err = nc.Subscribe(b.prefix+".q", b.answer)
	if err == nil {
		err = b.flush(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: subscribe queries: %w", err)
	}
	for _, ch := range b.chans {
		b.wg.Add(1)
		go b.dispatch(ch)
	}
	return b, nil
}

func (b *NATS) dispatch(ch chan *nats.Msg) {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case m := <-ch:
			// Look the subscription up, not the subject: a wildcard
			// subscription's messages have subjects of their own.
			subj := m.Subject
			if m.Sub != nil {
				subj = m.Sub.Subject
			}
			b.mu.RLock()
			t, ok := b.topics[subj]
			b.mu.RUnlock()
			if ok && t.ID == "" && t.Kind != App {
				// A wildcard subscription: the subject names the topic.
				t, ok = b.parse(m.Subject)
			}
			if ok {
				b.h.Deliver(t, m.Data)
			}
		}
	}
}

func (b *NATS) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) || sub == nil {
		b.log.Warn("bus error", "err", err)
		return
	}
	if b.onDrop != nil {
		if n, derr := sub.Dropped(); derr == nil {
			b.onDrop(n)
		}
	}
	b.mu.RLock()
	t, ok := b.topics[sub.Subject]
	b.mu.RUnlock()
	if ok {
		b.h.Lost(t, false)
	}
}

func (b *NATS) answer(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	if a := b.h.Query(m.Data); a != nil {
		_ = m.Respond(a)
	}
}

// subject returns the NATS subject of t. Ids are base64url-encoded because
// they may contain '.', a subject separator.
func (b *NATS) subject(t Topic) string {
	var sb strings.Builder
	sb.Grow(len(b.prefix) + 4 + (len(t.App)+len(t.ID))*4/3 + 4)
	sb.WriteString(b.prefix)
	sb.WriteByte('.')
	sb.WriteByte(byte(t.Kind))
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString([]byte(t.App)))
	if t.ID != "" {
		sb.WriteByte('.')
		sb.WriteString(b64.EncodeToString([]byte(t.ID)))
	}
	return sb.String()
}

// Publish implements Bus.
func (b *NATS) Publish(t Topic, data []byte) error {
	if err := b.nc.Publish(b.subject(t), data); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// parse decodes a subject of the form prefix.kind.app.id.
func (b *NATS) parse(subj string) (Topic, bool) {
	rest, ok := strings.CutPrefix(subj, b.prefix+".")
	if !ok || len(rest) < 2 || rest[1] != '.' {
		return Topic{}, false
	}
	app, id, ok := strings.Cut(rest[2:], ".")
	if !ok {
		return Topic{}, false
	}
	a, err1 := b64.DecodeString(app)
	i, err2 := b64.DecodeString(id)
	if err1 != nil || err2 != nil {
		return Topic{}, false
	}
	return Topic{Kind: Kind(rest[0]), App: string(a), ID: string(i)}, true
}

// Subscribe implements Bus. It waits for the node's subscribe rate.
func (b *NATS) Subscribe(ctx context.Context, t Topic) error {
	if b.wildcard(t) {
		return b.subscribeWild(ctx, t)
	}
	subj := b.subject(t)
	b.mu.RLock()
	_, ok := b.subs[t]
	b.mu.RUnlock()
	if ok {
		return nil
	}
	if err := b.limit.Wait(ctx); err != nil {
		return fmt.Errorf("bus: subscribe rate: %w", err)
	}
	b.mu.Lock()
	if _, ok := b.subs[t]; ok {
		b.mu.Unlock()
		return nil
	}
	ch := b.chans[maphash.String(b.seed, subj)%uint64(len(b.chans))]
	sub, err := b.nc.ChanSubscribe(subj, ch)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("bus: subscribe: %w", err)
	}
	b.subs[t] = topicSub{sub: sub, since: b.now()}
	b.topics[subj] = t
	b.mu.Unlock()
	// The flush round trip guarantees the server has processed the SUB
	// before we tell the caller that publishes will reach it.
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("bus: subscribe flush: %w", err)
	}
	return nil
}

// subscribeWild follows t through its app's wildcard subscription, making
// that subscription if t is its first topic.
func (b *NATS) subscribeWild(ctx context.Context, t Topic) error {
	key := Topic{Kind: t.Kind, App: t.App}
	b.mu.Lock()
	if _, ok := b.local[t]; ok {
		b.mu.Unlock()
		return nil
	}
	w := b.wild[key]
	if w == nil {
		subj := b.subject(key) + ".*"
		ch := b.chans[maphash.String(b.seed, subj)%uint64(len(b.chans))]
		sub, err := b.nc.ChanSubscribe(subj, ch)
		if err != nil {
			b.mu.Unlock()
			return fmt.Errorf("bus: subscribe: %w", err)
		}
		w = &wildSub{sub: sub, since: b.now()}
		b.wild[key] = w
		b.topics[subj] = key
	}
	w.refs++
	b.local[t] = struct{}{}
	fresh := w.refs == 1
	b.mu.Unlock()
	if !fresh {
		return nil
	}
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("bus: subscribe flush: %w", err)
	}
	return nil
}

// unsubscribeWild stops following t, dropping the wildcard subscription
// with its last topic.
func (b *NATS) unsubscribeWild(t Topic) error {
	key := Topic{Kind: t.Kind, App: t.App}
	b.mu.Lock()
	if _, ok := b.local[t]; !ok {
		b.mu.Unlock()
		return nil
	}
	delete(b.local, t)
	w := b.wild[key]
	w.refs--
	if w.refs > 0 {
		b.mu.Unlock()
		return nil
	}
	delete(b.wild, key)
	delete(b.topics, w.sub.Subject)
	b.mu.Unlock()
	return w.sub.Unsubscribe()
}

// flush waits for the server to process everything sent so far. NATS
// insists on a deadline; a caller without one gets flushTimeout.
func (b *NATS) flush(ctx context.Context) error {
	return b.flushes.do(ctx, func() error {
		// Not ctx: the round trip answers every caller of the wave.
		fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		return b.nc.FlushWithContext(fctx)
	})
}

// flushTimeout is long enough for a loaded NATS cluster to answer a PING,
// short enough that a caller learns the bus is stuck.
const flushTimeout = 5 * time.Second

// Unsubscribe implements Bus. It never waits: when the node is over its
// subscribe rate it returns ErrRateLimited and the caller keeps the
// subscription for now (an extra subscription is harmless).
func (b *NATS) Unsubscribe(t Topic) error {
	if b.wildcard(t) {
		return b.unsubscribeWild(t)
	}
	if !b.limit.Allow() {
		return ErrRateLimited
	}
	b.mu.Lock()
	s, ok := b.subs[t]
	if ok {
		delete(b.subs, t)
		delete(b.topics, s.sub.Subject)
	}
	b.mu.Unlock()
	if !ok {
		return nil
	}
	return s.sub.Unsubscribe()
}

// Broadcast implements Bus.
func (b *NATS) Broadcast(ch string, data []byte) error {
	if err := b.nc.Publish(b.prefix+".x."+ch, data); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Listen implements Bus.
func (b *NATS) Listen(ctx context.Context, ch string, fn func([]byte)) error {
	sub, err := b.nc.Subscribe(b.prefix+".x."+ch, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return fmt.Errorf("bus: listen %s: %w", ch, err)
	}
	// Membership and control traffic is small; a listener that falls this
	// far behind is better off dropping (and NATS reports it).
	_ = sub.SetPendingLimits(4096, 16<<20)
	if err := b.flush(ctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("bus: listen %s: %w", ch, err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-ctx.Done():
		case <-b.stop:
		}
		_ = sub.Unsubscribe()
	}()
	return nil
}

// Gather implements Bus.
func (b *NATS) Gather(ctx context.Context, query []byte, max int) ([][]byte, error) {
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(max+1, 16<<20); err != nil {
		return nil, err
	}
	if err := b.nc.PublishRequest(b.prefix+".q", inbox, query); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var out [][]byte
	for len(out) < max {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		out = append(out, m.Data)
	}
	return out, nil
}

// Healthy implements Bus.
func (b *NATS) Healthy() error {
	if s := b.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: %s", ErrUnavailable, s)
	}
	return nil
}

// wildcard reports whether t is followed through its app's wildcard.
func (b *NATS) wildcard(t Topic) bool {
	return t.ID != "" && (b.perApp || b.perAppUsers && t.Kind == User)
}

// InterestAge implements Bus. A topic followed through a wildcard is as old
// as the wildcard; no interest is older than the connection to NATS, and
// none has an age while the connection is down.
func (b *NATS) InterestAge(t Topic) time.Duration {
	linked := b.linked.Load()
	if linked == 0 {
		return 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	var since time.Time
	if b.wildcard(t) {
		if _, ok := b.local[t]; ok {
			since = b.wild[Topic{Kind: t.Kind, App: t.App}].since
		}
	} else if s, ok := b.subs[t]; ok {
		since = s.since
	}
	if since.IsZero() {
		return 0
	}
	now := b.now()
	return max(min(now.Sub(since), now.Sub(time.Unix(0, linked))), time.Nanosecond)
}

// linkUp and linkDown record the connection to NATS coming and going.
func (b *NATS) linkUp()   { b.linked.Store(b.now().UnixNano()) }
func (b *NATS) linkDown() { b.linked.Store(0) }

// Subscriptions implements Bus.
func (b *NATS) Subscriptions() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs) + len(b.local)
}

// Close implements Bus.
func (b *NATS) Close() error {
	if b.closing.Swap(true) {
		return nil
	}
	b.nc.Close()
	close(b.stop)
	b.wg.Wait()
	return nil
}
