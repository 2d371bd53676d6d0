package gateway

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/protocol"
)

// drainStep is the interval between two batches of a drain: small enough
// that a batch is a small share of the node, large enough that the batches
// of a short window are not all at once.
const drainStep = 250 * time.Millisecond

// Drain moves every client of the node to other nodes, in batches spread
// evenly over window, so the rest of the cluster takes them in gradually
// rather than as a reconnect storm. Each client gets a redirect directive
// (ask the router again, within a random delay of one batch interval) and
// the close code 4200. The caller stops new connections first. Drain
// returns how many clients it moved, once all were told or ctx ended.
func (g *Gateway) Drain(ctx context.Context, window time.Duration) int {
	var all []*Session
	g.sessions.each(func(s *Session) { all = append(all, s) })
	// Random order: no user, app or connection age is always moved first.
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	rounds := max(int(window/drainStep), 1)
	d := protocol.Directive{Action: protocol.ActionRedirect, Code: protocol.CloseDraining,
		Reason: "node draining", RetryAfterMS: drainStep.Milliseconds()}
	t := time.NewTicker(drainStep)
	defer t.Stop()
	moved := 0
	for r := 0; moved < len(all); r++ {
		n := (len(all) - moved + (rounds - r) - 1) / max(rounds-r, 1)
		for _, s := range all[moved : moved+n] {
			s.directive(d)
		}
		moved += n
		if moved == len(all) {
			break
		}
		select {
		case <-ctx.Done():
			return moved
		case <-t.C:
		}
	}
	return moved
}

// catchUp schedules a resync for sessions whose subscriptions were just
// made: in a NATS cluster, a new interest takes a moment to reach the other
// servers, which meanwhile drop what is published to it. The client's sync
// at connect covers what was committed before it; this one, CatchUp later,
// covers the propagation window.
type catchUp struct {
	mu      sync.Mutex
	pending []catchUpEntry
}

type catchUpEntry struct {
	s  *Session
	at time.Time
}

// maxCatchUp bounds the queue; past it a connect or join gets no catch-up
// (the next message in its conversations would still reveal any gap).
const maxCatchUp = 1 << 20

func (c *catchUp) add(s *Session, at time.Time) {
	c.mu.Lock()
	if len(c.pending) < maxCatchUp {
		c.pending = append(c.pending, catchUpEntry{s, at})
	}
	c.mu.Unlock()
}

// due removes and returns the entries scheduled at or before now.
func (c *catchUp) due(now time.Time) []catchUpEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(c.pending) && !c.pending[n].at.After(now) {
		n++
	}
	if n == 0 {
		return nil
	}
	out := slices.Clone(c.pending[:n])
	c.pending = append(c.pending[:0], c.pending[n:]...)
	return out
}

// catchUpDue sends the resync of a due catch-up, unless the client has
// already done what it would ask: a full sync whose reads began after the
// subscriptions had settled (at) covers everything committed until then,
// and anything committed later is published after the settling and so
// delivered live. When a client's first sync waits longer than the
// catch-up delay (a node or store slow to answer), this spares the store a
// second sync of that client.
func (g *Gateway) catchUpDue(e catchUpEntry, spread time.Duration) {
	if synced := e.s.fullSync.Load(); synced != 0 && synced >= e.at.UnixNano() {
		g.m.CatchUpsSkipped.Inc()
		return
	}
	g.resync(e.s, spread)
}

// scheduleCatchUp queues s for a resync after the configured delay, unless
// the node's interest in every topic s just followed is older than that
// delay, and so known to every bus server already: then whatever is
// committed after s's sync began is published where it reaches this node.
// (With bus.Options.PerAppUsers, that is every client that authenticates
// once its app has been on the node for longer than the delay.)
func (g *Gateway) scheduleCatchUp(s *Session, followed ...bus.Topic) {
	if g.o.CatchUp <= 0 {
		return
	}
	settled := len(followed) > 0
	for _, t := range followed {
		settled = settled && g.bus.InterestAge(t) >= g.o.CatchUp
	}
	if settled {
		g.m.CatchUpsSkipped.Inc()
		return
	}
	g.catchUps.add(s, g.now().Add(g.o.CatchUp))
}
