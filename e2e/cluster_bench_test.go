package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/client"
)

// BenchmarkClusterCrossNode measures messages between clients on different
// nodes of a 3-node cluster with PostgreSQL: senders on node0, receivers on
// node1, one direct conversation per pair. It reports acknowledged
// messages per second and send→deliver latency (the sender stamps its
// clock into the body; sender and receiver share this process's clock).
//
//	FLOODGATE_TEST_POSTGRES=… go test -run '^$' -bench ClusterCrossNode -benchtime 1x ./e2e/
//
// Each sub-benchmark is one measurement: "max" sends back to back from
// every pair, "paced" sends a fixed total rate.
func BenchmarkClusterCrossNode(b *testing.B) {
	c := startCluster(b, 3)
	const pairs = 50
	type pair struct {
		send *client.Client
		recv *client.Client
		conv string
	}
	var ps []pair
	lat := make(chan time.Duration, 1<<20)
	for i := range pairs {
		s := c.dial(b, fmt.Sprint("s", i), c.nodes[0].url())
		r := c.dial(b, fmt.Sprint("r", i), c.nodes[1].url())
		d, err := s.Direct(ctxT(b), fmt.Sprint("r", i))
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, pair{s, r, d.ID})
		go func() {
			for ev := range r.Events() {
				if ev.Type == client.EventMessage {
					var sent int64
					if json.Unmarshal(ev.Message.Body, &sent) == nil && sent > 0 {
						lat <- time.Since(time.Unix(0, sent))
					}
				}
			}
		}()
		go func() {
			for range s.Events() {
			}
		}()
	}
	run := func(b *testing.B, dur time.Duration, every time.Duration) {
		for len(lat) > 0 {
			<-lat
		}
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		acked := 0
		start := time.Now()
		for _, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var tick <-chan time.Time
				if every > 0 {
					t := time.NewTicker(every)
					defer t.Stop()
					tick = t.C
				}
				for ctx.Err() == nil {
					if tick != nil {
						select {
						case <-tick:
						case <-ctx.Done():
							return
						}
					}
					if _, err := p.send.Send(ctx, p.conv, time.Now().UnixNano()); err != nil {
						return
					}
					mu.Lock()
					acked++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		waitFor(b, "deliveries", func() bool { return len(lat) >= acked })
		ds := make([]time.Duration, 0, acked)
		for len(lat) > 0 {
			ds = append(ds, <-lat)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		q := func(f float64) float64 { return float64(ds[int(f*float64(len(ds)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(acked)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(q(0.5), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
		b.ReportMetric(q(1), "max-ms")
	}
	b.Run("max", func(b *testing.B) {
		for b.Loop() {
			run(b, 10*time.Second, 0)
		}
	})
	b.Run("paced-1000/s", func(b *testing.B) {
		for b.Loop() {
			run(b, 10*time.Second, pairs*time.Second/1000)
		}
	})
}
