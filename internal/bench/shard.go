package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Commands from the coordinator to a shard, in the order they come.
const (
	cmdGo     = "go"     // start the measured phase
	cmdStop   = "stop"   // end it: stop sending, report what was acknowledged
	cmdExpect = "expect" // the run's acknowledged seqs: account and report
	cmdAbort  = "abort"  // give up: report what there is and stop
)

// Phases a shard reports.
const (
	phaseReady    = "ready"    // set up: every client connected and prepared
	phaseRunning  = "running"  // the measured phase has begun
	phaseQuiesced = "quiesced" // the measured phase is over and no send is in flight
)

// toWorker is one message from the coordinator to a shard. Over a pipe it
// is one JSON line; the first carries the shard.
type toWorker struct {
	Shard *Shard `json:"shard,omitempty"`
	Cmd   string `json:"cmd,omitempty"`
	// Expect (with cmdExpect) maps each conversation to the last seq any
	// sender got acknowledged, over all shards.
	Expect map[string]uint64 `json:"expect,omitempty"`
	// Origin (storm, with cmdExpect) is when the outage began, Unix ns:
	// reconnection times are measured from it.
	Origin int64 `json:"origin,omitempty"`
}

// fromWorker is one message from a shard to the coordinator.
type fromWorker struct {
	Progress *Counters `json:"progress,omitempty"`
	// FirstDown (storm) is when this shard first saw a client lose its
	// connection after the outage was armed, Unix ns; 0 if none yet.
	FirstDown int64  `json:"first_down,omitempty"`
	Phase     string `json:"phase,omitempty"`
	// Acked (with phaseQuiesced) is this shard's last acknowledged seq
	// per conversation.
	Acked map[string]uint64 `json:"acked,omitempty"`
	// CPU is the shard process's CPU seconds so far (with phases and the
	// result), so that the coordinator can tell the tool's cost during the
	// measured phase.
	CPU    float64      `json:"cpu,omitempty"`
	Result *ShardResult `json:"result,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// ShardResult is everything a shard measured.
type ShardResult struct {
	Counters Counters            `json:"counters"`
	Errors   map[string]int64    `json:"errors,omitempty"`
	Hists    map[string]HistData `json:"hists,omitempty"`
	Tally    Tally               `json:"tally"`
	Waves    []Wave              `json:"waves,omitempty"`
	// SetupStart and SetupEnd (Unix ns) bracket the opening of the
	// shard's connections, for the run's connection rate.
	SetupStart int64 `json:"setup_start"`
	SetupEnd   int64 `json:"setup_end"`
	// Storm: the latest reconnection and resumption, Unix ns.
	LastUp      int64 `json:"last_up,omitempty"`
	LastResumed int64 `json:"last_resumed,omitempty"`
	// ClientRejected (storm) counts upgrades refused with HTTP 503, as the
	// SDK clients saw them.
	ClientRejected int64 `json:"client_rejected,omitempty"`
	// Retries (storm) counts the SDK clients' retries by cause.
	Retries map[string]int64 `json:"retries,omitempty"`
	CPU     float64          `json:"cpu"`
	MaxRSS  int64            `json:"max_rss_bytes"`
	Notes   []string         `json:"notes,omitempty"`
}

// Wave is one round of connections of the connect scenario.
type Wave struct {
	Name      string   `json:"name"`
	Conns     int64    `json:"conns"`
	Failed    int64    `json:"failed"`
	StartNS   int64    `json:"start_ns"`
	EndNS     int64    `json:"end_ns"`
	TLSFull   int64    `json:"tls_full"`
	TLSResume int64    `json:"tls_resumed"`
	Synced    int64    `json:"synced_messages,omitempty"`
	Handshake HistData `json:"handshake"`
}

// mergeWaves merges the same wave of several shards: the wave lasts from
// the first start to the last end.
func mergeWaves(a, b []Wave) []Wave {
	for i, w := range b {
		if i >= len(a) {
			a = append(a, w)
			continue
		}
		m := &a[i]
		m.Conns += w.Conns
		m.Failed += w.Failed
		m.TLSFull += w.TLSFull
		m.TLSResume += w.TLSResume
		m.Synced += w.Synced
		m.StartNS = minNonZero(m.StartNS, w.StartNS)
		m.EndNS = max(m.EndNS, w.EndNS)
		m.Handshake = m.Handshake.Merge(w.Handshake)
	}
	return a
}

func minNonZero(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// scenarioShard is one scenario's part in one process.
type scenarioShard interface {
	// setup connects the shard's clients and prepares them.
	setup(ctx context.Context) error
	// run is the measured phase: it returns when stop is closed, or by
	// itself when the scenario's work is done (connect).
	run(ctx context.Context, stop <-chan struct{}) error
	// quiesce waits for in-flight sends and returns the last acknowledged
	// seq of each conversation.
	quiesce(ctx context.Context) map[string]uint64
	// finish accounts deliveries against the run's acknowledged seqs and
	// fills the scenario's part of the result.
	finish(ctx context.Context, expect map[string]uint64, origin int64, res *ShardResult)
	// close ends every connection, within a bounded time.
	close()
}

// errAborted is why a shard stops when the coordinator gives up (on
// another shard's failure, or an interrupt): not a failure of its own.
var errAborted = errors.New("aborted by the coordinator")

// teardownTimeout bounds closing a shard's connections.
const teardownTimeout = 30 * time.Second

// progressEvery is how often shards report their counters: more often
// than the live line refreshes, so that each refresh has news.
const progressEvery = 250 * time.Millisecond

// shardEnv is what every scenario of a shard shares.
type shardEnv struct {
	shard *Shard
	plan  *Plan
	ctr   liveCounters
	errs  errorCounts
	hists map[string]*Histogram // fixed at creation, so reading the map needs no lock
	dial  *dialer
	// firstDown (storm) is when a client first lost its connection after
	// the outage was armed, Unix ns.
	firstDown atomic.Int64
	// connStart and connEnd bracket the opening of the connections (Unix
	// ns), without the scenario's preparations, for the connection rate.
	connStart, connEnd atomic.Int64

	notesMu sync.Mutex
	notes   []string
}

// Histogram names.
const (
	histTCP       = "tcp"
	histUpgrade   = "upgrade"
	histAuth      = "auth"
	histHandshake = "handshake"
	histAck       = "ack"
	histDeliver   = "deliver"
	histReconnect = "reconnect" // storm: outage start to reconnected
	histResume    = "resume"    // storm: outage start to resumed
	histDowntime  = "downtime"  // storm: a client's own disconnection to its reconnection
	histCaughtUp  = "caught-up" // storm: the ack of a client's message sent once back to its having every message up to it
)

func newShardEnv(s *Shard) *shardEnv {
	env := &shardEnv{shard: s, plan: &s.Plan, hists: make(map[string]*Histogram)}
	for _, n := range []string{histTCP, histUpgrade, histAuth, histHandshake, histAck, histDeliver, histReconnect, histResume, histDowntime, histCaughtUp} {
		env.hists[n] = NewHistogram()
	}
	env.dial = newDialer(env.plan, &env.errs)
	env.ctr.target.Store(int64(s.ConnCount()))
	return env
}

// note records a warning for the report.
func (e *shardEnv) note(format string, args ...any) {
	e.notesMu.Lock()
	defer e.notesMu.Unlock()
	if len(e.notes) < 20 {
		e.notes = append(e.notes, fmt.Sprintf(format, args...))
	}
}

// recordTiming adds a connection's timing to the histograms.
func (e *shardEnv) recordTiming(tm timing) {
	e.hists[histTCP].Record(tm.TCP)
	e.hists[histUpgrade].Record(tm.Upgrade)
	e.hists[histAuth].Record(tm.Auth)
	e.hists[histHandshake].Record(tm.Total)
}

// newScenario returns the scenario's shard.
func newScenario(env *shardEnv) (scenarioShard, error) {
	switch env.plan.Scenario {
	case ScenarioIdle:
		return &idleShard{env: env}, nil
	case ScenarioConnect:
		return &connectShard{env: env}, nil
	case ScenarioDirect:
		return newDirectShard(env), nil
	case ScenarioRoom:
		return newRoomShard(env), nil
	case ScenarioGroup:
		return newGroupShard(env), nil
	case ScenarioStorm:
		return &stormShard{env: env}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q", env.plan.Scenario)
}

// serveShard runs one shard from setup to result: the same code whether
// the shard runs in the coordinator's process or in a child. cmds delivers
// the coordinator's commands and is closed if the coordinator goes away;
// out sends to the coordinator and must not block for long.
func serveShard(ctx context.Context, s *Shard, cmds <-chan toWorker, out func(fromWorker)) {
	// Whatever the coordinator does, the shard stops at the run's deadline.
	ctx, cancelDeadline := context.WithDeadline(ctx, s.Deadline)
	defer cancelDeadline()
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(errAborted) }
	defer cancel()
	env := newShardEnv(s)
	defer env.dial.close()
	sc, err := newScenario(env)
	if err != nil {
		out(fromWorker{Error: err.Error()})
		return
	}

	// The commands are read on their own goroutine so that any phase can
	// be interrupted by an abort (or the coordinator's disappearance).
	goCh, stopCh, expectCh := make(chan struct{}), make(chan struct{}), make(chan toWorker, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var goOnce, stopOnce sync.Once
		for {
			select {
			case m, ok := <-cmds:
				if !ok || m.Cmd == cmdAbort {
					cancel()
					return
				}
				switch m.Cmd {
				case cmdGo:
					goOnce.Do(func() { close(goCh) })
				case cmdStop:
					goOnce.Do(func() { close(goCh) })
					stopOnce.Do(func() { close(stopCh) })
				case cmdExpect:
					select {
					case expectCh <- m:
					default:
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	// Progress, until the shard is done.
	progDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c := env.ctr.snapshot()
				out(fromWorker{Progress: &c, FirstDown: env.firstDown.Load()})
			case <-progDone:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		close(progDone)
		cancel()
		wg.Wait()
	}()
	defer sc.close()

	res := &ShardResult{SetupStart: time.Now().UnixNano()}
	fail := func(err error) {
		if ctx.Err() != nil {
			err = context.Cause(ctx) // the abort, or the deadline, explains the rest
		}
		out(fromWorker{Error: err.Error(), Result: env.result(res)})
	}
	if err := sc.setup(ctx); err != nil {
		fail(fmt.Errorf("setup: %w", err))
		return
	}
	res.SetupEnd = time.Now().UnixNano()
	if env.connStart.Load() != 0 {
		res.SetupStart, res.SetupEnd = env.connStart.Load(), env.connEnd.Load()
	}
	out(fromWorker{Phase: phaseReady, CPU: selfCPU()})
	select {
	case <-goCh:
	case <-ctx.Done():
		fail(ctx.Err())
		return
	}
	if a, ok := sc.(interface{ arm() }); ok {
		a.arm()
	}
	atRun := env.ctr.snapshot()
	out(fromWorker{Phase: phaseRunning, Progress: &atRun})
	if err := sc.run(ctx, stopCh); err != nil {
		fail(fmt.Errorf("run: %w", err))
		return
	}
	acked := sc.quiesce(ctx)
	out(fromWorker{Phase: phaseQuiesced, Acked: acked, CPU: selfCPU(), FirstDown: env.firstDown.Load()})
	var exp toWorker
	select {
	case exp = <-expectCh:
	case <-ctx.Done():
		fail(errors.New("no expectations from the coordinator before the deadline"))
		return
	}
	sc.finish(ctx, exp.Expect, exp.Origin, res)
	out(fromWorker{Result: env.result(res)})
}

// result completes res with what every scenario shares.
func (e *shardEnv) result(res *ShardResult) *ShardResult {
	res.Counters = e.ctr.snapshot()
	res.Errors = e.errs.snapshot()
	res.Hists = make(map[string]HistData)
	for n, h := range e.hists {
		if d := h.Snapshot(); d.Count > 0 {
			res.Hists[n] = d
		}
	}
	e.notesMu.Lock()
	res.Notes = append(res.Notes, e.notes...)
	e.notesMu.Unlock()
	res.CPU = selfCPU()
	res.MaxRSS = selfMaxRSS()
	return res
}
