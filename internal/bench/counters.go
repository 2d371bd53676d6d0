package bench

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Counters are the running totals of a shard, or of the whole run once
// merged. They travel from the children in progress messages.
type Counters struct {
	// Target is how many connections the shard opens.
	Target int64 `json:"target"`
	// Open is how many are authenticated now.
	Open int64 `json:"open"`
	// Opened counts successful connections, reconnections included.
	Opened int64 `json:"opened"`
	// Failed counts clients that could not connect (after retries).
	Failed int64 `json:"failed"`
	// Dropped counts connections the server closed during the run.
	Dropped int64 `json:"dropped"`

	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Delivered int64 `json:"delivered"`
	// Refused counts sends answered with an error (rate_limited and
	// unavailable are retried and counted here each time).
	Refused int64 `json:"refused"`
	// Skipped counts sends the pacer could not start on time because the
	// tool itself was saturated: the offered rate was lower than asked.
	Skipped int64 `json:"skipped"`

	// Storm: clients that reconnected after the outage, and that have
	// received every message they must resume.
	Reconnected int64 `json:"reconnected"`
	Resumed     int64 `json:"resumed"`
}

// Add returns the sum of two counter sets.
func (a Counters) Add(b Counters) Counters {
	return Counters{Target: a.Target + b.Target, Open: a.Open + b.Open, Opened: a.Opened + b.Opened,
		Failed: a.Failed + b.Failed, Dropped: a.Dropped + b.Dropped, Sent: a.Sent + b.Sent, Acked: a.Acked + b.Acked,
		Delivered: a.Delivered + b.Delivered, Refused: a.Refused + b.Refused, Skipped: a.Skipped + b.Skipped,
		Reconnected: a.Reconnected + b.Reconnected, Resumed: a.Resumed + b.Resumed}
}

// liveCounters are Counters updated concurrently by a shard's goroutines.
type liveCounters struct {
	target, open, opened, failed, dropped    atomic.Int64
	sent, acked, delivered, refused, skipped atomic.Int64
	reconnected, resumed                     atomic.Int64
}

func (c *liveCounters) snapshot() Counters {
	return Counters{Target: c.target.Load(), Open: c.open.Load(), Opened: c.opened.Load(), Failed: c.failed.Load(),
		Dropped: c.dropped.Load(), Sent: c.sent.Load(), Acked: c.acked.Load(), Delivered: c.delivered.Load(),
		Refused: c.refused.Load(), Skipped: c.skipped.Load(), Reconnected: c.reconnected.Load(), Resumed: c.resumed.Load()}
}

// errorCounts counts failures by kind (an error code, "timeout",
// "http_503"…). Failures are rare next to successes, so a mutex is cheap.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errorCounts) add(kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = make(map[string]int64)
	}
	e.m[kind]++
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.m)
}

// mergeCounts adds b into a (allocating a when nil) and returns it.
func mergeCounts(a, b map[string]int64) map[string]int64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = make(map[string]int64, len(b))
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}
