package natstest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// connect connects to url alone (no discovered servers, no reconnection) and
// closes the connection when the test ends.
func connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.IgnoreDiscoveredServers(), nats.NoReconnect())
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// reach subscribes to subject on sub and publishes to it on pub until a
// message arrives: interest takes time to travel through the cluster.
func reach(t *testing.T, pub, sub *nats.Conn, subject string) {
	t.Helper()
	s, err := sub.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Unsubscribe() }()
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; n++ {
		if err := pub.Publish(subject, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NextMsg(5 * time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing from %s reached %s after %d publishes", subject, pub.ConnectedServerName(), sub.ConnectedServerName(), n+1)
		}
	}
}

// remotes returns the names of the servers that server i has routes to.
func remotes(t *testing.T, c *Cluster, i int) map[string]bool {
	t.Helper()
	resp, err := http.Get(c.MonitorURL(i) + "/routez")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range rz.Routes {
		names[r.RemoteName] = true
	}
	return names
}

func TestBinary(t *testing.T) {
	path := Binary(t)
	if again := Binary(t); again != path {
		t.Errorf("second Binary = %s, first %s", again, path)
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", path, err, out)
	}
	want, err := goCmd("", "list", "-m", "-f", "{{.Version}}", serverModule)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(out)), "nats-server: "+strings.TrimSpace(want); got != want {
		t.Errorf("--version says %q, want %q (the version in go.mod)", got, want)
	}
}

func TestClusterStarts(t *testing.T) {
	c := StartCluster(t, 3)
	if c.N() != 3 || len(c.URLs()) != 3 {
		t.Fatalf("N = %d, URLs = %v", c.N(), c.URLs())
	}
	seen := map[string]bool{}
	pids := map[int]bool{}
	for i, u := range c.URLs() {
		if u != c.URL(i) {
			t.Errorf("URLs()[%d] = %s, URL(%d) = %s", i, u, i, c.URL(i))
		}
		for _, a := range []string{u, c.MonitorURL(i)} {
			if seen[a] || strings.HasSuffix(a, ":4222") {
				t.Errorf("address %s reused or the system NATS's", a)
			}
			seen[a] = true
		}
		if pid := c.PID(i); pid == 0 || pids[pid] {
			t.Errorf("PID(%d) = %d", i, pid)
		} else {
			pids[pid] = true
		}
		if got := remotes(t, c, i); len(got) != 2 {
			t.Errorf("server %d routed to %v, want the 2 others", i, got)
		}
		if fi, err := os.Stat(c.LogPath(i)); err != nil || fi.Size() == 0 {
			t.Errorf("log of server %d: %v", i, err)
		}
		nc := connect(t, u)
		if err := nc.Flush(); err != nil {
			t.Errorf("server %d: %v", i, err)
		}
	}
}

func TestMessageCrossesCluster(t *testing.T) {
	c := StartCluster(t, 3)
	pub, sub := connect(t, c.URL(0)), connect(t, c.URL(2))
	reach(t, pub, sub, "fg.u.YXBw.dXNlcg")
}

func TestStopStart(t *testing.T) {
	c := StartCluster(t, 3)
	c.Stop(1)
	if pid := c.PID(1); pid != 0 {
		t.Errorf("stopped server has PID %d", pid)
	}
	c.Stop(1) // no-op
	reach(t, connect(t, c.URL(0)), connect(t, c.URL(2)), "while.one.is.down")

	c.Start(1)
	if pid := c.PID(1); pid == 0 {
		t.Error("restarted server has no PID")
	}
	c1 := connect(t, c.URL(1))
	reach(t, connect(t, c.URL(0)), c1, "to.the.restarted")
	reach(t, c1, connect(t, c.URL(2)), "from.the.restarted")
}

func TestKillPauseResume(t *testing.T) {
	c := StartCluster(t, 3)

	c.Pause(1)
	short := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := short.Get(c.MonitorURL(1) + "/varz"); err == nil {
		resp.Body.Close()
		t.Error("a paused server answered")
	}
	if c.PID(1) == 0 {
		t.Error("a paused server has no PID")
	}
	c.Resume(1)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(c.MonitorURL(1) + "/varz")
	if err != nil {
		t.Fatalf("resumed server does not answer: %v", err)
	}
	resp.Body.Close()
	reach(t, connect(t, c.URL(0)), connect(t, c.URL(1)), "after.resume")

	c.Kill(2)
	if c.PID(2) != 0 {
		t.Error("killed server has a PID")
	}
	c.Start(2)
	reach(t, connect(t, c.URL(2)), connect(t, c.URL(0)), "after.kill")
}

func TestStartClusterOfOne(t *testing.T) {
	c := StartCluster(t, 1)
	nc := connect(t, c.URL(0))
	reach(t, nc, nc, fmt.Sprintf("solo.%d", c.PID(0)))
}

func TestCleanupLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := StartCluster(t, 2)
		c.Pause(1) // killed while paused
		c.Kill(0)
		c.Start(0)
		for i := range c.N() {
			pids = append(pids, c.PID(i))
		}
		if err := connect(t, c.URL(0)).Flush(); err != nil {
			t.Fatal(err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		alive := 0
		for _, pid := range pids {
			// Signal 0 checks the process exists; a reaped child does not.
			if syscall.Kill(pid, 0) == nil {
				alive++
			}
		}
		n := runtime.NumGoroutine()
		if alive == 0 && n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d servers alive, %d goroutines (were %d):\n%s", alive, n, before, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

// fatalTB records Fatalf instead of failing the test it wraps.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartOnTakenPortFails(t *testing.T) {
	c := StartCluster(t, 2)
	c.Kill(0)
	l, err := net.Listen("tcp", strings.TrimPrefix(c.URL(0), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f := &fatalTB{TB: t}
	c.t = f
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Start(0)
	}()
	<-done
	c.t = t
	if !strings.Contains(f.msg, "exited") || !strings.Contains(f.msg, "address already in use") {
		t.Errorf("Start on a taken port failed with %q", f.msg)
	}
	if c.PID(0) != 0 {
		t.Error("the server that could not start has a PID")
	}
}
