package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progressInterval is how often the live line is rewritten.
const progressInterval = 500 * time.Millisecond

// isTerminal reports whether w is a terminal (a character device), the
// only place where a line rewritten with \r makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress rewrites one status line on a terminal, about twice a second,
// until stopped. When the output is not a terminal it prints nothing at
// all: a run piped to a file or another program gets the report only.
type progress struct {
	w    io.Writer
	line func() string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	last int // length of the last line written, to blank its leftovers
}

// startProgress starts the printer; line is called from its goroutine.
// tick, when not nil, replaces the timer (tests).
func startProgress(w io.Writer, tty bool, line func() string, tick <-chan time.Time) *progress {
	p := &progress{w: w, line: line, stop: make(chan struct{}), done: make(chan struct{})}
	if !tty {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		if tick == nil {
			t := time.NewTicker(progressInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-tick:
				p.print(p.line())
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *progress) print(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pad := max(p.last-len(s), 0)
	_, _ = io.WriteString(p.w, "\r"+s+strings.Repeat(" ", pad))
	p.last = len(s)
}

// Stop ends the printer and blanks its line, so that what is printed next
// starts on a clean line. It is safe to call more than once.
func (p *progress) Stop() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last > 0 {
		_, _ = io.WriteString(p.w, "\r"+strings.Repeat(" ", p.last)+"\r")
		p.last = 0
	}
}

// rateWindow is how far back the live line's rates look: shards report
// every progressEvery, so a window of several reports smooths the
// aliasing between their reports and the line's refreshes.
const rateWindow = 2 * time.Second

// progressLine is the coordinator's live line: the phase, connections,
// message rates over the last rateWindow, and errors.
func (r *runner) progressLine() string {
	c, _ := r.totals()
	now := time.Now()
	r.mu.Lock()
	phase, since := r.phase, r.since
	r.history = append(r.history, progressPoint{now, c})
	for len(r.history) > 2 && now.Sub(r.history[1].at) >= rateWindow {
		r.history = r.history[1:]
	}
	old := r.history[0]
	r.mu.Unlock()
	rate := func(a, b int64) float64 {
		if dt := now.Sub(old.at).Seconds(); dt > 0 {
			return float64(a-b) / dt
		}
		return 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %.1fs  conns %d/%d", r.plan.Scenario, phase, now.Sub(since).Seconds(), c.Open, c.Target)
	switch r.plan.Scenario {
	case ScenarioConnect:
		fmt.Fprintf(&b, "  opened %d (%.0f/s)", c.Opened, rate(c.Opened, old.c.Opened))
	case ScenarioDirect, ScenarioRoom, ScenarioGroup:
		fmt.Fprintf(&b, "  sent %d (%.0f/s)  acked %d (%.0f/s)  delivered %d (%.0f/s)", c.Sent, rate(c.Sent, old.c.Sent),
			c.Acked, rate(c.Acked, old.c.Acked), c.Delivered, rate(c.Delivered, old.c.Delivered))
	case ScenarioStorm:
		fmt.Fprintf(&b, "  lost %d  back %d  resumed %d", c.Dropped, c.Reconnected, c.Resumed)
	default:
		fmt.Fprintf(&b, "  opened %d", c.Opened)
	}
	fmt.Fprintf(&b, "  errors %d", c.Failed+c.Refused+c.Dropped*boolInt(r.plan.Scenario != ScenarioStorm))
	if c.Skipped > 0 {
		fmt.Fprintf(&b, "  skipped %d", c.Skipped)
	}
	return b.String()
}

// progressPoint is the totals at one refresh of the live line.
type progressPoint struct {
	at time.Time
	c  Counters
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
