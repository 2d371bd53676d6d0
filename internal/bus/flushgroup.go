package bus

import (
	"context"
	"sync"
)

// flushGroup shares flush round trips among concurrent callers. A caller
// that has just written a SUB needs a flush that starts after its write;
// when a node takes back thousands of clients at once, one PING/PONG per
// subscription would be thousands of round trips for what one can prove.
//
// A caller joins the next flush if one is waiting to start; otherwise it
// leads it: it waits for the flush in flight (whose PING may predate its
// SUB), then runs one for everyone who joined meanwhile. So at most two
// flushes are in the air per group, and a burst costs about two.
type flushGroup struct {
	mu       sync.Mutex
	next     *flushWave // not started yet: callers arriving now join it
	inflight *flushWave
}

type flushWave struct {
	done    chan struct{}
	err     error // set before done is closed
	callers int   // under flushGroup.mu: who waits for this wave, leader included
}

// do returns once a call of flush that started after do was called has
// returned, with its error, or when ctx ends first. flush is called
// without ctx's deadline but must end by itself (the caller bounds it),
// because the wave's other callers depend on it.
func (g *flushGroup) do(ctx context.Context, flush func() error) error {
	g.mu.Lock()
	if w := g.next; w != nil {
		w.callers++
		g.mu.Unlock()
		return w.wait(ctx)
	}
	w := &flushWave{done: make(chan struct{}), callers: 1}
	g.next = w
	prev := g.inflight
	g.mu.Unlock()

	if prev != nil {
		<-prev.done // bounded: prev's flush ends by itself
	}
	g.mu.Lock()
	g.next = nil
	g.inflight = w
	g.mu.Unlock()

	w.err = flush()

	g.mu.Lock()
	if g.inflight == w {
		g.inflight = nil
	}
	g.mu.Unlock()
	close(w.done)
	return w.err
}

func (w *flushWave) wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
