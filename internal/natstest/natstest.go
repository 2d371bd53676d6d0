// Package natstest runs real NATS clusters for tests: separate nats-server
// processes, built from the version pinned in go.mod, routed to each other on
// free loopback ports.
//
// An embedded server (internal/bus.Embedded) is enough to test the bus
// itself; a cluster of processes is what it takes to see what a cluster does
// that one server does not: interest that needs time to travel from server
// to server, a server that dies, restarts or hangs while its peers go on.
//
// Every Cluster method that starts, stops or waits for servers must be called
// from the goroutine running the test, like testing.T.FailNow; URL, URLs,
// MonitorURL, LogPath and PID may be called from any goroutine.
package natstest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverModule is the module whose main package is nats-server.
const serverModule = "github.com/nats-io/nats-server/v2"

// Deadlines. A 2-core machine running a cluster, a load and the race
// detector can be slow; a healthy cluster is ready in well under a second.
const (
	readyTimeout = 30 * time.Second // servers up and fully routed
	stopTimeout  = 10 * time.Second // SIGTERM before SIGKILL
	pollEvery    = 10 * time.Millisecond
	httpTimeout  = 2 * time.Second
)

var built struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of a nats-server executable of the version pinned
// in go.mod. It is built once per test process with `go build` in the module
// root, into a cache directory under os.UserCacheDir keyed by that version,
// the platform and the Go version, so that later runs reuse it (a version
// replaced by a local directory is rebuilt once per process instead). It
// fails t when the build does.
func Binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() { built.path, built.err = build() })
	if built.err != nil {
		t.Fatalf("natstest: %v", built.err)
	}
	return built.path
}

// build builds nats-server, or finds it already built, and returns its path.
func build() (string, error) {
	out, err := goCmd("", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(out)
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: cannot find the nats-server version")
	}
	root := filepath.Dir(gomod)
	out, err = goCmd(root, "list", "-m", "-json", serverModule)
	if err != nil {
		return "", err
	}
	var m struct {
		Version string
		Replace *struct{ Path, Version string }
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", fmt.Errorf("go list -m %s: %v", serverModule, err)
	}
	key, fresh := m.Version, false
	if r := m.Replace; r != nil {
		key = r.Path + "@" + r.Version
		if r.Version == "" { // a local directory: its content may change
			key, fresh = "local-"+r.Path, true
		}
	}
	key = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, fmt.Sprintf("nats-server-%s-%s-%s-%s", key, runtime.GOOS, runtime.GOARCH, runtime.Version()))

	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "floodgate-natstest", key)
	path := filepath.Join(dir, "nats-server")
	if fi, err := os.Stat(path); err == nil && !fresh && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build under a name of our own and rename: another test process may be
	// building or running the same binary.
	tmp := fmt.Sprintf("%s.%d.%s", path, os.Getpid(), randHex(4))
	if _, err := goCmd(root, "build", "-o", tmp, serverModule); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return path, nil
}

// goCmd runs the go command in dir and returns its standard output.
func goCmd(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Cluster is a set of nats-server processes routed to each other, started
// by StartCluster and killed when the test ends.
type Cluster struct {
	t       testing.TB
	bin     string
	name    string // cluster name
	servers []*server
	http    *http.Client
}

// server is one member of a Cluster. Its ports stay the same across
// restarts.
type server struct {
	name                  string
	client, cluster, http int
	logPath               string
	routes                string // --routes: every other member
	poolSize              int    // route pool size reported by /varz, 0 until known
	mu                    sync.Mutex
	proc                  *os.Process // nil when not running
	done                  chan struct{}
	paused                bool
}

// StartCluster starts n nats-server processes forming one cluster on free
// 127.0.0.1 ports, waits until every server accepts clients and is routed to
// every other, and registers a cleanup that kills them all. Each server logs
// to its own file (LogPath); the tails of the logs are written to the test
// log when the test fails.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: StartCluster with %d servers", n)
	}
	bin := Binary(t)
	dir := t.TempDir()
	var lastErr error
	// A port found free may be taken by someone else before the server binds
	// it; then start again on other ports.
	for attempt := range 3 {
		c := &Cluster{
			t:    t,
			bin:  bin,
			name: "natstest-" + randHex(3),
			// No keep-alive: no idle connection, nor its goroutines, outlives
			// a request. No proxy either (Proxy is nil).
			http: &http.Client{
				Timeout:   httpTimeout,
				Transport: &http.Transport{DisableKeepAlives: true},
			},
		}
		// Kills the servers, and shows their logs if the test fails.
		t.Cleanup(c.cleanup)
		ports, err := freePorts(3 * n)
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		for i := range n {
			c.servers = append(c.servers, &server{
				name:    fmt.Sprintf("%s-%d", c.name, i),
				client:  ports[3*i],
				cluster: ports[3*i+1],
				http:    ports[3*i+2],
				logPath: filepath.Join(dir, fmt.Sprintf("attempt%d-server%d.log", attempt, i)),
			})
		}
		for i, s := range c.servers {
			var routes []string
			for j, o := range c.servers {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.cluster))
				}
			}
			s.routes = strings.Join(routes, ",")
		}
		err = nil
		for _, s := range c.servers {
			if err = c.spawn(s); err != nil {
				break
			}
		}
		if err == nil {
			err = c.waitReady(time.Now().Add(readyTimeout))
		}
		if err == nil {
			return c
		}
		c.killAll()
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("natstest: start cluster: %v", lastErr)
	return nil
}

// freePorts returns n distinct loopback TCP ports that are free now. They
// are taken below the kernel's ephemeral range, so that outgoing connections
// (routes, clients) cannot occupy them while a server is down, and never
// from the well-known NATS ports.
func freePorts(n int) ([]int, error) {
	const lo, hi = 10000, 32000 // Linux's ephemeral range starts at 32768 by default
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		r, err := rand.Int(rand.Reader, big.NewInt(hi-lo))
		if err != nil {
			return nil, err
		}
		p := lo + int(r.Int64())
		switch p {
		case 4222, 6222, 7422, 7522, 8222:
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports, nil
}

// spawn starts s's process.
func (c *Cluster) spawn(s *server) error {
	args := []string{
		"--addr", "127.0.0.1",
		"--port", strconv.Itoa(s.client),
		"--server_name", s.name,
		"--http_port", strconv.Itoa(s.http),
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", s.cluster),
		"--cluster_name", c.name,
	}
	if s.routes != "" {
		args = append(args, "--routes", s.routes)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== natstest: %s %s\n", c.bin, strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	// Everything, the logger included, writes to stderr, and so to the
	// file: even a flag error or a panic is kept.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", s.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.proc, s.done, s.paused = cmd.Process, done, false
	s.mu.Unlock()
	return nil
}

// running reports whether s's process is alive (possibly paused).
func (s *server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// waitReady waits until every running server accepts clients and has its
// full set of routes to every other running server.
func (c *Cluster) waitReady(deadline time.Time) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := c.ready()
		if err == nil {
			return nil
		}
		var exited *exitError
		if errors.As(err, &exited) || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// exitError reports a server that exited when it should be running.
type exitError struct {
	name, tail string
}

func (e *exitError) Error() string {
	return fmt.Sprintf("%s exited; its log ends:\n%s", e.name, e.tail)
}

// ready returns nil when the running servers are all routed to each other.
func (c *Cluster) ready() error {
	var up []*server
	for _, s := range c.servers {
		s.mu.Lock()
		proc, done, paused := s.proc, s.done, s.paused
		s.mu.Unlock()
		if proc == nil {
			continue
		}
		select {
		case <-done:
			return &exitError{s.name, tail(s.logPath, 20)}
		default:
		}
		if !paused { // a paused server answers nothing, not even its peers
			up = append(up, s)
		}
	}
	for _, s := range up {
		if err := dialINFO(s.client); err != nil {
			return fmt.Errorf("%s: client port: %v", s.name, err)
		}
		if s.poolSize == 0 {
			var v struct {
				Cluster struct {
					PoolSize int `json:"pool_size"`
				} `json:"cluster"`
			}
			if err := c.getJSON(s, "/varz", &v); err != nil {
				return err
			}
			s.poolSize = max(v.Cluster.PoolSize, 1) // -1: pooling disabled
		}
		var rz struct {
			Routes []struct {
				RemoteName string `json:"remote_name"`
				Account    string `json:"account"`
			} `json:"routes"`
		}
		if err := c.getJSON(s, "/routez", &rz); err != nil {
			return err
		}
		pooled := map[string]int{}
		for _, r := range rz.Routes {
			if r.Account == "" { // not a route pinned to one account
				pooled[r.RemoteName]++
			}
		}
		for _, o := range up {
			if o != s && pooled[o.name] != s.poolSize {
				return fmt.Errorf("%s has %d of %d routes to %s", s.name, pooled[o.name], s.poolSize, o.name)
			}
		}
	}
	return nil
}

// dialINFO connects to a client port and reads the server's INFO greeting.
func dialINFO(port int) error {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), httpTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(httpTimeout))
	line, err := bufio.NewReader(conn).ReadString(' ')
	if err != nil {
		return err
	}
	if line != "INFO " {
		return fmt.Errorf("greeting %q, want INFO", line)
	}
	return nil
}

// getJSON decodes the answer of s's monitoring endpoint path into v.
func (c *Cluster) getJSON(s *server, path string, v any) error {
	resp, err := c.http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.http, path))
	if err != nil {
		return fmt.Errorf("%s: %v", s.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: GET %s: %s: %s", s.name, path, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: GET %s: %v", s.name, path, err)
	}
	return nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// srv returns server i, failing the test when there is none.
func (c *Cluster) srv(i int) *server {
	if i < 0 || i >= len(c.servers) {
		c.t.Fatalf("natstest: server %d of a %d-server cluster", i, len(c.servers))
	}
	return c.servers[i]
}

// N returns the number of servers in the cluster, running or not.
func (c *Cluster) N() int { return len(c.servers) }

// URLs returns the client URLs of all the servers, running or not, in
// order.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", s.client)
	}
	return urls
}

// URL returns the client URL of server i.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.srv(i).client)
}

// MonitorURL returns the base URL of server i's HTTP monitoring endpoint,
// for example MonitorURL(0)+"/varz".
func (c *Cluster) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.srv(i).http)
}

// LogPath returns the file server i logs to (across restarts).
func (c *Cluster) LogPath(i int) string { return c.srv(i).logPath }

// PID returns the process id of server i, or 0 when it is not running.
func (c *Cluster) PID(i int) int {
	s := c.srv(i)
	if !s.running() {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid
}

// Stop stops server i gracefully (SIGTERM, resuming it if paused) and waits
// for it to exit, killing it if it takes longer than 10s. Stopping a server
// that is not running does nothing.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	s := c.srv(i)
	if !s.running() {
		return
	}
	s.mu.Lock()
	proc, done := s.proc, s.done
	s.mu.Unlock()
	_ = proc.Signal(syscall.SIGTERM)
	_ = proc.Signal(syscall.SIGCONT) // a paused server handles SIGTERM once resumed
	select {
	case <-done:
	case <-time.After(stopTimeout):
		c.t.Logf("natstest: %s ignored SIGTERM for %v; killing it", s.name, stopTimeout)
		_ = proc.Kill()
		<-done
	}
	s.mu.Lock()
	s.proc, s.paused = nil, false
	s.mu.Unlock()
}

// Kill kills server i (SIGKILL, paused or not) and waits for it to exit.
// Killing a server that is not running does nothing.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	s := c.srv(i)
	s.kill()
}

func (s *server) kill() {
	s.mu.Lock()
	proc, done := s.proc, s.done
	s.proc, s.paused = nil, false
	s.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Kill()
	<-done
}

// Start restarts server i, stopped or killed before, on its former ports
// and waits until it is routed to every other running server that is not
// paused.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	s := c.srv(i)
	if s.running() {
		c.t.Fatalf("natstest: Start(%d): %s is running", i, s.name)
	}
	s.poolSize = 0
	if err := c.spawn(s); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	if err := c.waitReady(time.Now().Add(readyTimeout)); err != nil {
		c.t.Fatalf("natstest: Start(%d): %v", i, err)
	}
}

// Pause suspends server i (SIGSTOP) and waits until all its threads are
// stopped: it keeps its sockets open but answers nothing, as a server that
// hangs without dying. Resume undoes it. While a server is paused, Start
// waits for no route to or from it.
func (c *Cluster) Pause(i int) {
	c.t.Helper()
	c.signal(i, syscall.SIGSTOP, true)
}

// Resume resumes server i after Pause (SIGCONT) and, as Start does, waits
// until it is routed to every other running server that is not paused
// (peers that gave up on it while it hung must reconnect).
func (c *Cluster) Resume(i int) {
	c.t.Helper()
	c.signal(i, syscall.SIGCONT, false)
	if err := c.waitReady(time.Now().Add(readyTimeout)); err != nil {
		c.t.Fatalf("natstest: Resume(%d): %v", i, err)
	}
}

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) {
	c.t.Helper()
	s := c.srv(i)
	if !s.running() {
		c.t.Fatalf("natstest: %v to server %d: not running", sig, i)
	}
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	if err := proc.Signal(sig); err != nil {
		c.t.Fatalf("natstest: %v to %s: %v", sig, s.name, err)
	}
	// The signal is only queued: wait until the process is (no longer)
	// stopped, so that a paused server answers nothing from now on.
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		st, err := stopped(proc.Pid)
		if err != nil {
			c.t.Fatalf("natstest: %v to %s: %v", sig, s.name, err)
		}
		if st == paused {
			break
		}
		if !s.running() {
			c.t.Fatalf("natstest: %s exited on %v", s.name, sig)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: %s still not %s after %v", s.name, map[bool]string{true: "stopped", false: "running"}[paused], readyTimeout)
		}
		<-tick.C
	}
	s.mu.Lock()
	s.paused = paused
	s.mu.Unlock()
}

// killAll kills every server and waits for them.
func (c *Cluster) killAll() {
	for _, s := range c.servers {
		s.kill()
	}
}

// cleanup kills the cluster at the end of the test, logging the tail of
// each server's log if the test failed.
func (c *Cluster) cleanup() {
	c.killAll()
	if c.t.Failed() {
		for _, s := range c.servers {
			c.t.Logf("natstest: %s log (%s) ends:\n%s", s.name, s.logPath, tail(s.logPath, 30))
		}
	}
}
