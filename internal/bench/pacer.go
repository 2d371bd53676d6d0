package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// pacerQueue bounds the sends waiting for a pacer worker. Beyond it the
// tool is not keeping up, and waiting would silently lower the rate.
const pacerQueue = 4096

// pace calls fire(k) for k = 0, 1, 2… at rate calls per second from now
// until stop is closed, on workers goroutines. It is open-loop: the
// schedule does not wait for replies (a slow server does not slow the
// offered load, which is what a fleet of independent clients does). A call
// that cannot even be queued because every worker is busy is skipped and
// counted, so that a saturated tool shows up in the report instead of as
// a lower rate. pace returns once every started call has returned.
func pace(stop <-chan struct{}, rate float64, workers int, fire func(k uint64), skipped *atomic.Int64) {
	jobs := make(chan uint64, pacerQueue)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				fire(k)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	start := time.Now()
	var k uint64
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		due := uint64(time.Since(start).Seconds() * rate)
		for ; k < due; k++ {
			select {
			case jobs <- k:
			default:
				skipped.Add(1)
			}
		}
		// Sleep until the next call is due, but at least a millisecond so
		// that high rates go out in small batches rather than spinning.
		next := start.Add(time.Duration(float64(k+1) / rate * float64(time.Second)))
		t.Reset(max(time.Until(next), time.Millisecond))
	}
}
