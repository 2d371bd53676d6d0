package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// defaultPingInterval is used when the auth result does not carry one.
const defaultPingInterval = 25 * time.Second

// run is the connection loop, the only goroutine that dials. It holds at
// most one connection: each attempt's reader has exited and its socket is
// closed before the next dial. It ends on Close or when the server says
// stop.
func (c *Client) run() {
	defer close(c.loopDone)
	b := &backoff{min: c.opts.BackoffMin, max: c.opts.BackoffMax, rand: c.rand}
	var nx nextAttempt
	for {
		o, at := c.attempt(nx)
		if c.ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.lastErr = o.err
		c.mu.Unlock()
		p := decide(o, b, c.rand)
		if p.stop {
			c.stop(p.err, o)
			return
		}
		nx = c.follow(&p, at)
		c.log.Info("floodgate: reconnecting", "in", p.delay, "why", p.why, "code", o.code, "err", o.err)
		if err := c.sleep(p.delay, p.why); err != nil {
			return
		}
	}
}

// follow turns a plan's move to another node into the next attempt's
// targets. at is the gateway the attempt connected to (url "" if none).
func (c *Client) follow(p *plan, at target) nextAttempt {
	var nx nextAttempt
	if p.url != "" {
		if err := c.checkRedirect(p.url); err != nil {
			c.log.Warn("floodgate: redirect refused; asking the list or the router again", "url", p.url, "err", err)
			p.rotate = true
		} else {
			nx.redirect = p.url
		}
	}
	if !p.rotate && nx.redirect == "" {
		return nx
	}
	if c.route != nil {
		// The route led to a node that sends its clients elsewhere: ask
		// the router again, and do not go straight back to that node.
		c.route.invalidate()
		nx.avoid = at.url
	} else if p.rotate && at.idx >= 0 {
		nx.start = (at.idx + 1) % len(c.urls)
	}
	return nx
}

// checkRedirect accepts a redirect target only if it is a WebSocket URL
// that does not downgrade the client to plain text; see checkTarget.
func (c *Client) checkRedirect(target string) error {
	if err := c.checkTarget(target); err != nil {
		return fmt.Errorf("%w (a redirect target)", err)
	}
	return nil
}

// checkTarget accepts a gateway that a server named (a redirect target, a
// router's answer) only if it is a WebSocket URL that does not downgrade
// the client to plain text: a ws:// target is accepted only when every
// configured URL is ws:// too, or the router is http://, so that a server
// (or whoever controls its frames or answers) cannot make the client send
// its token in the clear.
func (c *Client) checkTarget(target string) error {
	if err := checkURL(target); err != nil {
		return err
	}
	if isTLS(target) {
		return nil
	}
	if c.route != nil && c.route.tlsOnly {
		return fmt.Errorf("floodgate: %s: plain-text gateway for a client of an https router", target)
	}
	for _, u := range c.urls {
		if isTLS(u) {
			return fmt.Errorf("floodgate: %s: plain-text gateway for a client of wss gateways", target)
		}
	}
	return nil
}

func isTLS(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Scheme == "wss"
}

// sleep waits d before the next connection attempt, or until Close.
func (c *Client) sleep(d time.Duration, why string) error {
	if h := c.opts.hooks; h != nil && h.sleep != nil {
		return h.sleep(c.ctx, d, why)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// stop ends the client after the server refused to go on.
func (c *Client) stop(err error, o outcome) {
	c.log.Warn("floodgate: stopped by the server", "err", err)
	c.setTerminal(err)
	c.mu.Lock()
	c.emit(Event{Type: EventStopped, State: &State{Code: o.code, Directive: o.directive, Err: err}})
	c.mu.Unlock()
	c.q.finish()
}

// attempt makes one connection and runs it until it ends. It returns the
// gateway it connected to (url "" and idx -1: none).
func (c *Client) attempt(nx nextAttempt) (outcome, target) {
	none := target{idx: -1}
	var ts []target
	if nx.redirect != "" {
		ts = append(ts, target{url: nx.redirect, idx: -1})
	}
	routed := false // ts are the route's gateways
	switch {
	case c.route == nil:
		for i := range c.urls {
			j := (nx.start + i) % len(c.urls)
			ts = append(ts, target{url: c.urls[j], idx: j})
		}
	case nx.redirect == "":
		// Before the token: a client that has no gateway to go to does
		// not need one.
		rts, fail := c.routeTargets(nx.avoid)
		if fail != nil {
			return *fail, none
		}
		ts, routed = rts, true
	}
	cn, o := c.dialAny(ts)
	if cn == nil && c.route != nil && !routed && c.ctx.Err() == nil {
		// The redirect target failed: on to the route.
		rts, fail := c.routeTargets(nx.avoid)
		if fail != nil {
			return *fail, none
		}
		routed = true
		cn, o = c.dialAny(rts)
	}
	if cn == nil {
		if routed && c.ctx.Err() == nil {
			// None of the route's gateways works: its TTL is no reason
			// to keep trying them rather than ask the router again.
			c.route.invalidate()
		}
		return o, none
	}
	at := target{url: cn.url, idx: cn.idx}
	go c.readLoop(cn)

	// The token only once a gateway took the connection: while the
	// cluster is down, its clients' retries cost the app's backend (which
	// Token usually asks) nothing.
	tctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	tok, err := c.opts.Token(tctx)
	cancel()
	if err != nil {
		cn.abort()
		<-cn.readDone
		return outcome{err: fmt.Errorf("floodgate: token: %w", err)}, none
	}
	auth, err := c.authenticate(cn, tok)
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) {
			// The server follows a refused auth with a directive and a
			// close code: they say what to do next, so read them.
			cn.expectClose()
		} else {
			cn.abort()
		}
		<-cn.readDone
		o := c.connOutcome(cn)
		o.authErr = perr
		if o.err == nil || perr != nil {
			o.err = err
		}
		return o, at
	}
	authedAt := time.Now()
	if !c.connected(cn, auth) {
		// Lost between the auth reply and now: as if lost during auth.
		<-cn.readDone
		return c.connOutcome(cn), at
	}
	interval := time.Duration(auth.PingIntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = defaultPingInterval
	}
	pingDone := make(chan struct{})
	go c.pingLoop(cn, interval, pingDone)

	c.session(cn)

	if c.ctx.Err() != nil {
		cn.closeWith(protocol.CloseNormal, "")
	} else {
		cn.abort()
	}
	<-cn.readDone
	<-pingDone
	o = c.connOutcome(cn)
	o.authed, o.stable = true, time.Since(authedAt) >= c.stable
	c.disconnected(o)
	return o, at
}

// dialAny tries the targets in order and returns the first connection
// established. Only a failure to connect or upgrade (HTTP 503 included)
// moves on to the next target.
func (c *Client) dialAny(ts []target) (*wsConn, outcome) {
	var o outcome
	for _, t := range ts {
		cn, err := dialWS(c.ctx, t.url, &c.opts)
		if err == nil {
			cn.idx = t.idx
			return cn, outcome{}
		}
		c.log.Debug("floodgate: dial failed", "url", t.url, "err", err)
		o.err = err
		var se *statusError
		if errors.As(err, &se) && se.status == 503 {
			o.refused = true
			if ra := time.Duration(se.retryAfter) * time.Second; ra > o.retryAfter {
				o.retryAfter = ra
			}
		}
		if c.ctx.Err() != nil {
			break
		}
	}
	return nil, o
}

// authenticate sends auth, the first request of every connection.
func (c *Client) authenticate(cn *wsConn, tok string) (protocol.AuthResult, error) {
	var res protocol.AuthResult
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()
	args, _ := json.Marshal(protocol.AuthArgs{App: c.opts.App, Token: tok, Client: clientName})
	p := c.post(cn, protocol.OpAuth, args, nil, nil)
	r, err := c.await(ctx, p)
	switch {
	case err != nil:
		return res, fmt.Errorf("floodgate: auth: %w", err)
	case r.lost:
		return res, errors.New("floodgate: auth: connection lost")
	case r.err != nil:
		return res, r.err
	}
	if err := json.Unmarshal(r.result, &res); err != nil {
		return res, fmt.Errorf("floodgate: auth: decoding the result: %w", err)
	}
	return res, nil
}

// connected makes cn the connection calls use, unless cn was lost already
// (its reader can end right after the auth reply, before this runs, and
// connLost then had nothing to undo); it reports whether it did.
func (c *Client) connected(cn *wsConn, auth protocol.AuthResult) bool {
	c.mu.Lock()
	if cn.dead {
		c.mu.Unlock()
		return false
	}
	first := !c.authed
	c.authed = true
	c.cur = cn
	close(c.ready)
	c.user, c.limits = auth.User, auth.Limits
	c.emit(Event{Type: EventConnected, State: &State{Auth: &auth}})
	c.mu.Unlock()
	c.log.Info("floodgate: connected", "url", cn.url, "node", auth.Node, "session", auth.Session, "user", auth.User)
	if first {
		close(c.firstAuth)
	}
	return true
}

// disconnected resets the connection-bound state once an authenticated
// connection has ended.
func (c *Client) disconnected(o outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq.Disconnected()
	c.emit(Event{Type: EventDisconnected, State: &State{Code: o.code, Directive: o.directive, Err: o.err}})
}

// connOutcome reads how cn ended; its reader must have exited.
func (c *Client) connOutcome(cn *wsConn) outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return outcome{directive: cn.directive, code: cn.code, reason: cn.reason, err: cn.err}
}

// pingLoop sends a ping every interval, so that the server hears from the
// client, and drops the connection when nothing at all came from the
// server for two intervals (a dead peer or path that TCP may take many
// minutes to notice).
func (c *Client) pingLoop(cn *wsConn, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-cn.readDone:
			return
		case <-t.C:
		}
		// A reader parked because the application is behind is not
		// hearing the server on purpose.
		if last := time.Unix(0, cn.lastRecv.Load()); !cn.parked.Load() && time.Since(last) > 2*interval {
			c.log.Warn("floodgate: nothing received for two ping intervals; reconnecting", "interval", interval)
			c.mu.Lock()
			if cn.err == nil {
				cn.err = errors.New("floodgate: keepalive timeout")
			}
			c.mu.Unlock()
			cn.abort()
			return
		}
		c.mu.Lock()
		c.nextID++
		id := c.nextID
		c.mu.Unlock()
		// The reply is not awaited: any frame proves the connection alive.
		frame, _ := json.Marshal(protocol.Request{ID: id, Op: protocol.OpPing})
		if cn.write(frame) != nil {
			return
		}
	}
}
