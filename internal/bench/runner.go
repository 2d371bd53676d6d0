package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrPlan marks an error in what the user asked for (a usage error, as
// opposed to a failed run).
var ErrPlan = errors.New("invalid bench")

// Config is one bench run: the plan and everything around it.
type Config struct {
	Plan Plan

	// AdminURL and AdminToken create a throwaway app when Plan.App is
	// empty.
	AdminURL, AdminToken string

	// OpsURLs are the servers' ops listeners (one per server), read for
	// RSS, goroutines, CPU and connections. PID, when set, is read from
	// /proc as well (or instead, without OpsURLs).
	OpsURLs []string
	PID     int
	// ForceGC makes the idle scenario collect the server's garbage (through
	// the ops listener's heap profile) before its baseline and before every
	// poll of the RSS while it settles.
	ForceGC bool

	// KillCmd and RestartCmd (storm) are shell commands the bench runs,
	// in that order, once every client is connected. Without them it
	// waits for the operator to restart the server.
	KillCmd, RestartCmd string
	// Outage, when set, replaces KillCmd and RestartCmd: the in-process
	// tests restart their server with it.
	Outage func(ctx context.Context) error

	// JSONPath, when set, receives the report as JSON.
	JSONPath string
	// Command is the command line, echoed at the top of the report.
	Command string
	// Stdout gets the report (and the live line when it is a terminal);
	// Stderr gets warnings and the children's diagnostics.
	Stdout, Stderr io.Writer

	// Spawn returns the command of a worker child for --procs > 1 (the
	// bench re-executes its own binary as `floodgate bench --bench-child`
	// by default). Tests start their own binary in worker mode.
	Spawn func(ctx context.Context) (*exec.Cmd, error)
	// InProcessShards runs the shards on goroutines of this process,
	// speaking the same JSON lines over in-memory pipes as children do
	// over theirs (tests).
	InProcessShards bool
}

// sampleEvery is how often servers are read during the measured phase.
const sampleEvery = time.Second

// runner is the coordinator of one run.
type runner struct {
	cfg        Config
	plan       Plan
	links      []link
	stopShards context.CancelFunc // ends the shards' lifetime
	mon        *monitor
	rep        *Report

	mu      sync.Mutex
	states  []shardState
	phase   string
	since   time.Time
	history []progressPoint // the live line's recent totals, for its rates
}

// shardState is what the coordinator knows of one shard.
type shardState struct {
	progress  Counters
	atRunning Counters // exact, reported as the measured phase began
	firstDown int64
	phases    map[string]float64 // phase → CPU seconds reported with it
	acked     map[string]uint64
	result    *ShardResult
	err       string
	ended     bool
	procCPU   float64
	exitErr   error
}

// Run runs a bench and returns its report, which it also prints to
// cfg.Stdout (and writes to cfg.JSONPath). The error is nil only when the
// run completed with no loss and no duplicate.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r := &runner{cfg: cfg, plan: cfg.Plan}
	if r.cfg.Stdout == nil {
		r.cfg.Stdout = io.Discard
	}
	if r.cfg.Stderr == nil {
		r.cfg.Stderr = io.Discard
	}
	rep, err := r.run(ctx)
	if rep == nil {
		return nil, err
	}
	if werr := rep.WriteTable(r.cfg.Stdout); werr != nil && err == nil {
		err = werr
	}
	if r.cfg.JSONPath != "" {
		if jerr := writeJSON(r.cfg.JSONPath, rep); jerr != nil && err == nil {
			err = jerr
		}
	}
	return rep, err
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func (r *runner) warn(format string, args ...any) {
	fmt.Fprintf(r.cfg.Stderr, "floodgate bench: "+format+"\n", args...)
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	p := &r.plan
	p.Defaults()
	if p.UserPrefix == "" {
		p.UserPrefix = randomPrefix()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The admin API shares the gateway's certificate: --tls-insecure
	// covers it too.
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: p.TLSInsecure, MinVersion: tls.VersionTLS12}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: tr}
	defer hc.CloseIdleConnections()
	if p.App == "" {
		if r.cfg.AdminURL == "" || r.cfg.AdminToken == "" {
			return nil, fmt.Errorf("%w: no app: set --app and --secret, or --admin-url and --admin-token to create one", ErrPlan)
		}
		id, secret, err := createApp(ctx, hc, r.cfg.AdminURL, r.cfg.AdminToken, "bench-"+strings.TrimSuffix(p.UserPrefix, "-"))
		if err != nil {
			return nil, err
		}
		p.App, p.Secret = id, secret
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPlan, err)
	}
	started := time.Now()
	cpu0 := selfCPU()
	// Everything below stops by the deadline, whatever happens: the
	// children enforce it on themselves too.
	p.Deadline = started.Add(p.SetupTimeout + p.Duration + 3*p.DrainTimeout + teardownTimeout + time.Minute)
	// An interrupt (ctx) ends the waiting, not the bookkeeping: after
	// one, the servers are still read and the shards still report, within
	// the deadline (wctx).
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), p.Deadline.Add(childGrace))
	defer cancel()
	ctx, cancelI := context.WithDeadline(ctx, p.Deadline.Add(childGrace))
	defer cancelI()

	r.rep = newReport(r.cfg, *p, started)
	pctx, pcancel := context.WithTimeout(ctx, attemptTimeout*3)
	err := preflight(pctx, p)
	pcancel()
	if err != nil {
		return nil, err
	}
	r.warnRates()

	var probes []*probe
	for i, u := range r.cfg.OpsURLs {
		pid := 0
		if i == 0 && len(r.cfg.OpsURLs) == 1 {
			pid = r.cfg.PID
		}
		probes = append(probes, newProbe(u, pid, hc))
	}
	if r.cfg.PID > 0 && len(r.cfg.OpsURLs) != 1 {
		probes = append(probes, newProbe("", r.cfg.PID, hc))
	}
	r.mon = newMonitor(probes)
	if r.cfg.ForceGC && p.Scenario == ScenarioIdle {
		r.forceGC(ctx)
	}
	for i, x := range r.mon.mark(ctx, func(s *ServerSeries) *ServerSample { return &s.Base }) {
		if !x.ok() {
			r.warn("cannot read server %s: %s (its figures will be missing)", probes[i].Name, x.Err)
		}
	}

	fail := r.execute(ctx, wctx)
	r.mon.stopAndWait()
	r.finishLinks()
	if r.stopShards != nil {
		r.stopShards()
	}

	r.rep.fill(r.collect(), r.mon.snapshot(), selfCPU()-cpu0, time.Since(started))
	if fail != nil {
		r.rep.fail(fail.Error())
	}
	r.rep.judge()
	if !r.rep.OK {
		return r.rep, fmt.Errorf("bench %s failed: %s", p.Scenario, strings.Join(r.rep.Failures, "; "))
	}
	return r.rep, nil
}

// warnRates warns when the plan asks one connection to send faster than
// the server's per-connection rate limit allows.
func (r *runner) warnRates() {
	p := &r.plan
	per := 0.0
	switch p.Scenario {
	case ScenarioDirect:
		per = p.Rate / float64(2*p.Pairs)
	case ScenarioRoom:
		per = p.Rate / float64(p.Senders)
	case ScenarioGroup:
		per = p.Rate / float64(p.Groups*p.Members)
	}
	if p.RateLimit > 0 && per > 0.9*p.RateLimit {
		msg := fmt.Sprintf("each sender sends %.0f msg/s, over 90%% of the server's limit of %.0f requests/s per connection: expect rate_limited refusals", per, p.RateLimit)
		if p.Scenario == ScenarioRoom {
			msg += " (add --senders)"
		}
		r.warn("%s", msg)
		r.rep.note("%s", msg)
	}
}

func (r *runner) forceGC(ctx context.Context) {
	for _, pr := range r.mon.probes {
		if pr.ops == "" {
			continue
		}
		if err := pr.forceGC(ctx); err != nil {
			r.warn("forcing a GC on %s: %v", pr.Name, err)
		}
	}
}

// setPhase names what the live line shows.
func (r *runner) setPhase(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase, r.since = name, time.Now()
}

// execute starts the shards and drives them through the scenario; the
// error says why the run could not complete. ctx ends on an interrupt,
// wctx only at the deadline: waits use the first, the bookkeeping that
// must survive an interrupt (reading the servers, the shards' lives) the
// second.
func (r *runner) execute(ctx, wctx context.Context) error {
	p := &r.plan
	shards := p.Split(p.Procs)
	r.states = make([]shardState, len(shards))
	for i := range r.states {
		r.states[i].phases = make(map[string]float64)
	}
	// The shards live until the deadline, not until an interrupt: on
	// Ctrl-C they are told to abort, and report what they have.
	life, cancelLife := context.WithCancel(wctx)
	r.stopShards = cancelLife
	if err := r.startLinks(life, shards); err != nil {
		r.mu.Lock()
		for i := len(r.links); i < len(r.states); i++ {
			r.states[i].ended, r.states[i].err = true, "not started"
		}
		r.mu.Unlock()
		r.broadcast(toWorker{Cmd: cmdAbort})
		return err
	}
	r.setPhase("setup")
	prog := startProgress(r.cfg.Stdout, isTerminal(r.cfg.Stdout), r.progressLine, nil)
	defer prog.Stop()

	abort := func(err error) error {
		r.broadcast(toWorker{Cmd: cmdAbort})
		return err
	}
	if err := r.waitPhase(ctx, phaseReady, p.SetupTimeout+10*time.Second); err != nil {
		return abort(fmt.Errorf("setup: %w", err))
	}
	r.rep.SetupEnd = time.Now()
	if p.Scenario != ScenarioIdle {
		r.mon.mark(wctx, func(s *ServerSeries) *ServerSample { return &s.Loaded })
	}
	r.mon.mark(wctx, func(s *ServerSeries) *ServerSample { return &s.Start })
	r.rep.PhaseStart = time.Now()
	cpuStart := selfCPU()
	every := sampleEvery
	if p.Scenario == ScenarioStorm {
		every = 250 * time.Millisecond // peaks of a storm are short
	}
	r.mon.start(wctx, every)
	r.broadcast(toWorker{Cmd: cmdGo})
	if err := r.waitPhase(ctx, phaseRunning, 30*time.Second); err != nil {
		return abort(fmt.Errorf("start: %w", err))
	}

	var middle error
	switch p.Scenario {
	case ScenarioIdle:
		r.setPhase("hold")
		r.settle(ctx)
	case ScenarioConnect:
		r.setPhase("reconnect")
		// The second wave ends by itself; the first was the setup.
		middle = r.waitPhase(ctx, phaseQuiesced, p.SetupTimeout+10*time.Second)
	case ScenarioStorm:
		middle = r.storm(ctx)
	default:
		r.setPhase("run")
		sleepUntil(ctx, r.rep.PhaseStart.Add(p.Duration))
	}
	r.mon.stopAndWait()
	r.mon.mark(wctx, func(s *ServerSeries) *ServerSample { return &s.End })
	r.rep.PhaseEnd = time.Now()
	r.rep.phaseCPUSelf = selfCPU() - cpuStart
	if middle != nil {
		return abort(middle)
	}
	if ctx.Err() != nil {
		return abort(errors.New("interrupted"))
	}

	r.setPhase("drain")
	r.broadcast(toWorker{Cmd: cmdStop})
	if err := r.waitPhase(ctx, phaseQuiesced, p.DrainTimeout+30*time.Second); err != nil {
		return abort(fmt.Errorf("drain: %w", err))
	}
	expect := make(map[string]uint64)
	var origin int64
	r.mu.Lock()
	for _, st := range r.states {
		for conv, seq := range st.acked {
			expect[conv] = max(expect[conv], seq)
		}
		origin = minNonZero(origin, st.firstDown)
	}
	r.mu.Unlock()
	r.rep.origin = origin
	r.broadcast(toWorker{Cmd: cmdExpect, Expect: expect, Origin: origin})
	if err := r.waitResults(ctx, 2*p.DrainTimeout+30*time.Second); err != nil {
		return abort(fmt.Errorf("results: %w", err))
	}
	return nil
}

// startLinks starts one shard per process (or in this process).
func (r *runner) startLinks(ctx context.Context, shards []Shard) error {
	for i, s := range shards {
		var l link
		switch {
		case r.cfg.InProcessShards:
			wl, err := startPiped(ctx, s, r.cfg.Stderr)
			if err != nil {
				return err
			}
			l = wl
		case len(shards) == 1:
			l = startInProc(ctx, s)
		default:
			cmd, err := r.spawn(ctx)
			if err != nil {
				return err
			}
			wl, err := startProc(cmd, s, r.cfg.Stderr)
			if err != nil {
				return err
			}
			wl.child = true
			l = wl
		}
		r.links = append(r.links, l)
		go r.listen(i, l)
	}
	return nil
}

// spawn returns a worker child's command.
func (r *runner) spawn(ctx context.Context) (*exec.Cmd, error) {
	if r.cfg.Spawn != nil {
		return r.cfg.Spawn(ctx)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to run workers: %w", err)
	}
	return exec.CommandContext(ctx, exe, "bench", ChildArg), nil
}

// listen folds shard i's messages into its state until the shard ends.
func (r *runner) listen(i int, l link) {
	for m := range l.recv() {
		r.mu.Lock()
		st := &r.states[i]
		if m.Progress != nil {
			st.progress = *m.Progress
		}
		if m.FirstDown != 0 {
			st.firstDown = m.FirstDown
		}
		if m.Phase != "" {
			st.phases[m.Phase] = m.CPU
			if m.Phase == phaseRunning && m.Progress != nil {
				st.atRunning = *m.Progress
			}
		}
		if m.Acked != nil {
			st.acked = m.Acked
		}
		if m.Result != nil {
			st.result = m.Result
			st.progress = m.Result.Counters
		}
		if m.Error != "" && st.err == "" {
			st.err = m.Error
		}
		r.mu.Unlock()
	}
	cpu, err := l.wait()
	r.mu.Lock()
	st := &r.states[i]
	st.ended, st.procCPU, st.exitErr = true, cpu, err
	r.mu.Unlock()
}

// broadcast sends a command to every shard still running.
func (r *runner) broadcast(m toWorker) {
	for i, l := range r.links {
		r.mu.Lock()
		ended := r.states[i].ended
		r.mu.Unlock()
		if !ended {
			_ = l.send(m)
		}
	}
}

// waitFor polls until cond holds for the shards' states, or fails after
// timeout, when a shard fails or ends early, or when ctx ends.
func (r *runner) waitFor(ctx context.Context, what string, timeout time.Duration, cond func(st *shardState) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		all := true
		var failed string
		for i := range r.states {
			st := &r.states[i]
			if st.err != "" {
				failed = fmt.Sprintf("shard %d: %s", i, st.err)
				break
			}
			if !cond(st) {
				if st.ended {
					failed = fmt.Sprintf("shard %d ended before %s (%v)", i, what, st.exitErr)
					break
				}
				all = false
			}
		}
		r.mu.Unlock()
		switch {
		case failed != "":
			return errors.New(failed)
		case all:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		case !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)):
			return fmt.Errorf("interrupted while waiting for %s", what)
		}
	}
}

func (r *runner) waitPhase(ctx context.Context, phase string, timeout time.Duration) error {
	return r.waitFor(ctx, "every shard "+phase, timeout, func(st *shardState) bool {
		_, ok := st.phases[phase]
		return ok
	})
}

func (r *runner) waitResults(ctx context.Context, timeout time.Duration) error {
	return r.waitFor(ctx, "every shard's result", timeout, func(st *shardState) bool { return st.result != nil })
}

// finishLinks waits for every shard to end (they close their connections
// after their result), killing those that overstay.
func (r *runner) finishLinks() {
	deadline := time.Now().Add(teardownTimeout + 10*time.Second)
	killed := false
	for {
		r.mu.Lock()
		all := true
		for _, st := range r.states {
			all = all && st.ended
		}
		r.mu.Unlock()
		switch {
		case all:
			return
		case time.Now().After(deadline) && killed:
			r.warn("gave up waiting for workers that would not stop")
			return
		case time.Now().After(deadline):
			r.warn("killing workers that did not stop in time")
			for _, l := range r.links {
				l.kill()
			}
			killed, deadline = true, time.Now().Add(10*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// totals sums the shards' live counters.
func (r *runner) totals() (Counters, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var c Counters
	var down int64
	for _, st := range r.states {
		c = c.Add(st.progress)
		down = minNonZero(down, st.firstDown)
	}
	return c, down
}

// collected is what the shards reported, merged.
type collected struct {
	res      ShardResult
	start    Counters // at the start of the measured phase
	shards   int
	results  int
	errors   []string
	toolCPU  float64 // children's CPU, for a run with worker processes
	phaseCPU float64 // children's CPU during the measured phase
	children bool
	maxRSS   int64 // the tool's processes' peak RSS, summed
}

// collect merges the shards' results: counters and error counts add up,
// histograms merge bucket by bucket, waves and tallies add up.
func (r *runner) collect() collected {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := collected{shards: len(r.states), res: ShardResult{Hists: map[string]HistData{}}}
	if len(r.links) > 0 {
		if wl, ok := r.links[0].(*wireLink); ok {
			c.children = wl.child
		}
	}
	for i, st := range r.states {
		c.start = c.start.Add(st.atRunning)
		if st.err != "" && st.err != errAborted.Error() {
			c.errors = append(c.errors, fmt.Sprintf("shard %d: %s", i, st.err))
		}
		c.toolCPU += st.procCPU
		if a, ok := st.phases[phaseReady]; ok && c.children {
			// An aborted shard never quiesced: its result's CPU is the
			// nearest reading.
			if b, ok := st.phases[phaseQuiesced]; ok {
				c.phaseCPU += b - a
			} else if st.result != nil {
				c.phaseCPU += st.result.CPU - a
			}
		}
		res := st.result
		if res == nil {
			c.res.Counters = c.res.Counters.Add(st.progress)
			continue
		}
		c.results++
		c.res.Counters = c.res.Counters.Add(res.Counters)
		c.res.Errors = mergeCounts(c.res.Errors, res.Errors)
		for n, h := range res.Hists {
			if err := h.Validate(); err != nil {
				c.errors = append(c.errors, fmt.Sprintf("shard %d: %s: %v", i, n, err))
				continue
			}
			c.res.Hists[n] = c.res.Hists[n].Merge(h)
		}
		c.res.Tally = c.res.Tally.Add(res.Tally)
		c.res.Waves = mergeWaves(c.res.Waves, res.Waves)
		c.res.SetupStart = minNonZero(c.res.SetupStart, res.SetupStart)
		c.res.SetupEnd = max(c.res.SetupEnd, res.SetupEnd)
		c.res.LastUp = max(c.res.LastUp, res.LastUp)
		c.res.LastResumed = max(c.res.LastResumed, res.LastResumed)
		c.res.ClientRejected += res.ClientRejected
		c.res.Retries = mergeCounts(c.res.Retries, res.Retries)
		if c.children {
			c.maxRSS += res.MaxRSS
		}
		c.res.Notes = append(c.res.Notes, res.Notes...)
	}
	if !c.children {
		c.maxRSS = selfMaxRSS()
	}
	sort.Strings(c.res.Notes)
	return c
}
