package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU
// times. It is 100 on every Linux architecture Go supports; reading it
// properly (sysconf) would need cgo.
const clockTicks = 100

// ServerSample is one reading of a server's resources. A value that could
// not be read is -1.
type ServerSample struct {
	At         time.Time `json:"at"`
	RSS        float64   `json:"rss_bytes"`
	HeapInuse  float64   `json:"heap_inuse_bytes"`
	Goroutines float64   `json:"goroutines"`
	Threads    float64   `json:"threads"`
	CPU        float64   `json:"cpu_seconds"`
	Conns      float64   `json:"connections"`
	FDs        float64   `json:"open_fds"`
	Rejected   float64   `json:"rejected_total"`
	Err        string    `json:"error,omitempty"`
}

// ok reports whether the sample read anything.
func (s ServerSample) ok() bool { return s.Err == "" }

// metricNames lists the Prometheus metrics a sample reads.
func metricNames() []string {
	return []string{"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines",
		"process_cpu_seconds_total", "floodgate_connections", "process_open_fds",
		"floodgate_connections_rejected_total"}
}

// probe reads one server's resources from its ops listener's /metrics,
// or from /proc/PID when only a pid is known (then goroutines and
// connections are unknown; threads stand in for goroutines).
type probe struct {
	Name string // for the report: the ops URL, or "pid N"
	ops  string // base URL of the ops listener, "" when none
	pid  int    // 0 when none
	http *http.Client
}

func newProbe(ops string, pid int, hc *http.Client) *probe {
	name := ops
	if name == "" {
		name = "pid " + strconv.Itoa(pid)
	}
	return &probe{Name: name, ops: strings.TrimRight(ops, "/"), pid: pid, http: hc}
}

// sample reads the server now. /metrics wins over /proc for what both
// give; /proc fills in what the metrics lack.
func (p *probe) sample(ctx context.Context) ServerSample {
	s := ServerSample{At: time.Now(), RSS: -1, HeapInuse: -1, Goroutines: -1, Threads: -1, CPU: -1, Conns: -1, FDs: -1, Rejected: -1}
	var errs []string
	if p.ops != "" {
		if m, err := p.metrics(ctx); err != nil {
			errs = append(errs, err.Error())
		} else {
			set := func(dst *float64, name string) {
				if v, ok := m[name]; ok {
					*dst = v
				}
			}
			set(&s.RSS, "process_resident_memory_bytes")
			set(&s.HeapInuse, "go_memstats_heap_inuse_bytes")
			set(&s.Goroutines, "go_goroutines")
			set(&s.CPU, "process_cpu_seconds_total")
			set(&s.Conns, "floodgate_connections")
			set(&s.FDs, "process_open_fds")
			set(&s.Rejected, "floodgate_connections_rejected_total")
		}
	}
	if p.pid > 0 {
		if ps, err := readProc(p.pid); err != nil {
			errs = append(errs, err.Error())
		} else {
			fill := func(dst *float64, v float64) {
				if *dst < 0 {
					*dst = v
				}
			}
			fill(&s.RSS, ps.rss)
			fill(&s.CPU, ps.cpu)
			fill(&s.FDs, ps.fds)
			s.Threads = ps.threads
		}
	}
	// Partial success (metrics down, /proc fine) is still a sample.
	if len(errs) > 0 && s.RSS < 0 && s.CPU < 0 {
		s.Err = strings.Join(errs, "; ")
	}
	return s
}

func (p *probe) metrics(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.ops+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: HTTP %d", p.ops, resp.StatusCode)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20), metricNames())
}

// forceGC asks the server to collect garbage: the ops listener's heap
// profile endpoint runs a GC first with gc=1. The profile itself is
// discarded.
func (p *probe) forceGC(ctx context.Context) error {
	if p.ops == "" {
		return errors.New("no ops URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.ops+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: HTTP %d", resp.StatusCode)
	}
	return nil
}

// parseMetrics reads the Prometheus text format and returns, for each of
// names, the sum of its samples over all label sets (the metrics read are
// unlabelled, or labelled in ways the bench adds up).
func parseMetrics(r io.Reader, names []string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		end := bytes.IndexAny(line, "{ ")
		if end <= 0 || !want[string(line[:end])] {
			continue
		}
		name := string(line[:end])
		rest := line[end:]
		if rest[0] == '{' {
			// Label values may hold spaces; the value follows the last '}'.
			close := bytes.LastIndexByte(rest, '}')
			if close < 0 {
				continue
			}
			rest = rest[close+1:]
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// procStat is what /proc tells of a process.
type procStat struct {
	rss, cpu, threads, fds float64
}

// readProc reads /proc/PID/status (VmRSS), /proc/PID/stat (utime, stime,
// threads) and counts /proc/PID/fd.
func readProc(pid int) (procStat, error) {
	var ps procStat
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return ps, err
	}
	if ps.rss, err = parseStatusRSS(status); err != nil {
		return ps, err
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return ps, err
	}
	if ps.cpu, ps.threads, err = parseStat(stat); err != nil {
		return ps, err
	}
	ps.fds = -1
	if ents, err := os.ReadDir(dir + "/fd"); err == nil {
		ps.fds = float64(len(ents))
	}
	return ps, nil
}

// parseStatusRSS returns VmRSS from /proc/PID/status, in bytes.
func parseStatusRSS(status []byte) (float64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(string(f[0]), 64)
				if err == nil {
					return kb * 1024, nil
				}
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// parseStat returns the CPU seconds (utime + stime) and thread count from
// /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its closing parenthesis.
func parseStat(stat []byte) (cpu, threads float64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, threads 20.
	if len(f) < 18 {
		return 0, 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseFloat(string(f[11]), 64)
	st, err2 := strconv.ParseFloat(string(f[12]), 64)
	th, err3 := strconv.ParseFloat(string(f[17]), 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return (ut + st) / clockTicks, th, nil
}

// ServerSeries is what the report keeps of one server over the run.
type ServerSeries struct {
	Name string `json:"name"`
	// Base is read before any client connects, Loaded when they all are
	// (idle: once the RSS has settled), Start and End bracket the measured
	// phase.
	Base   ServerSample `json:"base"`
	Loaded ServerSample `json:"loaded"`
	Start  ServerSample `json:"start"`
	End    ServerSample `json:"end"`
	// Peak is the largest value of each field over every sample.
	Peak ServerSample `json:"peak"`
	// RejectedDelta sums the increases of the rejected-connections counter
	// over the run, across restarts (a restarted server starts again at 0).
	RejectedDelta float64 `json:"rejected_delta"`
	// Samples is every reading, in order (about one a second).
	Samples []ServerSample `json:"samples,omitempty"`

	havePeak     bool
	lastRejected float64
}

// observe folds a sample into the series.
func (s *ServerSeries) observe(x ServerSample) {
	s.Samples = append(s.Samples, x)
	if !x.ok() {
		return
	}
	if !s.havePeak {
		s.Peak, s.havePeak, s.lastRejected = x, true, x.Rejected
		s.Peak.At = time.Time{}
		return
	}
	s.Peak.RSS = max(s.Peak.RSS, x.RSS)
	s.Peak.HeapInuse = max(s.Peak.HeapInuse, x.HeapInuse)
	s.Peak.Goroutines = max(s.Peak.Goroutines, x.Goroutines)
	s.Peak.Threads = max(s.Peak.Threads, x.Threads)
	s.Peak.CPU = max(s.Peak.CPU, x.CPU)
	s.Peak.Conns = max(s.Peak.Conns, x.Conns)
	s.Peak.FDs = max(s.Peak.FDs, x.FDs)
	s.Peak.Rejected = max(s.Peak.Rejected, x.Rejected)
	if x.Rejected >= 0 {
		switch {
		case s.lastRejected < 0:
		case x.Rejected >= s.lastRejected:
			s.RejectedDelta += x.Rejected - s.lastRejected
		default: // the server restarted and its counter with it
			s.RejectedDelta += x.Rejected
		}
		s.lastRejected = x.Rejected
	}
}

// cpuBetween returns the CPU seconds the server used between two times,
// adding up the increases between consecutive readings so that a restart
// (the counter starts again from zero) does not spoil the sum; -1 when
// there are not two readings.
func (s *ServerSeries) cpuBetween(from, to time.Time) float64 {
	total, last, n := 0.0, -1.0, 0
	for _, x := range s.Samples {
		if x.At.Before(from) || x.At.After(to) || !x.ok() || x.CPU < 0 {
			continue
		}
		n++
		switch {
		case last < 0:
		case x.CPU >= last:
			total += x.CPU - last
		default:
			total += x.CPU
		}
		last = x.CPU
	}
	if n < 2 {
		return -1
	}
	return total
}

// monitor samples every probe at an interval in the background.
type monitor struct {
	probes []*probe
	mu     sync.Mutex
	series []*ServerSeries
	stop   chan struct{}
	done   chan struct{}
}

func newMonitor(probes []*probe) *monitor {
	m := &monitor{probes: probes}
	for _, p := range probes {
		m.series = append(m.series, &ServerSeries{Name: p.Name})
	}
	return m
}

// sampleAll reads every server once, folds the readings into the series
// and returns them.
func (m *monitor) sampleAll(ctx context.Context) []ServerSample {
	out := make([]ServerSample, len(m.probes))
	var wg sync.WaitGroup
	for i, p := range m.probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = p.sample(ctx)
		}()
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range out {
		m.series[i].observe(x)
	}
	return out
}

// start samples every interval until stopAndWait.
func (m *monitor) start(ctx context.Context, interval time.Duration) {
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.sampleAll(ctx)
			case <-m.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

func (m *monitor) stopAndWait() {
	if m.stop == nil {
		return
	}
	close(m.stop)
	<-m.done
	m.stop = nil
}

// mark stores the current readings as one of the series' named points.
func (m *monitor) mark(ctx context.Context, which func(s *ServerSeries) *ServerSample) []ServerSample {
	xs := m.sampleAll(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range xs {
		*which(m.series[i]) = x
	}
	return xs
}

// snapshot returns copies of the series.
func (m *monitor) snapshot() []ServerSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ServerSeries, len(m.series))
	for i, s := range m.series {
		out[i] = *s
		out[i].Samples = append([]ServerSample(nil), s.Samples...)
	}
	return out
}
