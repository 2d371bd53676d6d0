package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"
)

// ChildArg is the hidden argument that makes `floodgate bench` a worker
// child of a --procs run: `floodgate bench --bench-child` reads its shard
// and the coordinator's commands as JSON lines on stdin, and writes
// progress, phases and its result as JSON lines on stdout (see RunChild).
const ChildArg = "--bench-child"

// childGrace is how long past the run's deadline a child may take to
// exit before it is killed.
const childGrace = teardownTimeout + 10*time.Second

// link is how the coordinator talks to one shard, whatever process runs
// it: the same messages go over a Go channel or a pipe.
type link interface {
	// send delivers a command.
	send(m toWorker) error
	// recv delivers the shard's messages; it is closed when the shard has
	// finished (its process exited).
	recv() <-chan fromWorker
	// wait returns, once recv is closed, the CPU seconds the shard's
	// process used (0 for a shard in the coordinator's process, whose CPU
	// is the coordinator's) and how it ended.
	wait() (cpu float64, err error)
	// kill stops the shard at once.
	kill()
}

// inProcLink runs a shard on goroutines of the coordinator's process.
type inProcLink struct {
	cmds   chan toWorker
	out    chan fromWorker
	ctx    context.Context
	cancel context.CancelFunc
}

func startInProc(ctx context.Context, s Shard) *inProcLink {
	ctx, cancel := context.WithCancel(ctx)
	l := &inProcLink{cmds: make(chan toWorker, 8), out: make(chan fromWorker, 64), ctx: ctx, cancel: cancel}
	go func() {
		defer close(l.out)
		serveShard(ctx, &s, l.cmds, l.emit)
	}()
	return l
}

// emit hands a message to the coordinator. Progress is dropped rather
// than waited for when the coordinator is behind: the next one supersedes
// it.
func (l *inProcLink) emit(m fromWorker) {
	if m.Progress != nil && m.Phase == "" && m.Result == nil && m.Error == "" {
		select {
		case l.out <- m:
		default:
		}
		return
	}
	select {
	case l.out <- m:
	case <-l.ctx.Done():
	}
}

func (l *inProcLink) send(m toWorker) error {
	select {
	case l.cmds <- m:
		return nil
	case <-l.ctx.Done():
		return l.ctx.Err()
	}
}

func (l *inProcLink) recv() <-chan fromWorker { return l.out }
func (l *inProcLink) wait() (float64, error)  { return 0, nil }
func (l *inProcLink) kill()                   { l.cancel() }

// wireLink speaks the worker protocol, JSON lines, with a shard over a
// pair of pipes: a child process's stdin and stdout, or (tests) pipes to
// RunChild on goroutines of this process.
type wireLink struct {
	mu    sync.Mutex // serialises commands
	enc   *json.Encoder
	stdin io.Closer
	out   chan fromWorker
	// end waits for the shard to end and returns its process's CPU.
	end  func() (float64, error)
	stop func()
	// child: the shard runs in a child process (its CPU is its own).
	child bool
}

// newWireLink sends the shard and starts reading the shard's messages
// from stdout.
func newWireLink(stdin io.WriteCloser, stdout io.Reader, s Shard) (*wireLink, error) {
	l := &wireLink{enc: json.NewEncoder(stdin), stdin: stdin, out: make(chan fromWorker, 64)}
	if err := l.send(toWorker{Shard: &s}); err != nil {
		return nil, fmt.Errorf("sending the plan to a worker: %w", err)
	}
	go func() {
		defer close(l.out)
		dec := json.NewDecoder(stdout)
		for {
			var m fromWorker
			if err := dec.Decode(&m); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
					l.out <- fromWorker{Error: "worker output: " + err.Error()}
				}
				return
			}
			l.out <- m
		}
	}()
	return l, nil
}

// startProc starts cmd as a worker child for shard s; the child's stderr
// goes to log.
func startProc(cmd *exec.Cmd, s Shard, log io.Writer) (*wireLink, error) {
	cmd.Stderr = log
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a worker process: %w", err)
	}
	l, err := newWireLink(stdin, stdout, s)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	l.end = func() (float64, error) {
		err := cmd.Wait()
		if ps := cmd.ProcessState; ps != nil {
			return (ps.UserTime() + ps.SystemTime()).Seconds(), err
		}
		return 0, err
	}
	l.stop = func() { _ = cmd.Process.Kill() }
	return l, nil
}

// startPiped runs shard s through RunChild on goroutines of this process,
// over in-memory pipes: the whole worker protocol without a child
// process. Its CPU is this process's.
func startPiped(ctx context.Context, s Shard, log io.Writer) (*wireLink, error) {
	ctx, cancel := context.WithCancel(ctx)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunChild(ctx, inR, outW, log)
		_ = outW.Close()
		_ = inR.Close()
	}()
	l, err := newWireLink(inW, outR, s)
	if err != nil {
		cancel()
		<-done
		return nil, err
	}
	l.end = func() (float64, error) {
		<-done
		cancel()
		return 0, nil
	}
	l.stop = cancel
	return l, nil
}

func (l *wireLink) send(m toWorker) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(m)
}

func (l *wireLink) recv() <-chan fromWorker { return l.out }

func (l *wireLink) wait() (float64, error) {
	_ = l.stdin.Close()
	return l.end()
}

func (l *wireLink) kill() { l.stop() }

// RunChild is the body of a worker child (`floodgate bench
// --bench-child`): it reads its shard, then commands, as JSON lines from
// in; runs the shard; writes progress, phases and the result as JSON
// lines to out; and returns the process's exit code. The shard stops by
// itself at the plan's deadline, and when in is closed (the coordinator
// went away). A malformed start is reported to log.
func RunChild(ctx context.Context, in io.Reader, out io.Writer, log io.Writer) int {
	dec := json.NewDecoder(in)
	var first toWorker
	if err := dec.Decode(&first); err != nil || first.Shard == nil {
		fmt.Fprintf(log, "floodgate bench: worker: no shard on stdin (%v); this mode is for `floodgate bench --procs`\n", err)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmds := make(chan toWorker)
	// The decoder blocks in a read of in, which only closing in (or this
	// process's exit) ends; it stops forwarding as soon as ctx ends.
	go func() {
		defer close(cmds)
		for {
			var m toWorker
			if dec.Decode(&m) != nil {
				return
			}
			select {
			case cmds <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(m fromWorker) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	TrimGC()
	if prefix := first.Shard.CPUProfile; prefix != "" {
		stop, err := StartCPUProfile(fmt.Sprintf("%s.%d", prefix, first.Shard.Index))
		if err != nil {
			fmt.Fprintf(log, "floodgate bench: worker: %v\n", err)
			return 2
		}
		defer stop()
	}
	serveShard(ctx, first.Shard, cmds, emit)
	return 0
}

// toolGCPercent is the load tool's GOGC unless the environment sets one.
// A worker holds tens of thousands of simulated clients, each with a few
// goroutines, whose stacks every collection scans: GC was ~12 % of a
// worker's CPU in a profile of the 50 000-client storm, CPU the servers
// under test share. Collecting 4x less often trades memory this kind of
// machine has (a 12 500-client storm worker peaked at ~1 GiB, ~0.75 before).
const toolGCPercent = 400

// TrimGC makes this process collect garbage less often, unless GOGC says
// otherwise.
func TrimGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(toolGCPercent)
	}
}

// StartCPUProfile profiles this process's CPU into path until the
// returned function is called.
func StartCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
