// Package metrics defines the Prometheus metrics of a Floodgate node. Each
// node owns one Metrics with its own registry (no global registry), so tests
// and embedded servers never collide.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector of a node. Components take the fields they
// update; the zero value is not usable, use New.
type Metrics struct {
	Registry *prometheus.Registry

	Auths        prometheus.Counter
	AuthFailures *prometheus.CounterVec // by error code
	Requests     *prometheus.CounterVec // by op and result ("ok" or an error code)
	LimitHits    *prometheus.CounterVec // by limit name

	MessagesPersisted prometheus.Counter
	Duplicates        prometheus.Counter
	Deliveries        prometheus.Counter // frames queued to client connections by fan-out
	DeliveryDrops     prometheus.Counter // fan-out frames refused by a full or closed connection
	Resyncs           prometheus.Counter // resync events sent to connections
	CatchUpsSkipped   prometheus.Counter // catch-up resyncs a later full sync made unneeded

	BusPublishErrors prometheus.Counter
	BusDrops         prometheus.Counter // messages NATS dropped before we read them
	BusLost          prometheus.Counter // loss reports received from the bus

	StoreLatency *prometheus.HistogramVec // by store method
	StoreErrors  *prometheus.CounterVec   // by store method
	CommitBatch  prometheus.Histogram     // messages per group commit
	CommitTime   prometheus.Histogram     // seconds per group commit

	Closes *prometheus.CounterVec // client connections ended, by close code
}

// New returns a node's metrics, registered in a fresh registry together with
// the Go runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := factory{r}
	m := &Metrics{
		Registry:     r,
		Auths:        f.counter("floodgate_auths_total", "Successful authentications."),
		AuthFailures: f.counterVec("floodgate_auth_failures_total", "Refused authentications, by error code.", "code"),
		Requests:     f.counterVec("floodgate_requests_total", "Client requests, by op and result.", "op", "result"),
		LimitHits:    f.counterVec("floodgate_limit_hits_total", "Requests or connections refused by a limit, by limit.", "limit"),

		MessagesPersisted: f.counter("floodgate_messages_persisted_total", "Messages committed to the store."),
		Duplicates:        f.counter("floodgate_message_duplicates_total", "Sends answered with an existing message (same client_msg_id)."),
		Deliveries:        f.counter("floodgate_deliveries_total", "Event frames queued to client connections by fan-out."),
		DeliveryDrops:     f.counter("floodgate_delivery_drops_total", "Fan-out frames refused by a full or closed connection."),
		Resyncs:           f.counter("floodgate_resyncs_total", "Resync events sent to connections after a possible loss."),
		CatchUpsSkipped:   f.counter("floodgate_catchups_skipped_total", "Catch-up resyncs not sent because the client's subscriptions had settled when it authenticated, or it had fully synced after they did."),

		BusPublishErrors: f.counter("floodgate_bus_publish_errors_total", "Publishes the bus refused (dropped from the fast path)."),
		BusDrops:         f.counter("floodgate_bus_dropped_total", "Messages the bus client dropped because this node did not read them fast enough."),
		BusLost:          f.counter("floodgate_bus_loss_reports_total", "Possible-loss reports from the bus (slow consumer, reconnect)."),

		StoreLatency: f.histogramVec("floodgate_store_seconds", "Store call latency, by method.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "method"),
		StoreErrors: f.counterVec("floodgate_store_errors_total", "Store calls that failed (not counting not-found and conflicts), by method.", "method"),
		CommitBatch: f.histogram("floodgate_store_commit_batch_messages", "Messages per group commit.",
			[]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}),
		Closes: f.counterVec("floodgate_connections_closed_total",
			"Client connections ended, by close code (sent or received; 1006 when the connection broke, \"other\" for codes Floodgate does not define).", "code"),
		CommitTime: f.histogram("floodgate_store_commit_seconds", "Duration of a group commit, fsync included.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}),
	}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// GaugeFunc registers a gauge whose value is read from fn at scrape time.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// CounterFunc registers a counter whose value is read from fn at scrape
// time; fn must never decrease.
func (m *Metrics) CounterFunc(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

type factory struct{ r *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.r.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.r.MustRegister(h)
	return h
}
