package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/client"
)

// stormShard holds SDK clients through a server restart: the SDK's
// back-off, reconnection and resume are the behaviour under test, so this
// scenario uses the real client rather than the lean one.
//
// Clients come in pairs sharing a direct conversation, in which the first
// of the pair sends a few messages before the outage. When a client is
// back after the outage, it sends one message of its own. It counts as
// resumed once the SDK has delivered, exactly once and in order, every
// message of the conversation up to that one: what was sent before the
// outage, and whatever its partner sent while it was still disconnected,
// which it can only get through the SDK's resume sync.
type stormShard struct {
	env     *shardEnv
	clients []*stormClient
	armed   atomic.Bool
	// rejected counts upgrades refused with 503 that the clients saw.
	rejected atomic.Int64
	retries  errorCounts // by retryCause

	// sendCtx bounds the messages clients send after coming back.
	sendCtx    context.Context
	sendCancel context.CancelFunc
	sends      sync.WaitGroup // those sends
	consumers  sync.WaitGroup // one per client, until its Events closes

	mu      sync.Mutex
	acked   map[string]uint64
	noSends bool // quiesce began: clients coming back now send nothing
}

// stormClient is one SDK client and what the storm measures of it.
type stormClient struct {
	c    *client.Client
	user string

	mu        sync.Mutex
	conv      string
	tr        *seqTracker
	downAt    int64 // first disconnection after arming, Unix ns
	upAt      int64 // first reconnection after that
	resumedAt int64
	ackedAt   int64  // when the message it sent once back was acknowledged
	backSeq   uint64 // seq of that message
}

func (s *stormShard) setup(ctx context.Context) error {
	p := s.env.shard
	s.acked = make(map[string]uint64)
	s.sendCtx, s.sendCancel = context.WithCancel(context.WithoutCancel(ctx))
	n := 2 * (p.Hi - p.Lo)
	s.clients = make([]*stormClient, n)
	logger := slog.New(dialLog{rejected: &s.rejected, retries: &s.retries})
	var tlsConf *tls.Config
	if p.TLSInsecure {
		tlsConf = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	}
	forEach(ctx, n, p.ShardConcurrency, func(k int) {
		i := 2*p.Lo + k
		sc := &stormClient{user: p.User(i)}
		o := client.Options{App: p.App, BackoffMin: p.BackoffMin, BackoffMax: p.BackoffMax,
			EventBuffer: 256, Logger: logger, TLSConfig: tlsConf,
			Token: func(context.Context) (string, error) { return mintToken(&p.Plan, sc.user) }}
		if p.SourceIPs > 1 {
			// The SDK's own timeout bounds the dial; this one is a backstop.
			o.NetDial = p.netDialer(i, attemptTimeout).DialContext
		}
		if p.Router != "" {
			o.Router = p.Router
		} else {
			o.URL = p.gatewayFor(i)
		}
		dctx, cancel := context.WithTimeout(ctx, attemptTimeout*time.Duration(p.Retries+1))
		defer cancel()
		start := time.Now()
		c, err := client.Dial(dctx, o)
		if err != nil {
			s.env.ctr.failed.Add(1)
			s.env.errs.add("dial:" + classify(err))
			return
		}
		s.env.hists[histHandshake].Record(time.Since(start))
		sc.c = c
		s.clients[k] = sc
		s.consumers.Add(1)
		go s.consume(sc)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	forEach(ctx, n/2, p.ShardConcurrency, func(q int) { s.preparePair(ctx, q) })
	return ctx.Err()
}

// preparePair opens the pair's conversation and exchanges the messages
// sent before the outage, waiting until both have received them.
func (s *stormShard) preparePair(ctx context.Context, q int) {
	a, b := s.clients[2*q], s.clients[2*q+1]
	if a == nil || b == nil {
		return
	}
	conv, err := a.c.Direct(ctx, b.user)
	if err != nil {
		s.env.errs.add("conv.direct:" + classify(err))
		return
	}
	for _, sc := range []*stormClient{a, b} {
		sc.mu.Lock()
		sc.conv, sc.tr = conv.ID, newSeqTracker(conv.LastSeq)
		sc.mu.Unlock()
	}
	var last uint64
	for j := range s.env.plan.StormMessages {
		res, err := a.c.SendWithID(ctx, conv.ID, a.user+"-pre"+strconv.Itoa(j), map[string]int64{"t": time.Now().UnixNano()})
		if err != nil {
			s.env.errs.add("send:" + classify(err))
			return
		}
		s.env.ctr.sent.Add(1)
		s.env.ctr.acked.Add(1)
		last = max(last, res.Seq)
	}
	s.ack(conv.ID, last)
	for _, sc := range []*stormClient{a, b} {
		for sc.tracker().Contig() < last {
			if !sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) {
				return
			}
		}
	}
}

func (s *stormShard) ack(conv string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked[conv] = max(s.acked[conv], seq)
}

func (sc *stormClient) tracker() *seqTracker {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.tr == nil {
		return newSeqTracker(0)
	}
	return sc.tr
}

// consume follows one client's events until the client is closed.
func (s *stormShard) consume(sc *stormClient) {
	defer s.consumers.Done()
	for ev := range sc.c.Events() {
		now := time.Now().UnixNano()
		switch ev.Type {
		case client.EventMessage:
			s.env.ctr.delivered.Add(1)
			sc.mu.Lock()
			tr := sc.tr
			sc.mu.Unlock()
			if tr == nil || ev.Message.Conv != sc.conv {
				s.env.errs.add("untracked_message")
				continue
			}
			tr.Live(ev.Message.Seq)
			s.checkResumed(sc, now)
		case client.EventConnected:
			s.env.ctr.open.Add(1)
			s.env.ctr.opened.Add(1)
			sc.mu.Lock()
			back := s.armed.Load() && sc.downAt != 0 && sc.upAt == 0
			if back {
				sc.upAt = now
				s.env.hists[histDowntime].Record(time.Duration(now - sc.downAt))
			}
			sc.mu.Unlock()
			if back {
				s.env.ctr.reconnected.Add(1)
				s.mu.Lock()
				if !s.noSends {
					s.sends.Add(1)
					go s.sendBack(sc)
				}
				s.mu.Unlock()
			}
		case client.EventDisconnected:
			s.env.ctr.open.Add(-1)
			sc.mu.Lock()
			first := s.armed.Load() && sc.downAt == 0
			if first {
				sc.downAt = now
			}
			sc.mu.Unlock()
			if first {
				s.env.ctr.dropped.Add(1)
				for {
					cur := s.env.firstDown.Load()
					if (cur != 0 && cur <= now) || s.env.firstDown.CompareAndSwap(cur, now) {
						break
					}
				}
			}
			if ev.State != nil && ev.State.Code != 0 {
				s.env.errs.add("closed_" + strconv.Itoa(ev.State.Code))
			}
		case client.EventStopped:
			s.env.errs.add("stopped")
		}
	}
}

// sendBack sends the client's message after its reconnection.
func (s *stormShard) sendBack(sc *stormClient) {
	defer s.sends.Done()
	sc.mu.Lock()
	conv := sc.conv
	sc.mu.Unlock()
	if conv == "" {
		return
	}
	s.env.ctr.sent.Add(1)
	start := time.Now()
	res, err := sc.c.SendWithID(s.sendCtx, conv, sc.user+"-back", map[string]int64{"t": start.UnixNano()})
	if err != nil {
		s.env.errs.add("send:" + classify(err))
		return
	}
	now := time.Now()
	s.env.hists[histAck].Record(now.Sub(start))
	s.env.ctr.acked.Add(1)
	s.ack(conv, res.Seq)
	sc.mu.Lock()
	sc.backSeq, sc.ackedAt = res.Seq, now.UnixNano()
	sc.mu.Unlock()
	s.checkResumed(sc, now.UnixNano())
}

// checkResumed marks sc resumed once it is back and has received
// everything up to its own message sent after coming back.
func (s *stormShard) checkResumed(sc *stormClient, now int64) {
	sc.mu.Lock()
	done := sc.upAt != 0 && sc.backSeq != 0 && sc.resumedAt == 0 && sc.tr != nil && sc.tr.Contig() >= sc.backSeq
	if done {
		sc.resumedAt = now
	}
	sc.mu.Unlock()
	if done {
		s.env.ctr.resumed.Add(1)
	}
}

// arm starts watching for the outage: from now on a lost connection is
// the outage's doing. It runs before the shard reports it is running, so
// that the coordinator triggers the outage only once every shard watches.
func (s *stormShard) arm() { s.armed.Store(true) }

// run waits for the coordinator, which watches the counters until every
// client that lost its connection has resumed.
func (s *stormShard) run(ctx context.Context, stop <-chan struct{}) error {
	select {
	case <-stop:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopSends keeps clients that come back from now on from sending, so
// that the sends in flight can be waited for.
func (s *stormShard) stopSends() {
	s.mu.Lock()
	s.noSends = true
	s.mu.Unlock()
}

func (s *stormShard) quiesce(ctx context.Context) map[string]uint64 {
	s.stopSends()
	done := make(chan struct{})
	go func() {
		s.sends.Wait()
		close(done)
	}()
	t := time.NewTimer(s.env.plan.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.env.note("shard %d: some clients' messages were still unacknowledged after the drain", s.env.shard.Index)
	case <-ctx.Done():
	}
	s.sendCancel()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.acked)
}

func (s *stormShard) finish(ctx context.Context, expect map[string]uint64, origin int64, res *ShardResult) {
	ctx, cancel := context.WithTimeout(ctx, s.env.plan.DrainTimeout)
	defer cancel()
	for _, sc := range s.clients {
		if sc == nil {
			continue
		}
		sc.mu.Lock()
		conv := sc.conv
		sc.mu.Unlock()
		for conv != "" && sc.tracker().Contig() < expect[conv] {
			if !sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) {
				break
			}
		}
	}
	var tally Tally
	for _, sc := range s.clients {
		if sc == nil {
			continue
		}
		sc.mu.Lock()
		conv, tr, up, resumed, acked := sc.conv, sc.tr, sc.upAt, sc.resumedAt, sc.ackedAt
		sc.mu.Unlock()
		if tr != nil {
			exp := expect[conv]
			tally = tally.Add(tr.tally(exp, tr.Missing(exp)))
		}
		if origin > 0 && up > 0 {
			s.env.hists[histReconnect].Record(time.Duration(up - origin))
			res.LastUp = max(res.LastUp, up)
		}
		if origin > 0 && resumed > 0 {
			s.env.hists[histResume].Record(time.Duration(resumed - origin))
			res.LastResumed = max(res.LastResumed, resumed)
		}
		if acked > 0 && resumed > 0 {
			s.env.hists[histCaughtUp].Record(time.Duration(max(resumed-acked, 0)))
		}
	}
	res.Tally = tally
	res.ClientRejected = s.rejected.Load()
	res.Retries = s.retries.snapshot()
}

// close closes every client (the SDK sends a normal close) in parallel,
// within the teardown bound, and waits for the event consumers.
func (s *stormShard) close() {
	s.stopSends()
	if s.sendCancel != nil {
		s.sendCancel()
	}
	s.sends.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	forEach(ctx, len(s.clients), 64, func(k int) {
		if sc := s.clients[k]; sc != nil {
			_ = sc.c.Close()
		}
	})
	s.consumers.Wait()
}

// dialLog is the SDK clients' logger: it keeps nothing but counts the
// upgrades refused with HTTP 503, which the SDK reports only in its debug
// log of failed dials (the server's counter restarts with the server, so
// the clients' view is the one that covers a restart), and the clients'
// retries by cause, which say what made the slowest ones slow.
type dialLog struct {
	rejected *atomic.Int64
	retries  *errorCounts
}

func (h dialLog) Enabled(context.Context, slog.Level) bool { return true }

func (h dialLog) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "floodgate: dial failed":
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" && strings.Contains(a.Value.String(), "HTTP 503") {
				h.rejected.Add(1)
				return false
			}
			return true
		})
	case "floodgate: reconnecting":
		var (
			why  string
			code int64
			err  error
		)
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "why":
				why = a.Value.String()
			case "code":
				if a.Value.Kind() == slog.KindInt64 {
					code = a.Value.Int64()
				}
			case "err":
				err, _ = a.Value.Any().(error)
			}
			return true
		})
		h.retries.add(retryCause(why, int(code), err))
	}
	return nil
}

// retryCause names an SDK retry by its reason and, for a failed
// connection, how it failed (classify), or for a close, its code (which
// the server chose from a small set): a small set of names.
func retryCause(why string, code int, err error) string {
	switch {
	case strings.HasPrefix(why, "close ") && code != 0:
		return fmt.Sprintf("%s %d", why, code)
	case why != "connection failed" || err == nil:
		return why
	}
	return why + ": " + classify(err)
}

func (h dialLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h dialLog) WithGroup(string) slog.Handler      { return h }

// storm drives the outage from the coordinator: it runs the kill and
// restart commands (or the test's Outage hook), or asks the operator to
// restart the server; waits for a client to lose its connection; then
// waits for every client that did to be back and resumed. All of it
// within --duration.
func (r *runner) storm(ctx context.Context) error {
	p := &r.plan
	end := r.rep.PhaseStart.Add(p.Duration)
	octx, ocancel := context.WithDeadline(ctx, end)
	defer ocancel()
	outage := make(chan error, 1)
	switch {
	case r.cfg.Outage != nil:
		go func() { outage <- r.cfg.Outage(octx) }()
	case r.cfg.KillCmd != "" || r.cfg.RestartCmd != "":
		go func() { outage <- r.runCommands(octx) }()
	default:
		c, _ := r.totals()
		r.warn("storm: %d clients connected: restart the server now (waiting up to %s)", c.Open, p.Duration)
		outage <- nil
	}
	outageDone := false
	// The outage goroutine ends with octx at the latest.
	defer func() {
		ocancel()
		if !outageDone {
			<-outage
		}
	}()
	r.setPhase("outage")
	for {
		if _, down := r.totals(); down != 0 {
			break
		}
		if !outageDone {
			select {
			case err := <-outage:
				outageDone = true
				if err != nil {
					return fmt.Errorf("storm: outage: %w", err)
				}
			default:
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("storm: no client lost its connection within %s", p.Duration)
		}
		if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			return ctx.Err()
		}
	}
	r.setPhase("recovery")
	for {
		if !outageDone {
			select {
			case err := <-outage:
				outageDone = true
				if err != nil {
					return fmt.Errorf("storm: outage: %w", err)
				}
			default:
			}
		}
		c, _ := r.totals()
		if outageDone && c.Open >= c.Target-c.Failed && c.Resumed >= c.Dropped {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("storm: after %s, %d of %d clients were connected and %d of the %d that lost their connection had resumed",
				p.Duration, c.Open, c.Target-c.Failed, c.Resumed, c.Dropped)
		}
		if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// runCommands runs --kill-cmd then --restart-cmd with sh. Their output goes
// to the bench's stderr when that is a file, else nowhere: a command that
// leaves a server running in the background must not hold a pipe the bench
// would wait on.
func (r *runner) runCommands(ctx context.Context) error {
	for _, c := range []struct{ name, cmd string }{{"--kill-cmd", r.cfg.KillCmd}, {"--restart-cmd", r.cfg.RestartCmd}} {
		if c.cmd == "" {
			continue
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", c.cmd)
		if f, ok := r.cfg.Stderr.(*os.File); ok {
			cmd.Stdout, cmd.Stderr = f, f
		}
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %q: %w", c.name, c.cmd, err)
		}
	}
	return nil
}
