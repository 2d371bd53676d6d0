package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/internal/store"
)

// StorePools registers the connection-pool metrics of a store; fn is read
// at scrape time.
func (m *Metrics) StorePools(fn func() []store.PoolStats) {
	m.Registry.MustRegister(poolCollector{fn})
}

var (
	poolConns = prometheus.NewDesc("floodgate_store_pool_conns",
		"Store connections, by pool and state (in_use, idle, max).", []string{"pool", "state"}, nil)
	poolWaits = prometheus.NewDesc("floodgate_store_pool_waits_total",
		"Store calls that found no idle connection in the pool and waited for one.", []string{"pool"}, nil)
	poolWaitSeconds = prometheus.NewDesc("floodgate_store_pool_wait_seconds_total",
		"Time store calls spent waiting for a connection of the pool.", []string{"pool"}, nil)
)

type poolCollector struct{ fn func() []store.PoolStats }

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConns
	ch <- poolWaits
	ch <- poolWaitSeconds
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.fn() {
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(p.InUse), p.Name, "in_use")
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(p.Idle), p.Name, "idle")
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(p.MaxConns), p.Name, "max")
		ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(p.Waits), p.Name)
		ch <- prometheus.MustNewConstMetric(poolWaitSeconds, prometheus.CounterValue, p.WaitTime.Seconds(), p.Name)
	}
}
