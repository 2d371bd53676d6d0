package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueWithinPrecision(t *testing.T) {
	values := []int64{0, 1, 127, 128, 129, 255, 256, 1000, 12345, 1 << 20, 999_999_999, 1<<43 + 12345}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, int64(math.Exp(r.Float64()*30))) // up to the end of the range
	}
	for _, v := range values {
		i := bucketOf(v)
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= subBuckets && float64(hi-lo+1) > float64(lo)/subBuckets+1 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its values", i, lo, hi, subBuckets)
		}
		if i > 0 {
			_, prevHi := bucketBounds(i - 1)
			if prevHi != lo-1 {
				t.Fatalf("buckets %d and %d leave a gap or overlap: ..%d, %d..", i-1, i, prevHi, lo)
			}
		}
	}
	if i := bucketOf(math.MaxInt64); i != numBuckets-1 {
		t.Fatalf("huge value in bucket %d, want the last (%d)", i, numBuckets-1)
	}
}

// exactQuantile is the reference: the value of rank ceil(q*n) in sorted order.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func TestQuantilesMatchExactWithinPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	h := NewHistogram()
	var samples []int64
	for range 50000 {
		// Log-normal around a millisecond, like latencies.
		v := int64(math.Exp(r.NormFloat64()*1.2 + math.Log(1e6)))
		samples = append(samples, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(samples)
	d := h.Snapshot()
	for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		got, want := int64(d.Quantile(q)), exactQuantile(samples, q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/subBuckets {
			t.Errorf("q%.4f = %d, exact %d: off by %.2f%%", q, got, want, rel*100)
		}
	}
	if time.Duration(d.MinNS) != time.Duration(samples[0]) || d.MaxNS != samples[len(samples)-1] {
		t.Errorf("min/max = %d/%d, want %d/%d", d.MinNS, d.MaxNS, samples[0], samples[len(samples)-1])
	}
	if d.Quantile(0) != time.Duration(samples[0]) || d.Quantile(1) != time.Duration(samples[len(samples)-1]) {
		t.Error("the 0th and 100th percentiles must be the exact minimum and maximum")
	}
}

func TestMergeEqualsRecordingEverythingInOne(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	parts := []*Histogram{NewHistogram(), NewHistogram(), NewHistogram()}
	all := NewHistogram()
	for i := range 30000 {
		v := time.Duration(r.Int64N(int64(5 * time.Second)))
		if i%7 == 0 {
			v = time.Duration(r.Int64N(200)) // the exact region too
		}
		parts[i%len(parts)].Record(v)
		all.Record(v)
	}
	var merged HistData
	for _, p := range parts {
		merged = merged.Merge(p.Snapshot())
	}
	if want := all.Snapshot(); !reflect.DeepEqual(merged, want) {
		t.Fatalf("merge differs from one histogram of everything:\nmerged count %d sum %d\nall    count %d sum %d",
			merged.Count, merged.SumNS, want.Count, want.SumNS)
	}
	if err := merged.Validate(); err != nil {
		t.Fatal(err)
	}
	// Order and empty operands do not matter.
	a, b := parts[0].Snapshot(), parts[1].Snapshot()
	if !reflect.DeepEqual(a.Merge(b), b.Merge(a)) {
		t.Error("merge is not commutative")
	}
	if !reflect.DeepEqual(a.Merge(HistData{}), a) || !reflect.DeepEqual(HistData{}.Merge(a), a) {
		t.Error("merging an empty histogram changes the other")
	}
}

// The percentiles of merged histograms are those of all the recordings,
// not an average of each part's percentiles: a slow part must show.
func TestMergedPercentilesAreNotAveraged(t *testing.T) {
	fast, slow := NewHistogram(), NewHistogram()
	for range 990 {
		fast.Record(time.Millisecond)
	}
	for range 10 {
		slow.Record(time.Second)
	}
	m := fast.Snapshot().Merge(slow.Snapshot())
	if p := m.Quantile(0.995); p < 990*time.Millisecond {
		t.Errorf("p99.5 of 990×1ms + 10×1s = %v, want about 1s", p)
	}
	if p := m.Quantile(0.5); p > 1010*time.Microsecond {
		t.Errorf("p50 = %v, want about 1ms", p)
	}
}

func TestHistogramEdges(t *testing.T) {
	var empty HistData
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 || empty.Summarize().Count != 0 {
		t.Error("an empty histogram must read as zeros")
	}
	h := NewHistogram()
	h.Record(-5 * time.Millisecond) // a clock step between processes
	h.Record(3 * time.Millisecond)
	d := h.Snapshot()
	if d.MinNS != 0 || d.Quantile(1) != 3*time.Millisecond {
		t.Errorf("min %d, max %v: a negative duration must count as zero", d.MinNS, d.Quantile(1))
	}
	s := d.Summarize()
	if s.Count != 2 || s.Max != 3 || s.Mean != 1.5 {
		t.Errorf("summary %+v, want count 2, max 3 ms, mean 1.5 ms", s)
	}
	// A corrupt histogram from another process is detected.
	bad := d
	bad.Count++
	if bad.Validate() == nil {
		t.Error("a count that does not match the buckets must not validate")
	}
	bad = d
	bad.Buckets = [][2]uint64{{uint64(numBuckets), 2}}
	if bad.Validate() == nil {
		t.Error("a bucket out of range must not validate")
	}
}

func TestHistDataSurvivesJSON(t *testing.T) {
	h := NewHistogram()
	for i := range 1000 {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	d := h.Snapshot()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back HistData
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Fatal("histogram changed through JSON")
	}
}

// A snapshot taken while recordings go on must still validate: a report
// once failed with "buckets hold N recordings, count says M".
func TestHistogramSnapshotDuringRecordsIsConsistent(t *testing.T) {
	h := NewHistogram()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				h.Record(time.Duration(i%5000) * time.Microsecond)
			}
		}
	}()
	for range 200 {
		if err := h.Snapshot().Validate(); err != nil {
			close(stop)
			<-done
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
}
