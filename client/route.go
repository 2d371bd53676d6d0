package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// maxRouteBytes bounds the router's answer: a route is two URLs.
const maxRouteBytes = 64 << 10

// maxRouteTTL caps the router's ttl_ms, so that a broken router cannot pin
// a route for ever (and ttl_ms*time.Millisecond cannot overflow).
const maxRouteTTL = 24 * time.Hour

// target is a gateway to dial: its URL and, for Options.URLs, its index
// (-1 for a redirect target or a gateway the router gave).
type target struct {
	url string
	idx int
}

// nextAttempt is what the connection loop carries from one attempt to the
// next.
type nextAttempt struct {
	start    int    // Options.URLs: the index to start from
	redirect string // dialled first (a redirect directive's url)
	avoid    string // router: the node that redirected the client away
}

// router finds gateways through Options.Router. Apart from the fields set
// by newClient, it belongs to the connection loop.
type router struct {
	endpoint string // GET this: {Router}/v1/route?app=APP
	tlsOnly  bool   // an https router: only wss gateways
	http     *http.Client
	own      bool // http was made by the client: Close releases it

	have    bool                 // a route was ever received
	last    protocol.RouteResult // the last one, kept when the router fails
	expires time.Time            // end of last's TTL
	fresh   bool                 // false once a redirect or a failure invalidated last
	// holdUntil: after a failure, last is used without asking the router
	// again until then (Retry-After, or back-off), so that a dead or slow
	// router costs each reconnect nothing.
	holdUntil time.Time
	retry     backoff
}

// newRouter validates Options.Router and prepares the route request.
func newRouter(o Options) (*router, error) {
	u, err := url.Parse(o.Router)
	if err != nil {
		return nil, fmt.Errorf("floodgate: invalid Options.Router %q: %w", o.Router, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("floodgate: Options.Router %q: must be an http:// or https:// base URL", o.Router)
	}
	u = u.JoinPath("v1", "route")
	q := u.Query()
	q.Set("app", o.App)
	u.RawQuery, u.Fragment = q.Encode(), ""
	r := &router{
		endpoint: u.String(),
		tlsOnly:  u.Scheme == "https",
		http:     o.HTTPClient,
		retry:    backoff{min: o.BackoffMin, max: o.BackoffMax},
	}
	if r.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.TLSConfig != nil {
			tr.TLSClientConfig = o.TLSConfig.Clone()
		}
		r.http, r.own = &http.Client{Transport: tr, Timeout: o.DialTimeout}, true
	}
	return r, nil
}

// invalidate makes the next attempt ask the router; the route stays the
// fallback for when the router cannot answer.
func (r *router) invalidate() { r.fresh = false }

// routeTargets returns the gateways of the route to try, primary first:
// the cached route while its TTL runs, else the router's answer, else (the
// router failed) the last route received, however old. avoid, the node
// that just redirected the client away, is left out. It returns an outcome
// instead when there is nothing to try.
func (c *Client) routeTargets(avoid string) ([]target, *outcome) {
	r := c.route
	now := c.now()
	switch {
	case r.have && r.fresh && now.Before(r.expires):
	case r.have && now.Before(r.holdUntil):
		c.log.Debug("floodgate: router on hold; using the last route", "primary", r.last.Primary, "secondary", r.last.Secondary)
	default:
		res, err := c.askRouter()
		if err == nil {
			ttl := time.Duration(min(max(res.TTLMS, 0), maxRouteTTL.Milliseconds())) * time.Millisecond
			r.have, r.last, r.fresh, r.expires = true, res, true, now.Add(ttl)
			r.holdUntil = time.Time{}
			r.retry.reset()
			c.log.Debug("floodgate: route", "primary", res.Primary, "secondary", res.Secondary, "ttl", ttl)
			break
		}
		var re *routerError
		refused := errors.As(err, &re) && re.status == http.StatusServiceUnavailable
		if !r.have {
			// Nothing to fall back on: the loop waits (Retry-After plus
			// jitter, or back-off) and asks again.
			o := outcome{err: err, fromRouter: true, refused: refused}
			if refused {
				o.retryAfter = re.retryAfter
			}
			return nil, &o
		}
		// Static stability: the gateways of the last route may well still
		// work; the router is asked again only after a while.
		hold := r.retry.next()
		if refused && re.retryAfter > 0 {
			hold = re.retryAfter + jitter(c.rand, re.retryAfter)
		}
		r.holdUntil = now.Add(hold)
		c.log.Warn("floodgate: router failed; using the last route", "err", err,
			"primary", r.last.Primary, "secondary", r.last.Secondary, "ask_again_in", hold)
	}
	var ts []target
	for _, u := range []string{r.last.Primary, r.last.Secondary} {
		if u == "" || u == avoid || (len(ts) > 0 && ts[0].url == u) {
			continue
		}
		ts = append(ts, target{url: u, idx: -1})
	}
	if len(ts) == 0 {
		return nil, &outcome{err: fmt.Errorf("floodgate: the route offers only %s, which just redirected the client away", avoid), fromRouter: true}
	}
	return ts, nil
}

// askRouter asks the router for a route, within DialTimeout.
func (c *Client) askRouter() (protocol.RouteResult, error) {
	var res protocol.RouteResult
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.route.endpoint, nil)
	if err != nil {
		return res, fmt.Errorf("floodgate: router: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", clientName)
	resp, err := c.route.http.Do(req)
	if err != nil {
		return res, fmt.Errorf("floodgate: router: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRouteBytes))
	if resp.StatusCode != http.StatusOK {
		re := &routerError{status: resp.StatusCode}
		var e struct {
			Error *protocol.Error `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != nil {
			re.err = e.Error
		}
		if s := parseRetryAfter(resp.Header.Get("Retry-After")); s >= 0 {
			re.retryAfter = time.Duration(s) * time.Second
		} else if re.err != nil && re.err.RetryAfterMS > 0 {
			re.retryAfter = min(time.Duration(re.err.RetryAfterMS)*time.Millisecond, maxRetryAfter)
		}
		return res, re
	}
	if err != nil {
		return res, fmt.Errorf("floodgate: router: reading the answer: %w", err)
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return res, fmt.Errorf("floodgate: router: decoding the answer: %w", err)
	}
	if res.Primary == "" {
		return res, errors.New("floodgate: router: the answer names no gateway")
	}
	for _, u := range []string{res.Primary, res.Secondary} {
		if u == "" {
			continue
		}
		if err := c.checkTarget(u); err != nil {
			// The whole answer is refused: a router that hands out
			// plain-text gateways to a TLS client is misconfigured or
			// not the router, and the last good route is better.
			return res, fmt.Errorf("%w (in the router's answer, refused)", err)
		}
	}
	return res, nil
}
