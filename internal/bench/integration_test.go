package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/server"
)

// These tests run every scenario for about a second, with a handful of
// clients, against an in-process server: they are the bench's smoke test
// in CI. They check that each run completes, loses and duplicates
// nothing, and writes a JSON report that parses; never how fast anything
// was.

const testAdminToken = "bench-test-admin"

// testNode is an in-process Floodgate server that can be restarted on the
// same ports (the storm scenario).
type testNode struct {
	t      testing.TB
	mu     sync.Mutex
	cfg    config.Config
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
}

func startTestNode(t testing.TB, mutate func(*config.Config)) *testNode {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.OpsListen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.AdminToken = testAdminToken
	cfg.SQLiteSync = "normal"
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	n := &testNode{t: t, cfg: cfg}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	// Later starts reuse the ports the first one got.
	n.cfg.Listen, n.cfg.OpsListen = n.srv.Addr().String(), n.srv.OpsAddr().String()
	t.Cleanup(func() { _ = n.stop() })
	return n
}

func (n *testNode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("BENCH_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, n.cfg, log)
	if err != nil {
		cancel()
		return err
	}
	n.srv, n.cancel, n.done = srv, cancel, make(chan error, 1)
	go func() { n.done <- srv.Run(ctx) }()
	return nil
}

// stop shuts the server down gracefully, as SIGTERM does.
func (n *testNode) stop() error {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		n.t.Error("server did not shut down")
		return nil
	}
}

// restart is the storm's outage: stop, then start again on the same ports
// and data.
func (n *testNode) restart(ctx context.Context) error {
	if err := n.stop(); err != nil {
		return err
	}
	for {
		err := n.start()
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond) // the port may take a moment to free
	}
}

func (n *testNode) url() string { return n.srv.URL() }
func (n *testNode) ops() string { return "http://" + n.srv.OpsAddr().String() }

// config returns a bench configuration against n that creates its own
// app through the admin API.
func (n *testNode) config(t *testing.T, p Plan) Config {
	p.URLs = []string{n.url()}
	p.TLSInsecure = true
	p.Duration = max(p.Duration, time.Second)
	p.SetupTimeout = 30 * time.Second
	p.DrainTimeout = 5 * time.Second
	p.Retries = 3
	return Config{Plan: p, AdminURL: n.srv.HTTPURL(), AdminToken: testAdminToken, OpsURLs: []string{n.ops()},
		Command: "floodgate bench " + p.Scenario + " (test)", JSONPath: filepath.Join(t.TempDir(), "report.json")}
}

// runOK runs the bench and checks what every run must satisfy.
func runOK(t *testing.T, cfg Config) *Report {
	t.Helper()
	var out, errs bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &lockedWriter{w: &errs}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v\n--- stdout\n%s\n--- stderr\n%s", err, out.String(), errs.String())
	}
	if testing.Verbose() {
		t.Logf("\n%s", out.String())
	}
	table := out.String()
	if !strings.HasPrefix(table, cfg.Command+"\n") || !strings.Contains(table, "result: OK") {
		t.Errorf("table does not echo the command or say OK:\n%s", table)
	}
	if strings.Contains(table, "\r") {
		t.Error("the live line was printed to a non-terminal")
	}
	b, err := os.ReadFile(cfg.JSONPath)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("the JSON report does not parse: %v", err)
	}
	if !back.OK || back.Scenario != cfg.Plan.Scenario || back.Plan.Secret != "" {
		t.Errorf("JSON report: ok %v, scenario %q, secret %q", back.OK, back.Scenario, back.Plan.Secret)
	}
	if back.Tally.Lost != 0 || back.Tally.Duplicates != 0 || back.Counters.Failed != 0 {
		t.Errorf("tally %+v, %d failed connections", back.Tally, back.Counters.Failed)
	}
	if len(back.Servers) != 1 || back.Servers[0].Base.RSS <= 0 {
		t.Errorf("the server's metrics were not read: %+v", back.Servers)
	}
	return rep
}

// lockedWriter lets the shards and the coordinator share a buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestScenarioIdle(t *testing.T) {
	t.Parallel()
	n := startTestNode(t, nil)
	cfg := n.config(t, Plan{Scenario: ScenarioIdle, Conns: 8, Duration: 1500 * time.Millisecond})
	cfg.ForceGC = true
	rep := runOK(t, cfg)
	if rep.Idle == nil || rep.Idle.Conns != 8 || rep.Counters.Opened != 8 {
		t.Fatalf("idle: %+v, counters %+v", rep.Idle, rep.Counters)
	}
	if rep.Idle.RSSPerConn == nil || rep.Idle.GoroutinesPerConn == nil {
		t.Error("no per-connection figures although the server's metrics were readable")
	}
	if h := rep.Hists[histHandshake]; h.Count != 8 {
		t.Errorf("%d handshakes timed, want 8", h.Count)
	}
	if rep.Servers[0].Loaded.Conns != 8 {
		t.Errorf("the server held %v connections when loaded, want 8", rep.Servers[0].Loaded.Conns)
	}
}

func TestScenarioConnectTLSResume(t *testing.T) {
	t.Parallel()
	cert, key := writeTestCert(t)
	n := startTestNode(t, func(c *config.Config) { c.TLSCert, c.TLSKey = cert, key })
	cfg := n.config(t, Plan{Scenario: ScenarioConnect, Conns: 6, TLS: true, Resume: true})
	rep := runOK(t, cfg)
	if len(rep.Waves) != 2 {
		t.Fatalf("%d waves, want 2", len(rep.Waves))
	}
	first, second := rep.Waves[0], rep.Waves[1]
	if first.Conns != 6 || first.TLSFull != 6 || first.TLSResume != 0 {
		t.Errorf("first wave %+v: want 6 full handshakes", first.Wave)
	}
	if second.Conns != 6 || second.TLSResume != 6 {
		t.Errorf("second wave %+v: want 6 resumed TLS sessions", second.Wave)
	}
	// Each user is in two direct conversations, each holding one message.
	if second.Synced != 12 {
		t.Errorf("the resume syncs fetched %d messages, want 12", second.Synced)
	}
}

func TestScenarioDirect(t *testing.T) {
	t.Parallel()
	n := startTestNode(t, nil)
	rep := runOK(t, n.config(t, Plan{Scenario: ScenarioDirect, Pairs: 3, Rate: 60}))
	c := rep.Counters
	if c.Acked == 0 || c.Acked != c.Sent {
		t.Fatalf("sent %d, acked %d", c.Sent, c.Acked)
	}
	// Every message reaches both connections of its pair.
	if rep.Tally.Expected != uint64(2*c.Acked) || c.Delivered != 2*c.Acked {
		t.Errorf("expected %d deliveries, got %d, for %d messages", rep.Tally.Expected, c.Delivered, c.Acked)
	}
	if rep.Latency[histAck].Count != uint64(c.Acked) || rep.Latency[histDeliver].Count != uint64(c.Delivered) {
		t.Errorf("latencies: %d acks and %d deliveries timed", rep.Latency[histAck].Count, rep.Latency[histDeliver].Count)
	}
}

// The room runs over two shards speaking the worker protocol over pipes,
// as --procs 2 does over a child's stdin and stdout.
func TestScenarioRoomTwoShards(t *testing.T) {
	t.Parallel()
	n := startTestNode(t, nil)
	cfg := n.config(t, Plan{Scenario: ScenarioRoom, Members: 7, Senders: 2, Rate: 30, Procs: 2})
	cfg.InProcessShards = true
	rep := runOK(t, cfg)
	c := rep.Counters
	if rep.Tool.Procs != 2 || c.Target != 7 {
		t.Fatalf("%d shards, %d clients", rep.Tool.Procs, c.Target)
	}
	if c.Acked == 0 || rep.Tally.Expected != uint64(7*c.Acked) {
		t.Errorf("%d messages acknowledged, %d deliveries expected: want 7 members each", c.Acked, rep.Tally.Expected)
	}
}

func TestScenarioGroup(t *testing.T) {
	t.Parallel()
	n := startTestNode(t, nil)
	rep := runOK(t, n.config(t, Plan{Scenario: ScenarioGroup, Groups: 2, Members: 3, Rate: 40}))
	c := rep.Counters
	if c.Acked == 0 || rep.Tally.Expected != uint64(3*c.Acked) {
		t.Errorf("%d messages acknowledged, %d deliveries expected: want 3 members each", c.Acked, rep.Tally.Expected)
	}
}

func TestScenarioStorm(t *testing.T) {
	t.Parallel()
	n := startTestNode(t, nil)
	cfg := n.config(t, Plan{Scenario: ScenarioStorm, Conns: 4, Duration: 40 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond})
	cfg.Outage = n.restart
	rep := runOK(t, cfg)
	st := rep.Storm
	if st == nil || st.Clients != 4 || st.Lost != 4 || st.Reconnected != 4 || st.Resumed != 4 {
		t.Fatalf("storm: %+v", st)
	}
	if st.AllConnectedSeconds <= 0 || st.AllResumedSeconds < st.AllConnectedSeconds {
		t.Errorf("recovery times: connected %v s, resumed %v s", st.AllConnectedSeconds, st.AllResumedSeconds)
	}
	// Two messages before the outage and one from each client after, to
	// both clients of each of the two pairs.
	if rep.Tally.Expected != 4*4 {
		t.Errorf("%d deliveries expected, want 16", rep.Tally.Expected)
	}
}

// --procs 2 for real: the test binary re-executes itself as two worker
// children (see TestMain).
func TestProcsReexec(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	n := startTestNode(t, nil)
	cfg := n.config(t, Plan{Scenario: ScenarioDirect, Pairs: 2, Rate: 20, Procs: 2})
	cfg.Spawn = spawnTestChild
	rep := runOK(t, cfg)
	if rep.Tool.Procs != 2 || rep.Counters.Target != 4 || rep.Counters.Acked == 0 {
		t.Fatalf("%d processes, %d clients, %d acked", rep.Tool.Procs, rep.Counters.Target, rep.Counters.Acked)
	}
	if rep.Tool.CPUSeconds <= 0 {
		t.Error("the children's CPU was not counted")
	}
}

// writeTestCert writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and returns the certificate and key files.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "floodgate bench test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// The storm counts 503s from the SDK's log: check that the SDK really
// logs them the way dialLog expects, against a node that is full.
func TestDialLogSeesTheSDKsRefusals(t *testing.T) {
	t.Parallel()
	n := startTestNode(t, func(c *config.Config) { c.MaxConns = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := Plan{URLs: []string{n.url()}, UserPrefix: "t-", Deadline: time.Now().Add(time.Minute)}
	hc := &http.Client{Timeout: 10 * time.Second}
	var err error
	if p.App, p.Secret, err = createApp(ctx, hc, n.srv.HTTPURL(), testAdminToken, "full"); err != nil {
		t.Fatal(err)
	}
	var errs errorCounts
	d := newDialer(&p, &errs)
	defer d.close()
	occupant, _, err := d.connect(ctx, 0, dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer occupant.Close()

	var refused atomic.Int64
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	_, err = client.Dial(dctx, client.Options{URL: n.url(), App: p.App, Logger: slog.New(dialLog{rejected: &refused, retries: &errorCounts{}}),
		BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Token: func(context.Context) (string, error) { return mintToken(&p, "t-other") }})
	if err == nil {
		t.Fatal("a client got past a full node")
	}
	if refused.Load() == 0 {
		t.Fatal("no 503 counted from the SDK's log")
	}
}
