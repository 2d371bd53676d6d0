package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is everything a run measured: what the table shows and more. It
// is what --json writes.
type Report struct {
	Scenario string    `json:"scenario"`
	Command  string    `json:"command"`
	OK       bool      `json:"ok"`
	Failures []string  `json:"failures,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	Started  time.Time `json:"started"`
	// Plan is the run's plan, the app secret left out.
	Plan  Plan `json:"plan"`
	Procs int  `json:"procs"`

	SetupEnd     time.Time `json:"setup_end"`
	PhaseStart   time.Time `json:"phase_start"`
	PhaseEnd     time.Time `json:"phase_end"`
	SetupSeconds float64   `json:"setup_seconds"`
	PhaseSeconds float64   `json:"phase_seconds"`
	TotalSeconds float64   `json:"total_seconds"`

	// Counters are the run's totals; Errors counts failures by kind.
	Counters Counters         `json:"counters"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	// ConnectsPerSecond is the rate at which the setup opened connections.
	ConnectsPerSecond float64 `json:"connects_per_second"`
	// Rates during the measured phase.
	SentPerSecond      float64 `json:"sent_per_second"`
	AckedPerSecond     float64 `json:"acked_per_second"`
	DeliveredPerSecond float64 `json:"delivered_per_second"`

	// Latency summarises each histogram (see Hists for the buckets):
	// tcp, upgrade (TLS + WebSocket), auth, handshake (all of it), ack
	// (send to ack), deliver (send to delivery, every receiving
	// connection), reconnect, resume and downtime (storm).
	Latency map[string]Summary  `json:"latency_ms"`
	Hists   map[string]HistData `json:"histograms"`
	Tally   Tally               `json:"tally"`

	Waves []WaveReport `json:"waves,omitempty"`
	Idle  *IdleReport  `json:"idle,omitempty"`
	Storm *StormReport `json:"storm,omitempty"`

	Servers []ServerSeries `json:"servers,omitempty"`
	// ServerPhaseCPU is the servers' CPU seconds during the measured
	// phase (-1 when unknown, or when a server restarted).
	ServerPhaseCPU float64    `json:"server_phase_cpu_seconds"`
	Tool           ToolReport `json:"tool"`

	// Filled during the run.
	Settled       bool    `json:"-"`
	SettleSeconds float64 `json:"-"`
	phaseCPUSelf  float64
	origin        int64
	startCounters Counters // at the start of the measured phase
}

// WaveReport is a connect wave with its rate and latency summary.
type WaveReport struct {
	Wave
	PerSecond float64 `json:"per_second"`
	Summary   Summary `json:"handshake_ms"`
}

// IdleReport is what the idle scenario is for.
type IdleReport struct {
	Conns   int64 `json:"conns"`
	Settled bool  `json:"settled"`
	// SettleSeconds is how long the RSS took to stop dropping.
	SettleSeconds float64 `json:"settle_seconds"`
	// Per connection: (loaded − base) / conns, summed over the servers;
	// null when unknown.
	RSSPerConn        *float64 `json:"rss_bytes_per_conn"`
	HeapPerConn       *float64 `json:"heap_inuse_bytes_per_conn"`
	GoroutinesPerConn *float64 `json:"goroutines_per_conn"`
}

// StormReport is what the storm scenario is for.
type StormReport struct {
	Clients     int64     `json:"clients"`
	Lost        int64     `json:"lost_connection"`
	Reconnected int64     `json:"reconnected"`
	Resumed     int64     `json:"resumed"`
	OutageStart time.Time `json:"outage_start"`
	// Seconds from the outage's start until the last client was back, and
	// had resumed; -1 when not all were.
	AllConnectedSeconds float64 `json:"all_connected_seconds"`
	AllResumedSeconds   float64 `json:"all_resumed_seconds"`
	// Upgrades refused with HTTP 503: as the servers counted them, and as
	// the clients saw them.
	RejectedServer  float64 `json:"rejected_server"`
	RejectedClients int64   `json:"rejected_clients"`
	// Retries counts the clients' retries (over the whole run) by cause:
	// the SDK's reason, and for a failed connection how it failed.
	Retries map[string]int64 `json:"retries,omitempty"`
	// Peaks summed over the servers (-1 when unknown).
	PeakRSS float64 `json:"peak_rss_bytes"`
	PeakFDs float64 `json:"peak_open_fds"`
}

// ToolReport is the load tool's own cost: it shares the machine with the
// server, so its CPU is part of the picture.
type ToolReport struct {
	Procs int `json:"procs"`
	// CPUSeconds over the whole run, every process; PhaseCPUSeconds during
	// the measured phase.
	CPUSeconds      float64 `json:"cpu_seconds"`
	PhaseCPUSeconds float64 `json:"phase_cpu_seconds"`
	// MaxRSSBytes sums the peak RSS of the tool's processes.
	MaxRSSBytes int64 `json:"max_rss_bytes"`
}

func newReport(cfg Config, p Plan, started time.Time) *Report {
	p.Secret = ""
	return &Report{Scenario: p.Scenario, Command: cfg.Command, Started: started, Plan: p, Procs: p.Procs, ServerPhaseCPU: -1}
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *Report) fail(msg string) {
	for _, f := range r.Failures {
		if f == msg {
			return
		}
	}
	r.Failures = append(r.Failures, msg)
}

// fill computes the report from the merged results and the servers'
// series.
func (r *Report) fill(c collected, servers []ServerSeries, selfCPU float64, total time.Duration) {
	res := c.res
	r.TotalSeconds = total.Seconds()
	if !r.SetupEnd.IsZero() {
		r.SetupSeconds = r.SetupEnd.Sub(r.Started).Seconds()
	}
	if !r.PhaseEnd.IsZero() {
		r.PhaseSeconds = r.PhaseEnd.Sub(r.PhaseStart).Seconds()
	}
	r.Counters, r.Errors, r.Tally, r.Hists = res.Counters, res.Errors, res.Tally, res.Hists
	r.Latency = make(map[string]Summary, len(res.Hists))
	for n, h := range res.Hists {
		r.Latency[n] = h.Summarize()
	}
	r.Notes = append(r.Notes, res.Notes...)
	r.Failures = append(r.Failures, c.errors...)
	if c.results < c.shards {
		r.fail(fmt.Sprintf("only %d of %d shards reported a result", c.results, c.shards))
	}
	if d := time.Duration(res.SetupEnd - res.SetupStart); d > 0 {
		r.ConnectsPerSecond = float64(res.Counters.Opened) / d.Seconds()
		if r.Scenario == ScenarioConnect && len(res.Waves) > 0 {
			r.ConnectsPerSecond = float64(res.Waves[0].Conns) / time.Duration(res.Waves[0].EndNS-res.Waves[0].StartNS).Seconds()
		}
	}
	r.startCounters = c.start
	if r.PhaseSeconds > 0 {
		// What was sent during the phase, acknowledged and delivered
		// whenever (the drain included), over the phase's length.
		d := res.Counters
		s := c.start
		r.SentPerSecond = float64(d.Sent-s.Sent) / r.PhaseSeconds
		r.AckedPerSecond = float64(d.Acked-s.Acked) / r.PhaseSeconds
		r.DeliveredPerSecond = float64(d.Delivered-s.Delivered) / r.PhaseSeconds
	}
	for _, w := range res.Waves {
		wr := WaveReport{Wave: w, Summary: w.Handshake.Summarize()}
		if d := time.Duration(w.EndNS - w.StartNS); d > 0 {
			wr.PerSecond = float64(w.Conns) / d.Seconds()
		}
		r.Waves = append(r.Waves, wr)
	}
	r.Servers = servers
	r.ServerPhaseCPU = sumServers(servers, func(s ServerSeries) float64 { return s.cpuBetween(s.Start.At, s.End.At) })
	r.Tool = ToolReport{Procs: c.shards, CPUSeconds: selfCPU + c.toolCPU, PhaseCPUSeconds: r.phaseCPUSelf + c.phaseCPU, MaxRSSBytes: c.maxRSS}
	switch r.Scenario {
	case ScenarioIdle:
		r.fillIdle(servers)
	case ScenarioStorm:
		r.fillStorm(res, servers)
	}
}

// sumServers adds f over the servers; -1 if any is unknown (or none).
func sumServers(servers []ServerSeries, f func(ServerSeries) float64) float64 {
	if len(servers) == 0 {
		return -1
	}
	total := 0.0
	for _, s := range servers {
		v := f(s)
		if v < 0 {
			return -1
		}
		total += v
	}
	return total
}

func (r *Report) fillIdle(servers []ServerSeries) {
	id := &IdleReport{Conns: r.startCounters.Open, Settled: r.Settled, SettleSeconds: r.SettleSeconds}
	r.Idle = id
	if id.Conns <= 0 {
		return
	}
	per := func(field func(ServerSample) float64) *float64 {
		if len(servers) == 0 {
			return nil
		}
		d := 0.0
		for _, s := range servers {
			b, l := field(s.Base), field(s.Loaded)
			if b < 0 || l < 0 {
				return nil
			}
			d += l - b
		}
		v := d / float64(id.Conns)
		return &v
	}
	id.RSSPerConn = per(func(x ServerSample) float64 { return x.RSS })
	id.HeapPerConn = per(func(x ServerSample) float64 { return x.HeapInuse })
	id.GoroutinesPerConn = per(func(x ServerSample) float64 { return x.Goroutines })
	if !id.Settled && len(servers) > 0 {
		r.note("the servers' RSS was still dropping when --duration ended: the per-connection memory is an upper bound")
	}
}

func (r *Report) fillStorm(res ShardResult, servers []ServerSeries) {
	st := &StormReport{Clients: res.Counters.Target, Lost: res.Counters.Dropped, Reconnected: res.Counters.Reconnected,
		Resumed: res.Counters.Resumed, AllConnectedSeconds: -1, AllResumedSeconds: -1, RejectedClients: res.ClientRejected,
		Retries: res.Retries}
	r.Storm = st
	if r.origin > 0 {
		st.OutageStart = time.Unix(0, r.origin)
		if st.Reconnected >= st.Lost && res.LastUp > 0 {
			st.AllConnectedSeconds = time.Duration(res.LastUp - r.origin).Seconds()
		}
		if st.Resumed >= st.Lost && res.LastResumed > 0 {
			st.AllResumedSeconds = time.Duration(res.LastResumed - r.origin).Seconds()
		}
	}
	st.RejectedServer = sumServers(servers, func(s ServerSeries) float64 { return s.RejectedDelta })
	st.PeakRSS = sumServers(servers, func(s ServerSeries) float64 { return s.Peak.RSS })
	st.PeakFDs = sumServers(servers, func(s ServerSeries) float64 { return s.Peak.FDs })
}

// judge decides whether the run passed: no loss, no duplicate, every
// client connected, every shard reported.
func (r *Report) judge() {
	t, c := r.Tally, r.Counters
	if t.Lost > 0 {
		r.fail(fmt.Sprintf("%d messages lost (acknowledged to the sender, never received)", t.Lost))
	}
	if t.Duplicates > 0 {
		r.fail(fmt.Sprintf("%d duplicate deliveries", t.Duplicates))
	}
	if c.Failed > 0 {
		r.fail(fmt.Sprintf("%d of %d clients could not connect", c.Failed, c.Target))
	}
	switch r.Scenario {
	case ScenarioDirect, ScenarioRoom, ScenarioGroup:
		if c.Acked == 0 && len(r.Failures) == 0 {
			r.fail("no message was acknowledged")
		}
		if c.Dropped > 0 {
			r.note("%d connections were closed by the server during the run (see errors)", c.Dropped)
		}
	case ScenarioIdle, ScenarioConnect:
		if c.Dropped > 0 {
			r.fail(fmt.Sprintf("%d connections were closed by the server while held", c.Dropped))
		}
	}
	if c.Skipped > 0 {
		r.note("the tool could not keep up: %d sends skipped, so the offered rate was lower than asked (use --procs)", c.Skipped)
	}
	if c.Refused > 0 {
		r.note("%d sends refused by the server (see errors), retried when retryable", c.Refused)
	}
	r.OK = len(r.Failures) == 0
}

// WriteTable prints the report for a person: the command, then a few
// fixed-width sections.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	p := r.Plan
	fmt.Fprintf(&b, "%s\n\n", r.Command)
	fmt.Fprintf(&b, "%-13s %s\n", "scenario", r.describe())
	where := strings.Join(p.URLs, ", ")
	if p.Router != "" {
		where = "router " + p.Router
	}
	fmt.Fprintf(&b, "%-13s %s   app %s   users %su0..u%d   %d process(es)\n", "target", where, p.App, p.UserPrefix,
		max(p.TotalConns()-1, 0), r.Tool.Procs)
	c := r.Counters
	fmt.Fprintf(&b, "%-13s %d clients   %d opened   %d failed   %d dropped   setup %.1fs   %.0f conn/s\n",
		"connections", c.Target, c.Opened, c.Failed, c.Dropped, r.SetupSeconds, r.ConnectsPerSecond)
	if len(r.Waves) > 0 {
		t := table{header: []string{"wave", "conns", "failed", "conn/s", "TLS full", "TLS resumed", "synced msgs", "p50 ms", "p99 ms", "max ms"}}
		for _, wv := range r.Waves {
			t.add(wv.Name, itoa64(wv.Conns), itoa64(wv.Failed), fmt.Sprintf("%.0f", wv.PerSecond), itoa64(wv.TLSFull),
				itoa64(wv.TLSResume), itoa64(wv.Synced), ms(wv.Summary.P50), ms(wv.Summary.P99), ms(wv.Summary.Max))
		}
		b.WriteString("\n")
		t.write(&b)
	}
	r.writeLatency(&b)
	switch r.Scenario {
	case ScenarioDirect, ScenarioRoom, ScenarioGroup:
		fmt.Fprintf(&b, "\n%-13s sent %d (%.1f/s)   acked %d (%.1f/s)   delivered %d (%.1f/s)   refused %d   skipped %d\n", "messages",
			c.Sent, r.SentPerSecond, c.Acked, r.AckedPerSecond, c.Delivered, r.DeliveredPerSecond, c.Refused, c.Skipped)
	}
	if r.Scenario != ScenarioIdle && r.Scenario != ScenarioConnect {
		t := r.Tally
		fmt.Fprintf(&b, "%-13s expected %d   lost %d   duplicates %d   missing live %d   recovered by sync %d   beyond ack %d\n",
			"accounting", t.Expected, t.Lost, t.Duplicates, t.LiveMissing, t.Recovered, t.Beyond)
	}
	if id := r.Idle; id != nil {
		settled := fmt.Sprintf("settled after %.1fs", id.SettleSeconds)
		if !id.Settled {
			settled = fmt.Sprintf("NOT settled after %.1fs", id.SettleSeconds)
		}
		fmt.Fprintf(&b, "\n%-13s %d connections held, RSS %s\n", "idle", id.Conns, settled)
		fmt.Fprintf(&b, "%-13s RSS %s   heap %s   goroutines %s\n", "per conn",
			signedBytes(id.RSSPerConn), signedBytes(id.HeapPerConn), signedNum(id.GoroutinesPerConn, 2))
	}
	if st := r.Storm; st != nil {
		fmt.Fprintf(&b, "\n%-13s %d clients   %d lost their connection   %d back   %d resumed\n", "storm",
			st.Clients, st.Lost, st.Reconnected, st.Resumed)
		fmt.Fprintf(&b, "%-13s all connected after %s   all resumed after %s   (from the first lost connection)\n", "recovery",
			secondsOrNA(st.AllConnectedSeconds), secondsOrNA(st.AllResumedSeconds))
		fmt.Fprintf(&b, "%-13s rejected (503): %s by the servers, %d seen by the clients   peak RSS %s   peak fds %s\n", "",
			numOrNA(st.RejectedServer, 0), st.RejectedClients, bytesOrNA(st.PeakRSS), numOrNA(st.PeakFDs, 0))
		if len(st.Retries) > 0 {
			causes := slices.SortedFunc(maps.Keys(st.Retries), func(a, b string) int {
				return cmp.Or(cmp.Compare(st.Retries[b], st.Retries[a]), cmp.Compare(a, b))
			})
			parts := make([]string, len(causes))
			for i, c := range causes {
				parts[i] = fmt.Sprintf("%s %d", c, st.Retries[c])
			}
			fmt.Fprintf(&b, "%-13s %s\n", "retries", strings.Join(parts, "   "))
		}
	}
	r.writeServers(&b)
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %d", k, r.Errors[k])
		}
		fmt.Fprintf(&b, "\n%-13s %s\n", "errors", strings.Join(parts, "   "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if r.OK {
		fmt.Fprintf(&b, "\nresult: OK\n")
	} else {
		fmt.Fprintf(&b, "\nresult: FAILED: %s\n", strings.Join(r.Failures, "; "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describe says what the scenario did, in one line.
func (r *Report) describe() string {
	p := r.Plan
	d := fmt.Sprintf("%.1fs", r.PhaseSeconds)
	switch p.Scenario {
	case ScenarioIdle:
		return fmt.Sprintf("idle: %d connections, each user in 2 direct conversations, held %s", p.Conns, d)
	case ScenarioConnect:
		s := fmt.Sprintf("connect: %d connections", p.Conns)
		if p.TLS {
			s += ", then again resuming TLS sessions"
		}
		if p.Resume {
			s += ", then again with a resume sync"
		}
		return s
	case ScenarioDirect:
		return fmt.Sprintf("direct: %d pairs (%d connections) at %.0f msg/s for %s", p.Pairs, 2*p.Pairs, p.Rate, d)
	case ScenarioRoom:
		spread := "on one node"
		if p.Spread {
			spread = "spread over the gateways"
		}
		return fmt.Sprintf("room: %d members %s, %d sender(s) at %.0f msg/s for %s", p.Members, spread, p.Senders, p.Rate, d)
	case ScenarioGroup:
		return fmt.Sprintf("group: %d groups of %d members (%d connections) at %.0f msg/s for %s", p.Groups, p.Members, p.Groups*p.Members, p.Rate, d)
	case ScenarioStorm:
		return fmt.Sprintf("storm: %d SDK clients through a server restart (%d messages per pair before it), %s", p.Conns, p.StormMessages, d)
	}
	return p.Scenario
}

// writeLatency prints the latency histograms that have recordings.
func (r *Report) writeLatency(b *strings.Builder) {
	order := []string{histTCP, histUpgrade, histAuth, histHandshake, histAck, histDeliver, histDowntime, histReconnect, histResume, histCaughtUp}
	t := table{header: []string{"latency (ms)", "count", "min", "p50", "p90", "p99", "p99.9", "max"}}
	for _, n := range order {
		if s, ok := r.Latency[n]; ok && s.Count > 0 {
			t.add(n, fmt.Sprint(s.Count), ms(s.Min), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
		}
	}
	if len(t.rows) > 0 {
		b.WriteString("\n")
		t.write(b)
	}
}

func ms(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// writeServers prints each server's readings and the CPU of both sides.
func (r *Report) writeServers(b *strings.Builder) {
	if len(r.Servers) > 0 {
		t := table{header: []string{"server", "when", "RSS", "heap", "goroutines", "threads", "conns", "fds", "CPU s"}}
		for _, s := range r.Servers {
			rows := []struct {
				name string
				x    ServerSample
			}{{"base", s.Base}, {"start", s.Start}, {"loaded", s.Loaded}, {"end", s.End}, {"peak", s.Peak}}
			first := true
			for _, row := range rows {
				x := row.x
				if (x.At.IsZero() && row.name != "peak") || (row.name == "loaded" && r.Scenario != ScenarioIdle) {
					continue
				}
				name := ""
				if first {
					name, first = s.Name, false
				}
				if x.Err != "" {
					t.add(name, row.name, "unreadable")
					continue
				}
				t.add(name, row.name, bytesOrNA(x.RSS), bytesOrNA(x.HeapInuse), numOrNA(x.Goroutines, 0),
					numOrNA(x.Threads, 0), numOrNA(x.Conns, 0), numOrNA(x.FDs, 0), numOrNA(x.CPU, 2))
			}
		}
		b.WriteString("\n")
		t.dropEmpty("n/a")
		t.write(b)
	}
	phase := r.PhaseSeconds
	cores := func(cpu float64) string {
		if cpu < 0 {
			return "n/a"
		}
		if phase <= 0 {
			return fmt.Sprintf("%.2f s", cpu)
		}
		return fmt.Sprintf("%.2f s = %.2f cores", cpu, cpu/phase)
	}
	fmt.Fprintf(b, "\n%-13s server %s   tool %s   (during the %.1fs measured phase)\n", "cpu", cores(r.ServerPhaseCPU), cores(r.Tool.PhaseCPUSeconds), phase)
	fmt.Fprintf(b, "%-13s %.2f s CPU over the whole run (%.1fs), peak RSS %s, %d process(es)\n", "tool", r.Tool.CPUSeconds,
		r.TotalSeconds, bytesOrNA(float64(r.Tool.MaxRSSBytes)), r.Tool.Procs)
}

func bytesOrNA(v float64) string {
	if v < 0 {
		return "n/a"
	}
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

func numOrNA(v float64, prec int) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func secondsOrNA(v float64) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fs", v)
}

func signedBytes(v *float64) string {
	if v == nil {
		return "n/a"
	}
	if *v < 0 {
		return "-" + bytesOrNA(-*v)
	}
	return bytesOrNA(*v)
}

func signedNum(v *float64, prec int) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, *v)
}

func itoa64(v int64) string { return fmt.Sprint(v) }

// table is a fixed-width table: the first column left-aligned, the others
// right-aligned, two spaces apart.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// dropEmpty removes the columns (but the first two) where every row says
// empty or nothing: a metric no server exposes is noise.
func (t *table) dropEmpty(empty string) {
	for c := len(t.header) - 1; c >= 2; c-- {
		blank := true
		for _, row := range t.rows {
			if c < len(row) && row[c] != empty && row[c] != "" {
				blank = false
				break
			}
		}
		if !blank {
			continue
		}
		t.header = append(t.header[:c:c], t.header[c+1:]...)
		for i, row := range t.rows {
			if c < len(row) {
				t.rows[i] = append(row[:c:c], row[c+1:]...)
			}
		}
	}
}

func (t *table) write(b *strings.Builder) {
	width := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, cell := range row {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(cell))
			}
		}
	}
	for _, row := range append([][]string{t.header}, t.rows...) {
		var line strings.Builder
		for i := range width {
			cell := ""
			if i < len(row) {
				cell = row[i]
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			switch {
			case i == 0:
				line.WriteString(cell + pad)
			default:
				line.WriteString("  " + pad + cell)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}
