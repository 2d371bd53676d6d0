package bench

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 3.3554432e+07
floodgate_connections 1200
floodgate_requests_total{op="send",result="ok"} 10
floodgate_requests_total{op="send",result="rate limited, retry"} 5
floodgate_connections_rejected_total 7 1763800000000
not_wanted 1
garbage line
`
	m, err := parseMetrics(strings.NewReader(text), []string{"go_goroutines", "process_resident_memory_bytes",
		"floodgate_connections", "floodgate_requests_total", "floodgate_connections_rejected_total", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 42, "process_resident_memory_bytes": 33554432, "floodgate_connections": 1200,
		"floodgate_requests_total": 15, "floodgate_connections_rejected_total": 7}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (floodgate (a) b) S 1 1234 1234 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 17 0 100 123456 789 18446744073709551615")
	cpu, threads, err := parseStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 3.8 || threads != 17 {
		t.Errorf("cpu %v threads %v, want 3.8 s and 17", cpu, threads)
	}
	rss, err := parseStatusRSS([]byte("Name:\tfloodgate\nVmPeak:\t  9999 kB\nVmRSS:\t   2048 kB\nThreads:\t17\n"))
	if err != nil || rss != 2048*1024 {
		t.Errorf("rss %v (%v), want 2 MiB", rss, err)
	}
	if runtime.GOOS == "linux" {
		ps, err := readProc(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if ps.rss <= 0 || ps.threads < 1 || ps.fds < 3 {
			t.Errorf("this process: %+v", ps)
		}
	}
}

func TestSeriesAcrossARestart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var s ServerSeries
	for i, x := range []struct {
		cpu, rejected, rss float64
	}{{10, 5, 100}, {12, 7, 300}, {13, 9, 200}, {0.5, 1, 50}, {1.5, 4, 400}} {
		s.observe(ServerSample{At: at(i), CPU: x.cpu, Rejected: x.rejected, RSS: x.rss, FDs: -1})
	}
	s.observe(ServerSample{At: at(5), Err: "connection refused"}) // the server was down
	// 2 + 1 before the restart, 0.5 (from zero) + 1 after.
	if got := s.cpuBetween(at(0), at(5)); got != 4.5 {
		t.Errorf("CPU across the restart %v, want 4.5", got)
	}
	if got := s.cpuBetween(at(1), at(2)); got != 1 {
		t.Errorf("CPU between two samples %v, want 1", got)
	}
	if got := s.cpuBetween(at(9), at(10)); got != -1 {
		t.Errorf("CPU with no samples %v, want -1", got)
	}
	// 2 + 2, then the new process's 1, then 3.
	if s.RejectedDelta != 8 {
		t.Errorf("rejected delta %v, want 8", s.RejectedDelta)
	}
	if s.Peak.RSS != 400 || s.Peak.FDs != -1 {
		t.Errorf("peak %+v, want RSS 400 and fds unknown", s.Peak)
	}
}
