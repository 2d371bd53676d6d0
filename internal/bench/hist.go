package bench

import (
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations in log-linear buckets, HdrHistogram style:
// values below subBuckets nanoseconds are exact, and every power of two
// above is split into subBuckets equal buckets, so any recorded value is
// known to within 1/subBuckets (under 0.8 %). Unlike a list of samples it
// has a fixed size whatever the number of recordings, and unlike a
// percentile summary it merges exactly: the histogram of two processes'
// recordings is the bucket-wise sum of theirs, which is what lets --procs
// report true percentiles of the whole run.
//
// Record is safe for concurrent use and never blocks; the other methods
// must not run concurrently with Record (read a Snapshot instead).
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds; wraps only after ~584 years of latency
	min    atomic.Int64  // math.MaxInt64 when empty
	max    atomic.Int64
}

const (
	// subBits sets the precision: 2^subBits buckets per power of two.
	subBits    = 7
	subBuckets = 1 << subBits
	// maxExp bounds the range: values below 2^(maxExp+subBits+1) ns
	// (about 4.9 hours) are bucketed; longer ones count in the last bucket
	// (the exact maximum is kept separately).
	maxExp     = 36
	numBuckets = subBuckets + (maxExp+1)*subBuckets
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf returns the bucket index of v nanoseconds (v >= 0).
func bucketOf(v int64) int {
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1 // v>>e is in [subBuckets, 2*subBuckets)
	if e > maxExp {
		return numBuckets - 1
	}
	return subBuckets + e*subBuckets + int(v>>e) - subBuckets
}

// bucketBounds returns the smallest and largest value of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subBuckets {
		return int64(i), int64(i)
	}
	e := (i - subBuckets) / subBuckets
	m := int64((i-subBuckets)%subBuckets + subBuckets)
	return m << e, (m+1)<<e - 1
}

// Record adds one duration; negative durations (clock steps between
// processes) count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)].Add(1)
	h.sum.Add(uint64(v))
	for {
		cur := h.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Snapshot returns the histogram's content in its serialisable, mergeable
// form. It may run concurrently with Record; recordings made meanwhile may
// be partly included, but Count is always the sum of the buckets taken (a
// separate counter read first would disagree with them under load).
func (h *Histogram) Snapshot() HistData {
	d := HistData{SumNS: h.sum.Load(), MaxNS: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			d.Buckets = append(d.Buckets, [2]uint64{uint64(i), c})
			d.Count += c
		}
	}
	if d.Count > 0 {
		d.MinNS = h.min.Load()
	}
	return d
}

// HistData is a histogram as it travels between processes and into the
// JSON report: the non-empty buckets as [index, count] pairs, ascending.
type HistData struct {
	Count   uint64      `json:"count"`
	SumNS   uint64      `json:"sum_ns"`
	MinNS   int64       `json:"min_ns"`
	MaxNS   int64       `json:"max_ns"`
	Buckets [][2]uint64 `json:"buckets,omitempty"`
}

// Merge returns the histogram of the recordings of d and o together.
func (d HistData) Merge(o HistData) HistData {
	if o.Count == 0 {
		return d
	}
	if d.Count == 0 {
		return o
	}
	r := HistData{Count: d.Count + o.Count, SumNS: d.SumNS + o.SumNS,
		MinNS: min(d.MinNS, o.MinNS), MaxNS: max(d.MaxNS, o.MaxNS)}
	r.Buckets = make([][2]uint64, 0, max(len(d.Buckets), len(o.Buckets)))
	i, j := 0, 0
	for i < len(d.Buckets) || j < len(o.Buckets) {
		switch {
		case j == len(o.Buckets) || (i < len(d.Buckets) && d.Buckets[i][0] < o.Buckets[j][0]):
			r.Buckets = append(r.Buckets, d.Buckets[i])
			i++
		case i == len(d.Buckets) || o.Buckets[j][0] < d.Buckets[i][0]:
			r.Buckets = append(r.Buckets, o.Buckets[j])
			j++
		default:
			r.Buckets = append(r.Buckets, [2]uint64{d.Buckets[i][0], d.Buckets[i][1] + o.Buckets[j][1]})
			i++
			j++
		}
	}
	return r
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recordings lie: the highest value of the bucket holding the recording of
// rank ceil(q*Count), clamped to the recorded minimum and maximum so that
// the 0th and 100th percentiles are exact. It is 0 when empty.
func (d HistData) Quantile(q float64) time.Duration {
	if d.Count == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(d.MinNS)
	}
	q = min(q, 1)
	rank := uint64(math.Ceil(q * float64(d.Count)))
	rank = max(rank, 1)
	var seen uint64
	for _, b := range d.Buckets {
		seen += b[1]
		if seen >= rank {
			_, hi := bucketBounds(int(b[0]))
			return time.Duration(min(max(hi, d.MinNS), d.MaxNS))
		}
	}
	return time.Duration(d.MaxNS)
}

// Mean returns the average recording.
func (d HistData) Mean() time.Duration {
	if d.Count == 0 {
		return 0
	}
	return time.Duration(d.SumNS / d.Count)
}

// Validate checks that d is well formed (as read from another process).
func (d HistData) Validate() error {
	var n uint64
	prev := -1
	for _, b := range d.Buckets {
		if int(b[0]) <= prev || b[0] >= numBuckets {
			return fmt.Errorf("histogram: bucket index %d out of order or range", b[0])
		}
		prev = int(b[0])
		n += b[1]
	}
	if n != d.Count {
		return fmt.Errorf("histogram: buckets hold %d recordings, count says %d", n, d.Count)
	}
	return nil
}

// Summary is what the report shows of a histogram, in milliseconds.
type Summary struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize computes the report's percentiles.
func (d HistData) Summarize() Summary {
	ms := func(t time.Duration) float64 { return float64(t) / 1e6 }
	return Summary{Count: d.Count, Min: ms(time.Duration(d.MinNS)), Mean: ms(d.Mean()),
		P50: ms(d.Quantile(0.50)), P90: ms(d.Quantile(0.90)), P99: ms(d.Quantile(0.99)),
		P999: ms(d.Quantile(0.999)), Max: ms(time.Duration(d.MaxNS))}
}
