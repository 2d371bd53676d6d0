// Package server assembles a Floodgate node from its parts — store, bus,
// gateway, transport, HTTP APIs and the ops endpoints — according to a
// config.Config. It is the embedding API: cmd/floodgate only parses
// configuration and calls New and Run.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/internal/api"
	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/cluster"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/gateway"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/postgres"
	"github.com/floodgate/floodgate/internal/store/sqlite"
	"github.com/floodgate/floodgate/internal/transport"
	"github.com/floodgate/floodgate/protocol"
)

// AdminTokenFile is the name, inside the data directory, of the file that
// keeps a generated admin token, so the CLI on the same machine finds it.
const AdminTokenFile = "admin-token"

// Server is one running Floodgate node.
type Server struct {
	cfg  config.Config
	log  *slog.Logger
	m    *metrics.Metrics
	st   store.Store
	nats *bus.Embedded
	bus  *bus.NATS
	gw   *gateway.Gateway
	tr   *transport.Server

	node     *cluster.Node
	nodeStop context.CancelFunc
	cpu      cpuMeter
	unready  atomic.Int32 // failed readiness checks in a row
	// draining refuses new connections (503: the SDK tries its second
	// choice) and marks the node so routers skip it.
	draining  atomic.Bool
	drainReq  chan struct{}
	drainOnce sync.Once

	httpSrv, opsSrv *http.Server
	ln, opsLn       net.Listener
	adminToken      string
	tokenGenerated  bool
}

// Option adjusts a node beyond what Config can say; tests use them to
// inject faults.
type Option func(*options)

type options struct {
	wrapBus func(b bus.Bus, h bus.Handler) bus.Bus
}

// WithBusWrapper makes the gateway use wrap(b, h) instead of the bus b,
// where h is the gateway's bus handler: a test can drop publishes and report
// the loss as NATS would.
func WithBusWrapper(wrap func(b bus.Bus, h bus.Handler) bus.Bus) Option {
	return func(o *options) { o.wrapBus = wrap }
}

// New builds a node from cfg and binds its listeners, but serves nothing
// until Run. On error everything already started is stopped.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (s *Server, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		host, _ := os.Hostname()
		cfg.NodeID = host + "-" + randomHex(3)
	}
	srv := &Server{cfg: cfg, log: log.With("node", cfg.NodeID), m: metrics.New(), drainReq: make(chan struct{})}
	s = srv
	defer func() {
		if err != nil {
			srv.closeAll() // s is nil by now
		}
	}()
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	if err := s.loadAdminToken(); err != nil {
		return nil, err
	}

	l := cfg
	var catchUp time.Duration
	if len(cfg.NATSURLs) > 0 {
		catchUp = cfg.CatchUpDelay
	}
	s.gw = gateway.New(gateway.Options{
		Node: cfg.NodeID, Store: s.st, Metrics: s.m, Logger: s.log,
		Limits: gateway.Limits{MaxFrameBytes: l.MaxFrameBytes, MaxBodyBytes: l.MaxBodyBytes, MaxRooms: l.MaxRooms,
			MaxSyncConvs: l.MaxSyncConvs, MaxGroupMembers: l.MaxGroupMembers, MaxPresence: l.MaxPresence,
			PresenceMembers: l.PresenceMembers, Rate: l.Rate, Burst: l.Burst},
		AuthTimeout: cfg.AuthTimeout, MaxPendingAuth: cfg.MaxPendingAuth, PingInterval: cfg.PingInterval, CatchUp: catchUp,
		Nodes: func() int { return len(s.gateways()) },
	})
	if err := s.connectBus(ctx); err != nil {
		return nil, err
	}
	var b bus.Bus = s.bus
	if o.wrapBus != nil {
		b = o.wrapBus(b, s.gw)
	}
	s.gw.Start(b)

	s.tr = transport.New(s.gw, transport.Options{
		MaxConns: cfg.MaxConns, MaxFrameBytes: cfg.MaxFrameBytes, QueueBytes: cfg.SendQueueBytes,
		FrameWorkers: cfg.FrameWorkers, Admit: s.gw.Admit,
		WriteTimeout: cfg.WriteTimeout, SlowConsumerCode: protocol.CloseSlowConsumer,
		OversizeFrame: s.gw.OversizeFrame(), Logger: s.log,
	})
	s.registerTransportMetrics()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "node draining: connect to another node", http.StatusServiceUnavailable)
			return
		}
		s.tr.ServeHTTP(w, r)
	})
	api.Register(mux, api.Options{Gateway: s.gw, Store: s.st, AdminToken: s.adminToken,
		SecretGrace: cfg.SecretGrace, Logger: s.log})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	// No TCP keep-alive on client connections: the protocol's ping finds a
	// dead peer within two intervals, and the keep-alive options would cost
	// four setsockopt calls on every accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	if s.ln, err = lc.Listen(context.Background(), "tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if !cfg.TLSHybridKEX {
			tc.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		}
		// The transport's listener lets its event loops take TLS
		// connections over after the handshake, as they do plain ones.
		s.ln = transport.NewTLSListener(s.ln, tc)
	}
	if err := s.joinCluster(); err != nil {
		return nil, err
	}
	mux.Handle("GET /v1/route", cluster.NewRouter(s.node.Alive, cfg.RouteTTL))
	if cfg.OpsListen != "" {
		if s.opsLn, err = net.Listen("tcp", cfg.OpsListen); err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.OpsListen, err)
		}
		s.opsSrv = &http.Server{Handler: s.opsHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

func (s *Server) openStore(ctx context.Context) error {
	url := s.cfg.Store
	onCommit := func(n int, took time.Duration) {
		s.m.CommitBatch.Observe(float64(n))
		s.m.CommitTime.Observe(took.Seconds())
	}
	var (
		st  store.Store
		err error
	)
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		st, err = postgres.Open(ctx, postgres.Options{URL: url, MaxBatch: s.cfg.AppendBatch,
			QueueSize: s.cfg.AppendQueue, Logger: s.log, OnCommit: onCommit})
	default:
		path := strings.TrimPrefix(url, "sqlite:")
		if url == "" {
			if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			path = filepath.Join(s.cfg.DataDir, "floodgate.db")
		}
		st, err = sqlite.Open(ctx, sqlite.Options{Path: path, Sync: s.cfg.SQLiteSync, MaxBatch: s.cfg.AppendBatch,
			CommitWindow: s.cfg.CommitWindow, QueueSize: s.cfg.AppendQueue, Logger: s.log, OnCommit: onCommit})
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if p, ok := st.(store.Pooled); ok {
		s.m.StorePools(p.PoolStats)
	}
	s.st = store.Observed(st, func(method string, took time.Duration, err error) {
		s.m.StoreLatency.WithLabelValues(method).Observe(took.Seconds())
		if err != nil {
			s.m.StoreErrors.WithLabelValues(method).Inc()
		}
	})
	return nil
}

func (s *Server) connectBus(ctx context.Context) error {
	o := bus.Options{URLs: s.cfg.NATSURLs, Name: "floodgate-" + s.cfg.NodeID, Logger: s.log,
		SubscribeRate: s.cfg.SubscribeRate,
		PerAppUsers:   s.cfg.UserInterest == "app",
		OnDrop:        func(n int) { s.m.BusDrops.Add(float64(n)) }}
	if len(s.cfg.NATSURLs) == 0 {
		e, err := bus.StartEmbedded(s.cfg.NATSListen)
		if err != nil {
			return err
		}
		s.nats = e
		o.InProcess = e
		// The cap protects a NATS cluster from interest churn; an
		// in-process server has no peers to flood.
		o.SubscribeRate = math.MaxInt32
		o.PerApp = true
	}
	b, err := bus.Connect(ctx, s.gw, o)
	if err != nil {
		return err
	}
	s.bus = b
	return nil
}

// loadAdminToken uses the configured token, or the one kept in the data
// directory, or generates and keeps a new one.
func (s *Server) loadAdminToken() error {
	if s.cfg.AdminToken != "" {
		s.adminToken = s.cfg.AdminToken
		return nil
	}
	path := filepath.Join(s.cfg.DataDir, AdminTokenFile)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		s.adminToken = strings.TrimSpace(string(b))
		return nil
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	s.adminToken = randomHex(24)
	if err := os.WriteFile(path, []byte(s.adminToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	s.tokenGenerated = true
	return nil
}

func (s *Server) registerTransportMetrics() {
	st := s.tr.Stats
	s.m.GaugeFunc("floodgate_connections", "Open client connections.", func() float64 { return float64(st().Conns) })
	s.m.CounterFunc("floodgate_connections_accepted_total", "Client connections accepted.", func() float64 { return float64(st().Accepted) })
	s.m.CounterFunc("floodgate_connections_rejected_total", "Upgrades refused at max-conns.", func() float64 { return float64(st().Rejected) })
	s.m.CounterFunc("floodgate_frames_in_total", "Complete messages received from clients.", func() float64 { return float64(st().FramesIn) })
	s.m.CounterFunc("floodgate_frames_out_total", "Frames written to clients.", func() float64 { return float64(st().FramesOut) })
	s.m.CounterFunc("floodgate_bytes_in_total", "Bytes received from clients, frame headers included.", func() float64 { return float64(st().BytesIn) })
	s.m.CounterFunc("floodgate_bytes_out_total", "Bytes written to clients, frame headers included.", func() float64 { return float64(st().BytesOut) })
	s.m.CounterFunc("floodgate_slow_consumer_closes_total", "Connections closed because their outbound queue was full.", func() float64 { return float64(st().SlowConsumerCloses) })
	s.m.CounterFunc("floodgate_oversize_closes_total", "Connections closed for a frame over max-frame-bytes.", func() float64 { return float64(st().OversizeCloses) })
	s.m.CounterFunc("floodgate_idle_closes_total", "Connections closed for not authenticating or not pinging in time.", func() float64 { return float64(st().IdleCloses) })
	s.m.CounterFunc("floodgate_write_errors_total", "Connections closed by a failed or timed-out write.", func() float64 { return float64(st().WriteErrors) })
}

// Addr is the client and API listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// OpsAddr is the ops listener's address, nil when disabled.
func (s *Server) OpsAddr() net.Addr {
	if s.opsLn == nil {
		return nil
	}
	return s.opsLn.Addr()
}

// URL is the WebSocket URL clients connect to.
func (s *Server) URL() string {
	if s.cfg.AdvertiseURL != "" {
		return s.cfg.AdvertiseURL
	}
	scheme := "ws"
	if s.cfg.TLSCert != "" {
		scheme = "wss"
	}
	return scheme + "://" + dialable(s.ln.Addr()) + "/v1/ws"
}

// HTTPURL is the base URL of the HTTP APIs.
func (s *Server) HTTPURL() string {
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + dialable(s.ln.Addr())
}

// AdminToken is the admin API's bearer token; generated reports whether
// it was generated by this start.
func (s *Server) AdminToken() (token string, generated bool) { return s.adminToken, s.tokenGenerated }

// Run serves until ctx ends, then shuts down gracefully: it stops accepting
// connections, tells every client to reconnect (4000, spread over a few
// seconds), waits for them to close, and flushes the store.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.httpSrv.Serve(s.ln) }()
	if s.opsSrv != nil {
		go func() { errc <- s.opsSrv.Serve(s.opsLn) }()
	}
	s.log.Info("floodgate serving", "url", s.URL(), "api", s.HTTPURL(), "ops", s.OpsAddr())
	var err error
	select {
	case <-ctx.Done():
		s.drain()
	case <-s.drainReq:
		s.drain()
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	if serr := s.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// RequestDrain makes Run drain the node and return, as SIGTERM does.
func (s *Server) RequestDrain() {
	s.drainOnce.Do(func() { close(s.drainReq) })
}

// drain moves the node's clients to other nodes over the drain window. With
// no other node to take them it does nothing: Shutdown then asks them to
// come back here after a restart.
func (s *Server) drain() {
	s.draining.Store(true)
	s.node.Announce()
	others := 0
	for _, n := range s.gateways() {
		if n.Node != s.cfg.NodeID && n.Accepting() {
			others++
		}
	}
	if others == 0 {
		return
	}
	s.log.Info("draining", "connections", s.gw.Sessions(), "window", s.cfg.DrainWindow, "other_nodes", others)
	// One heartbeat for the routers to stop sending clients here.
	time.Sleep(s.cfg.HeartbeatInterval)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainWindow+s.cfg.ShutdownTimeout)
	defer cancel()
	moved := s.gw.Drain(ctx, s.cfg.DrainWindow)
	s.log.Info("drained", "moved", moved)
}

// Shutdown stops the node within the configured shutdown timeout.
func (s *Server) Shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.log.Info("shutting down", "connections", s.gw.Sessions())
	// Stop the HTTP listener first so no new WebSocket arrives, then ask
	// every client to come back later, spread over a window so a restart
	// does not become a reconnect storm.
	_ = s.ln.Close()
	s.gw.Shutdown(protocol.CloseShutdown, "server shutting down", 5*time.Second)
	err := s.tr.Shutdown(ctx)
	_ = s.httpSrv.Shutdown(ctx)
	s.closeAll()
	return err
}

// closeAll releases whatever was started, in reverse order.
func (s *Server) closeAll() {
	if s.opsSrv != nil {
		_ = s.opsSrv.Close()
	} else if s.opsLn != nil {
		_ = s.opsLn.Close()
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.nodeStop != nil {
		s.nodeStop()
		s.node.Wait()
	}
	if s.gw != nil {
		s.gw.Close()
	}
	if s.bus != nil {
		_ = s.bus.Close()
	}
	if s.nats != nil {
		s.nats.Close()
	}
	if s.st != nil {
		if err := s.st.Close(); err != nil {
			s.log.Error("close store", "err", err)
		}
	}
}

func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
