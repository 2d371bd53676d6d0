package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// buildOnce builds the floodgate binary once per test run.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "floodgate-e2e-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "floodgate")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/floodgate").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// proc is a floodgate process: a server node or a router.
type proc struct {
	t             testing.TB
	bin, dir      string
	command       string   // "server" or "router"
	extra         []string // flags after the defaults (later flags win)
	port, opsPort int
	cmd           *exec.Cmd
	exited        chan struct{}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newProc prepares a process of the floodgate binary; start runs it.
func newProc(t testing.TB, command string, extra ...string) *proc {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, bin: bin, dir: t.TempDir(), command: command, extra: extra, port: freePort(t), opsPort: freePort(t)}
	t.Cleanup(func() { p.kill() })
	return p
}

// start runs the process and waits until it is ready (a node's /readyz,
// a router's /livez).
func (p *proc) start() {
	p.t.Helper()
	args := []string{p.command,
		"--listen", "127.0.0.1:" + strconv.Itoa(p.port),
		"--ops-listen", "127.0.0.1:" + strconv.Itoa(p.opsPort)}
	probe := "/livez"
	if p.command == "server" {
		args = append(args, "--data-dir", p.dir, "--admin-token", adminToken, "--sqlite-sync", "full")
		probe = "/readyz"
	}
	p.cmd = exec.Command(p.bin, append(args, p.extra...)...)
	log, err := os.OpenFile(filepath.Join(p.dir, p.command+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}(p.cmd, p.exited)
	waitFor(p.t, p.command+" to be ready", func() bool {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(filepath.Join(p.dir, p.command+".log"))
			p.t.Fatalf("%s exited:\n%s", p.command, b)
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.opsPort, probe))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

func (p *proc) url() string     { return fmt.Sprintf("ws://127.0.0.1:%d/v1/ws", p.port) }
func (p *proc) httpURL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.port) }
func (p *proc) opsURL() string  { return fmt.Sprintf("http://127.0.0.1:%d", p.opsPort) }
