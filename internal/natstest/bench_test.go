package natstest

// What a 3-server NATS cluster absorbs of Floodgate's subscription pattern:
// one subscription per user or room a node serves, subjects
// fg.<kind>.<b64 app>.<b64 id>, subscribed and unsubscribed as clients come
// and go.
//
// Each benchmark is one whole measurement: run them with -benchtime=1x, for
// example
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/natstest/
//
// The built-in ns/op is suppressed; the figures are the reported metrics.
// The cluster and the load share the machine, which the figures include.

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var b64 = base64.RawURLEncoding

// subject returns a Floodgate-like user subject, distinct for every (tag, n).
func subject(tag string, n int) string {
	return "fg.u." + b64.EncodeToString([]byte("bench-app")) + "." +
		b64.EncodeToString([]byte("user-"+tag+"-"+strconv.Itoa(n)))
}

// benchConn connects to url alone, without reconnection (a lost connection
// is a failure to report), counting asynchronous errors in errs.
func benchConn(b *testing.B, url string, errs *atomic.Int64) *nats.Conn {
	b.Helper()
	nc, err := nats.Connect(url,
		nats.IgnoreDiscoveredServers(),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			errs.Add(1)
		}),
	)
	if err != nil {
		b.Fatalf("connect %s: %v", url, err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// procStatus returns a field of /proc/<pid>/status in bytes (VmRSS...).
func procStatus(pid int, field string) (int64, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(st)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssMB returns the resident memory of every server, in MiB.
func rssMB(b *testing.B, c *Cluster) []float64 {
	b.Helper()
	out := make([]float64, c.N())
	for i := range out {
		n, err := procStatus(c.PID(i), "VmRSS")
		if err != nil {
			b.Fatal(err)
		}
		out[i] = float64(n) / (1 << 20)
	}
	return out
}

// cpuSeconds returns the CPU time (user+system) server i has used.
func cpuSeconds(b *testing.B, c *Cluster, i int) float64 {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.PID(i)))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// cpuTimes is the CPU time, in seconds, used so far by each server, by
// the test process (the clients) and by the whole machine.
type cpuTimes struct {
	servers       []float64
	self, machine float64
}

func cpuNow(b *testing.B, c *Cluster) cpuTimes {
	b.Helper()
	var t cpuTimes
	for i := range c.N() {
		t.servers = append(t.servers, cpuSeconds(b, c, i))
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	t.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	// cpu user nice system idle iowait irq softirq steal ...
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(st), "\n")
	for k, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		if k < 8 && k != 3 && k != 4 { // not idle, not iowait
			t.machine += v / 100
		}
	}
	return t
}

// reportCPU reports the cores each server and the clients used since
// start, elapsed ago, and those the rest of the machine (other processes)
// used meanwhile: the servers and the load share the machine.
func reportCPU(b *testing.B, c *Cluster, start cpuTimes, elapsed time.Duration) {
	b.Helper()
	now := cpuNow(b, c)
	others := now.machine - start.machine - (now.self - start.self)
	for i, v := range now.servers {
		b.ReportMetric((v-start.servers[i])/elapsed.Seconds(), fmt.Sprintf("s%d-cores", i))
		others -= v - start.servers[i]
	}
	b.ReportMetric((now.self-start.self)/elapsed.Seconds(), "client-cores")
	b.ReportMetric(max(others, 0)/elapsed.Seconds(), "other-cores")
}

// numSubs returns how many subscriptions server i holds, its clients' and
// those its routes brought.
func numSubs(c *Cluster, i int) (int, error) {
	var sz struct {
		N int `json:"num_subscriptions"`
	}
	err := c.getJSON(c.servers[i], "/subsz", &sz)
	return sz.N, err
}

// waitSubs waits until every server holds want subscriptions (or deadline).
func waitSubs(c *Cluster, want []int, deadline time.Time) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var bad error
		for i := range want {
			n, err := numSubs(c, i)
			if err != nil {
				return err
			}
			if n != want[i] {
				bad = fmt.Errorf("server %d holds %d subscriptions, want %d", i, n, want[i])
				break
			}
		}
		if bad == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return bad
		}
		<-tick.C
	}
}

func allSubs(b *testing.B, c *Cluster) []int {
	b.Helper()
	out := make([]int, c.N())
	for i := range out {
		n, err := numSubs(c, i)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = n
	}
	return out
}

// BenchmarkSubscribeCapacity registers 300k distinct subscriptions from one
// connection to server 0 as fast as it can (a flush every 10k), and reports
// the rate server 0 accepts them at, the rate the whole cluster holds them
// at, and every server's memory at 100k and 300k.
func BenchmarkSubscribeCapacity(b *testing.B) {
	c := StartCluster(b, 3)
	var errs atomic.Int64
	nc := benchConn(b, c.URL(0), &errs)
	ch := make(chan *nats.Msg, 1) // nothing is published
	base := allSubs(b, c)
	rss0 := rssMB(b, c)
	cpu0 := cpuNow(b, c)
	b.ResetTimer()

	const batch = 10_000
	var local, cluster time.Duration
	n := 0
	for _, target := range []int{100_000, 300_000} {
		start := time.Now()
		for n < target {
			for range batch {
				if _, err := nc.ChanSubscribe(subject("cap", n), ch); err != nil {
					b.Fatalf("subscription %d: %v", n, err)
				}
				n++
			}
			if err := nc.FlushTimeout(30 * time.Second); err != nil {
				b.Fatalf("flush at %d subscriptions: %v", n, err)
			}
		}
		local += time.Since(start)
		want := make([]int, len(base))
		for i := range want {
			want[i] = base[i] + n
		}
		if err := waitSubs(c, want, time.Now().Add(30*time.Second)); err != nil {
			b.Fatalf("at %d subscriptions: %v", n, err)
		}
		cluster += time.Since(start)
		rss := rssMB(b, c)
		k := target / 1000
		for i, m := range rss {
			b.ReportMetric(m, fmt.Sprintf("s%d-MiB@%dk", i, k))
		}
		b.Logf("%dk subscriptions: RSS MiB %.1f (was %.1f at 0)", k, rss, rss0)
		if target == 300_000 {
			b.ReportMetric((rss[0]-rss0[0])*(1<<20)/float64(n), "s0-B/sub")
			b.ReportMetric((rss[1]+rss[2]-rss0[1]-rss0[2])/2*(1<<20)/float64(n), "remote-B/sub")
		}
	}
	b.StopTimer()
	reportCPU(b, c, cpu0, cluster)
	for i, m := range rss0 {
		b.ReportMetric(m, fmt.Sprintf("s%d-MiB@0", i))
	}
	b.ReportMetric(float64(n), "subs")
	b.ReportMetric(float64(n)/local.Seconds(), "s0-subs/s")
	b.ReportMetric(float64(n)/cluster.Seconds(), "cluster-subs/s")
	b.ReportMetric(0, "ns/op")
	if err := c.ready(); err != nil {
		b.Errorf("cluster unhealthy after %d subscriptions: %v", n, err)
	}
	if e := errs.Load(); e != 0 {
		b.Errorf("%d asynchronous client errors", e)
	}
}

// BenchmarkSubscribeFlushed subscribes for 3s the way internal/bus does:
// every subscription followed by a flush, whose round trip tells the caller
// server 0 has it, from 1 goroutine or 16 sharing the connection. It
// reports the subscriptions server 0 acknowledges per second (they are all
// kept, as a restarting node's would be).
func BenchmarkSubscribeFlushed(b *testing.B) {
	for _, goroutines := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			c := StartCluster(b, 3)
			var errs atomic.Int64
			nc := benchConn(b, c.URL(0), &errs)
			ch := make(chan *nats.Msg, 1)
			cpu0 := cpuNow(b, c)
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var n atomic.Int64
			var wg sync.WaitGroup
			errc := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					tag := fmt.Sprintf("flushed%d", g)
					for k := 0; ctx.Err() == nil; k++ {
						if _, err := nc.ChanSubscribe(subject(tag, k), ch); err != nil {
							errc <- err
							return
						}
						if err := nc.FlushTimeout(10 * time.Second); err != nil {
							errc <- err
							return
						}
						n.Add(1)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errc)
			for err := range errc {
				b.Error(err)
			}
			reportCPU(b, c, cpu0, elapsed)
			b.ReportMetric(float64(n.Load())/elapsed.Seconds(), "subs/s")
			if e := errs.Load(); e != 0 {
				b.Errorf("%d asynchronous client errors", e)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// churn subscribes to fresh subjects and unsubscribes them at once, in
// batches closed by a flush, until ctx is done, at most pairsPerSec pairs a
// second (0: as fast as it can). It returns the pairs the server has
// acknowledged.
func churn(ctx context.Context, nc *nats.Conn, tag string, pairsPerSec int) (int, error) {
	const batch = 250
	ch := make(chan *nats.Msg, 1)
	start := time.Now()
	var timer *time.Timer
	n := 0
	for ctx.Err() == nil {
		for range batch {
			sub, err := nc.ChanSubscribe(subject(tag, n), ch)
			if err != nil {
				return n, err
			}
			if err := sub.Unsubscribe(); err != nil {
				return n, err
			}
			n++
		}
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := nc.FlushWithContext(fctx)
		cancel()
		if err != nil {
			return n, fmt.Errorf("flush after %d pairs: %w", n, err)
		}
		if pairsPerSec > 0 { // pace: batch k is due at start + k*batch/rate
			due := start.Add(time.Duration(float64(n) / float64(pairsPerSec) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
				}
			}
		}
	}
	return n, nil
}

// load is subscription churn running in the background: one churning
// connection to each of the given servers.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	pairs  atomic.Int64
	mu     sync.Mutex
	errs   []error
}

func startChurn(b *testing.B, c *Cluster, servers []int, pairsPerSec int, errs *atomic.Int64) *load {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, start: time.Now()}
	for _, i := range servers {
		nc := benchConn(b, c.URL(i), errs)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			n, err := churn(ctx, nc, fmt.Sprintf("churn%d", i), pairsPerSec)
			l.pairs.Add(int64(n))
			if err != nil {
				l.mu.Lock()
				l.errs = append(l.errs, fmt.Errorf("churn on server %d: %w", i, err))
				l.mu.Unlock()
			}
		}()
	}
	b.Cleanup(func() { l.stop() }) // a failing benchmark still stops its goroutines
	return l
}

// stop stops the churn and returns the acknowledged pairs per second.
func (l *load) stop() float64 {
	l.cancel()
	l.wg.Wait()
	return float64(l.pairs.Load()) / time.Since(l.start).Seconds()
}

func (l *load) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// health watches a cluster under load: a message every 10ms from server 0
// to a subscriber on server 2 (its latency, and whether it is lost), and
// each server's monitoring every 100ms (slow consumers, stale connections,
// routes, bytes pending on routes).
type health struct {
	c      *Cluster
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	sent        int
	lat         []time.Duration
	maxPending  int // bytes, one route
	minRoutes   int
	monitorErrs int
	baseVarz    []varz
}

type varz struct {
	Routes        int   `json:"routes"`
	SlowConsumers int64 `json:"slow_consumers"`
	Stale         int64 `json:"stale_connections"`
}

func watchHealth(b *testing.B, c *Cluster, errs *atomic.Int64) *health {
	b.Helper()
	pub, sub := benchConn(b, c.URL(0), errs), benchConn(b, c.URL(2), errs)
	ctx, cancel := context.WithCancel(context.Background())
	h := &health{c: c, cancel: cancel, minRoutes: 1 << 30}
	for i := range c.N() {
		var v varz
		if err := c.getJSON(c.servers[i], "/varz", &v); err != nil {
			b.Fatal(err)
		}
		h.baseVarz = append(h.baseVarz, v)
	}
	const probe = "fg.probe.health"
	s, err := sub.Subscribe(probe, func(m *nats.Msg) {
		if len(m.Data) == 8 {
			d := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(m.Data)))
			h.mu.Lock()
			h.lat = append(h.lat, d)
			h.mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	// The probe's interest must have reached server 0, and the subscription
	// counts must be settled for the caller: once a later subscription of
	// the same connection has reached servers 0 and 1, it has. The "warm"
	// subscription stays, so that the counts do not move again.
	warm, err := sub.SubscribeSync("fg.probe.warm")
	if err != nil {
		b.Fatal(err)
	}
	for _, from := range []*nats.Conn{pub, benchConn(b, c.URL(1), errs)} {
		reached := false
		for deadline := time.Now().Add(10 * time.Second); !reached && time.Now().Before(deadline); {
			if err := from.Publish("fg.probe.warm", nil); err != nil {
				b.Fatal(err)
			}
			_, err := warm.NextMsg(5 * time.Millisecond)
			reached = err == nil
		}
		if !reached {
			b.Fatalf("the health probe never crossed the cluster from %s", from.ConnectedServerName())
		}
	}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				h.send(pub)
			}
		}
	}()
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				h.poll()
			}
		}
	}()
	b.Cleanup(func() {
		h.cancel()
		h.wg.Wait()
		_ = s.Unsubscribe()
	})
	return h
}

func (h *health) send(pub *nats.Conn) {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(time.Now().UnixNano()))
	if pub.Publish("fg.probe.health", ts[:]) == nil {
		h.mu.Lock()
		h.sent++
		h.mu.Unlock()
	}
}

func (h *health) poll() {
	for i := range h.c.N() {
		var v varz
		var rz struct {
			Routes []struct {
				Pending int `json:"pending_size"`
			} `json:"routes"`
		}
		err := h.c.getJSON(h.c.servers[i], "/varz", &v)
		if err == nil {
			err = h.c.getJSON(h.c.servers[i], "/routez", &rz)
		}
		h.mu.Lock()
		if err != nil {
			h.monitorErrs++
		} else {
			h.minRoutes = min(h.minRoutes, v.Routes)
			for _, r := range rz.Routes {
				h.maxPending = max(h.maxPending, r.Pending)
			}
		}
		h.mu.Unlock()
	}
}

// report stops the watch, waits up to 5s for probes in flight, and reports
// the probe latency, the lost probes and any sign of trouble.
func (h *health) report(b *testing.B) {
	b.Helper()
	h.cancel()
	h.wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		h.mu.Lock()
		done := len(h.lat) >= h.sent
		h.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p50, p99, worst := percentiles(h.lat)
	b.ReportMetric(ms(p50), "probe-p50-ms")
	b.ReportMetric(ms(p99), "probe-p99-ms")
	b.ReportMetric(ms(worst), "probe-max-ms")
	b.ReportMetric(float64(h.sent-len(h.lat)), "probes-lost")
	b.ReportMetric(float64(h.maxPending)/1024, "route-pending-max-KiB")
	var slow, stale int64
	for i := range h.c.N() {
		var v varz
		if err := h.c.getJSON(h.c.servers[i], "/varz", &v); err != nil {
			b.Errorf("server %d: %v", i, err)
			continue
		}
		slow += v.SlowConsumers - h.baseVarz[i].SlowConsumers
		stale += v.Stale - h.baseVarz[i].Stale
		if v.Routes < h.baseVarz[i].Routes {
			b.Errorf("server %d has %d routes, had %d", i, v.Routes, h.baseVarz[i].Routes)
		}
	}
	if base := slices.MinFunc(h.baseVarz, func(a, b varz) int { return a.Routes - b.Routes }); h.minRoutes < base.Routes {
		b.Logf("a server had only %d routes during the run, %d before", h.minRoutes, base.Routes)
	}
	b.ReportMetric(float64(slow), "slow-consumers")
	b.ReportMetric(float64(stale), "stale-conns")
	if h.monitorErrs > 0 {
		b.Logf("%d monitoring requests failed during the run", h.monitorErrs)
	}
	if err := h.c.ready(); err != nil {
		b.Errorf("cluster not fully routed after the run: %v", err)
	}
}

func percentiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkChurn subscribes and at once unsubscribes fresh subjects for 5s
// as fast as the cluster acknowledges them (a flush every 250 pairs), from
// one connection to server 0 or from one connection to each server, while a
// probe crosses the cluster every 10ms. It reports the pairs per second,
// the servers' CPU, the probe's latency and losses, and any slow consumer,
// stale connection or lost route.
func BenchmarkChurn(b *testing.B) {
	for _, bc := range []struct {
		name    string
		servers []int
	}{
		{"clients=1", []int{0}},
		{"clients=3", []int{0, 1, 2}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := StartCluster(b, 3)
			var errs atomic.Int64
			h := watchHealth(b, c, &errs)
			base := allSubs(b, c)
			cpu0 := cpuNow(b, c)
			b.ResetTimer()
			l := startChurn(b, c, bc.servers, 0, &errs)
			timer := time.NewTimer(5 * time.Second)
			<-timer.C
			rate := l.stop()
			elapsed := time.Since(l.start)
			b.StopTimer()
			if err := l.err(); err != nil {
				b.Error(err)
			}
			reportCPU(b, c, cpu0, elapsed)
			b.ReportMetric(rate, "pairs/s")
			// Every unsubscription must have reached every server.
			start := time.Now()
			if err := waitSubs(c, base, time.Now().Add(30*time.Second)); err != nil {
				b.Errorf("after the churn: %v", err)
			}
			b.ReportMetric(ms(time.Since(start)), "settle-ms")
			h.report(b)
			if e := errs.Load(); e != 0 {
				b.Errorf("%d asynchronous client errors", e)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkInterestPropagation measures, for 200 fresh subjects one after
// the other, the time from a subscription on server 0 being acknowledged
// (subscribe, flush) to the first message published on server 2 that
// reaches it: server 2 publishes a probe every millisecond, each carrying
// its send time, and the delay is the send time of the first probe
// delivered; first-probe-ok is the share of subjects whose very first
// probe, published right after the flush, was delivered, and
// dropped/subject how many probes server 2 dropped before one went through,
// as it would drop real messages. Measured on an idle cluster, under paced
// churn (every server's connection at Floodgate's default SubscribeRate of
// 10000 operations a second: 5000 pairs) and under churn as fast as the
// cluster goes (BenchmarkChurn's clients=3).
func BenchmarkInterestPropagation(b *testing.B) {
	for _, bc := range []struct {
		name        string
		churn       bool
		pairsPerSec int
	}{
		{"idle", false, 0},
		{"churn=5000pairs/s/server", true, 5000},
		{"churn=max", true, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := StartCluster(b, 3)
			var errs atomic.Int64
			sub, pub := benchConn(b, c.URL(0), &errs), benchConn(b, c.URL(2), &errs)
			var l *load
			if bc.churn {
				l = startChurn(b, c, []int{0, 1, 2}, bc.pairsPerSec, &errs)
			}
			b.ResetTimer()
			const subjects = 200
			var delays, arrivals []time.Duration
			dropped, first, lost := 0, 0, 0
			for k := range subjects {
				d, a, n, err := propagation(sub, pub, subject("prop", k), 5*time.Second)
				if err != nil {
					lost++
					b.Logf("subject %d: %v", k, err)
					continue
				}
				delays, arrivals = append(delays, d), append(arrivals, a)
				dropped += n
				if n == 0 {
					first++
				}
			}
			b.StopTimer()
			if l != nil {
				b.ReportMetric(l.stop(), "churn-pairs/s")
				if err := l.err(); err != nil {
					b.Error(err)
				}
			}
			p50, p99, worst := percentiles(delays)
			b.ReportMetric(ms(p50), "p50-ms")
			b.ReportMetric(ms(p99), "p99-ms")
			b.ReportMetric(ms(worst), "max-ms")
			_, a99, _ := percentiles(arrivals)
			b.ReportMetric(ms(a99), "arrival-p99-ms")
			b.ReportMetric(float64(first)/float64(subjects), "first-probe-ok")
			b.ReportMetric(float64(dropped)/float64(max(1, subjects-lost)), "dropped/subject")
			b.ReportMetric(float64(lost), "never-reached")
			if lost > 0 {
				b.Errorf("%d of %d subjects never reached in 5s", lost, subjects)
			}
			if err := c.ready(); err != nil {
				b.Errorf("cluster not fully routed after the run: %v", err)
			}
			if e := errs.Load(); e != 0 {
				b.Errorf("%d asynchronous client errors", e)
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// propagation subscribes to subj on sub, flushes, then publishes a probe on
// pub every millisecond until one arrives. It returns the delay from the
// flush to the send time of the first probe delivered, to its arrival, and
// how many probes were sent before that one (dropped by server 2).
func propagation(sub, pub *nats.Conn, subj string, limit time.Duration) (delay, arrival time.Duration, first int, err error) {
	probes := 0
	s, err := sub.SubscribeSync(subj)
	if err != nil {
		return 0, 0, 0, err
	}
	defer func() { _ = s.Unsubscribe() }()
	if err := sub.Flush(); err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	var probe [12]byte // send time since t0, sequence number
	for time.Since(t0) < limit {
		binary.BigEndian.PutUint64(probe[:], uint64(time.Since(t0)))
		binary.BigEndian.PutUint32(probe[8:], uint32(probes))
		if err := pub.Publish(subj, probe[:]); err != nil {
			return 0, 0, first, err
		}
		probes++
		m, err := s.NextMsg(time.Millisecond)
		if err == nil {
			// Not necessarily the last probe sent: an earlier one may have
			// taken more than a millisecond to arrive.
			return time.Duration(binary.BigEndian.Uint64(m.Data)), time.Since(t0), int(binary.BigEndian.Uint32(m.Data[8:])), nil
		}
		if !errors.Is(err, nats.ErrTimeout) {
			return 0, 0, 0, err
		}
	}
	return 0, 0, 0, fmt.Errorf("%s: no probe of %d arrived in %v", subj, probes, limit)
}
