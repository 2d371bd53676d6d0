package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/cluster"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/metrics"
)

// listener is a bus handler for processes that only use the cluster
// channels: they subscribe to no topic, so nothing arrives here.
type listener struct{}

func (listener) Deliver(bus.Topic, []byte) {}
func (listener) Lost(bus.Topic, bool)      {}
func (listener) Query([]byte) []byte       { return nil }

// ConnectListener connects to the bus as a process that only listens to
// the cluster channels (a router, `floodgate ctl`).
func ConnectListener(ctx context.Context, urls []string, name string, log *slog.Logger) (*bus.NATS, error) {
	return bus.Connect(ctx, listener{}, bus.Options{URLs: urls, Name: name, Logger: log})
}

// RunRouter runs `floodgate router` until ctx ends: it learns the cluster
// from the nodes' heartbeats on the bus and answers GET /v1/route. It keeps
// no state but that view, so any number of routers can run side by side,
// and it keeps answering from its last view while the bus is unreachable.
func RunRouter(ctx context.Context, cfg config.RouterConfig, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	host, _ := os.Hostname()
	name := "router-" + host + "-" + randomHex(3)
	log = log.With("router", name)
	b, err := ConnectListener(ctx, cfg.NATSURLs, name, log)
	if err != nil {
		return err
	}
	defer b.Close()
	nctx, stop := context.WithCancel(context.Background())
	defer stop()
	node, err := cluster.Start(nctx, b, cluster.Options{Interval: cfg.HeartbeatInterval, Logger: log,
		Status: func() cluster.Status { return cluster.Status{Node: name, Router: true, Ready: b.Healthy() == nil} }})
	if err != nil {
		return err
	}
	// gateways is what the router can route to: the alive nodes that are
	// not routers.
	gateways := func() []cluster.Status {
		var out []cluster.Status
		for _, n := range node.Alive() {
			if !n.Router {
				out = append(out, n)
			}
		}
		return out
	}
	m := metrics.New()
	m.GaugeFunc("floodgate_cluster_nodes", "Gateway nodes the router sees alive.", func() float64 { return float64(len(gateways())) })

	mux := http.NewServeMux()
	mux.Handle("GET /v1/route", cluster.NewRouter(node.Alive, cfg.RouteTTL))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	var ops *http.Server
	if cfg.OpsListen != "" {
		omux := http.NewServeMux()
		omux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
		omux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		omux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			// Ready when it has something to answer with: a router with
			// a stale view but nodes in it is still useful.
			n := len(gateways())
			code := http.StatusOK
			if n == 0 {
				code = http.StatusServiceUnavailable
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": n > 0, "nodes": n, "bus": errString(b.Healthy())})
		})
		ops = &http.Server{Addr: cfg.OpsListen, Handler: omux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ops.ListenAndServe() }()
	}
	log.Info("router serving", "listen", ln.Addr().String(), "ops", cfg.OpsListen)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if ops != nil {
		_ = ops.Shutdown(sctx)
	}
	stop()
	node.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
