package client

import (
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// randFunc returns a uniformly random int64 in [0, n); n > 0.
type randFunc func(n int64) int64

// jitter returns a uniformly random duration in [0, d].
func jitter(rnd randFunc, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(d) + 1))
}

// backoff is exponential back-off with full jitter: the n-th wait is
// uniform in [0, min(max, min*2^n)]. Full jitter (rather than a fixed base
// plus some jitter) is what spreads a fleet of clients that lost a whole
// cluster at the same instant: their retries are uncorrelated from the
// first one.
type backoff struct {
	min, max time.Duration
	attempt  int
	rand     randFunc
}

// ceiling is the upper bound of the next wait.
func (b *backoff) ceiling() time.Duration {
	d := b.min
	for i := 0; i < b.attempt && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// next returns the next wait and counts the attempt.
func (b *backoff) next() time.Duration {
	d := jitter(b.rand, b.ceiling())
	if b.ceiling() < b.max {
		b.attempt++
	}
	return d
}

// reset starts the sequence again, after a connection proved healthy.
func (b *backoff) reset() { b.attempt = 0 }

// outcome is what one connection attempt ended with, as far as the
// reconnect decision is concerned.
type outcome struct {
	// authed: the connection authenticated; stable: and stayed so long
	// enough to trust the server again (resets the back-off).
	authed, stable bool
	// directive is the last directive the server sent, if any.
	directive *protocol.Directive
	// code is the close code received (0: none, the connection just broke).
	code   int
	reason string
	// authErr is the error reply to auth, if it was refused.
	authErr *protocol.Error
	// retryAfter is the Retry-After of an HTTP 503 refusal of the upgrade,
	// or of the route request when fromRouter (refused is true then, even
	// without the header).
	refused    bool
	retryAfter time.Duration
	// fromRouter: the attempt found no gateway to dial (the router failed
	// and no route was ever received, or the route held only the node
	// that redirected the client away).
	fromRouter bool
	// err is the cause when there is no code (dial, token or read error).
	err error
}

// plan is what the connection loop does next.
type plan struct {
	stop  bool
	err   error // for stop: what the application is told
	delay time.Duration
	// url, when set, is dialled first on the next attempt (a redirect).
	url string
	// rotate moves to the next URL of the list (ask the router again).
	rotate bool
	why    string // for logs
}

// nowSpread bounds the random delay of a "reconnect now" without a
// directive: enough to spread a node's clients over a second, short enough
// to feel instant.
const nowSpread = time.Second

// decide turns an outcome into a plan. A directive wins over the close
// code; without either, a refused auth implies its close code; anything
// else is back-off. When the connection did not stay up long enough to be
// trusted, the wait is at least the next exponential back-off, so that a
// server (or a cluster) that accepts connections and drops them at once is
// not hammered, whatever it says. An HTTP 503 with Retry-After is the
// exception: the upgrade was refused before any work, and its Retry-After
// (plus as much jitter) is the whole wait.
func decide(o outcome, b *backoff, rnd randFunc) plan {
	if o.stable {
		b.reset()
	}
	var p plan
	action, retry := "", time.Duration(0)
	if d := o.directive; d != nil {
		action, retry = d.Action, time.Duration(d.RetryAfterMS)*time.Millisecond
	}
	code := o.code
	if code == 0 && o.authErr != nil {
		code = protocol.AuthCloseCode(o.authErr.Code)
	}
	if code == 0 && o.directive != nil {
		code = o.directive.Code
	}
	expo := func() time.Duration { return b.next() }
	usedExpo := false
	switch action {
	case protocol.ActionReconnect:
		p.delay, p.why = jitter(rnd, retry), "directive reconnect"
	case protocol.ActionBackoff:
		if retry > 0 {
			p.delay = retry + jitter(rnd, retry)
		} else {
			p.delay, usedExpo = expo(), true
		}
		p.why = "directive backoff"
	case protocol.ActionRedirect:
		p.delay, p.why = jitter(rnd, retry), "directive redirect"
		if o.directive.URL != "" {
			p.url = o.directive.URL
		} else {
			p.rotate = true
		}
	case protocol.ActionStop:
		p.stop = true
	default:
		switch {
		case code != 0:
			p.why = "close " + protocol.CloseAction(code)
			switch protocol.CloseAction(code) {
			case protocol.AfterReconnect:
				p.delay = jitter(rnd, min(nowSpread, b.max))
			case protocol.AfterRedirect:
				p.delay, p.rotate = jitter(rnd, min(nowSpread, b.max)), true
			case protocol.AfterStop:
				p.stop = true
			default: // back-off, refresh (the token is fetched on every connect)
				p.delay, usedExpo = expo(), true
			}
		case o.refused && o.retryAfter > 0:
			// As for 4101: the node (or the router) is full, come back
			// later, spread. The server has set the schedule, and a
			// refused upgrade cost it little: the exponential back-off
			// neither adds to it nor grows, or a node shedding a storm
			// would push its clients' next tries ever later.
			p.delay, p.why = o.retryAfter+jitter(rnd, o.retryAfter), "http 503"
			usedExpo = true
			if o.fromRouter {
				p.why = "router 503"
			}
		default:
			p.delay, usedExpo, p.why = expo(), true, "connection failed"
			if o.fromRouter {
				p.why = "no route"
			}
		}
	}
	if p.stop {
		ce := &CloseError{Code: code, Reason: o.reason, Directive: o.directive, Auth: o.authErr}
		if ce.Reason == "" && o.directive != nil {
			ce.Reason = o.directive.Reason
		}
		p.err = ce
		return p
	}
	if !o.stable && !usedExpo {
		p.delay = max(p.delay, expo())
	}
	return p
}
