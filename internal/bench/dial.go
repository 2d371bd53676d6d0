package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

// clientName is sent in auth, so the server's logs tell the bench apart.
const clientName = "floodgate-bench/1"

// attemptTimeout bounds one connection attempt: TCP, TLS, upgrade and auth.
const attemptTimeout = 15 * time.Second

// tokenTTL is how long the minted tokens are valid: longer than any run.
const tokenTTL = 24 * time.Hour

// dialer opens authenticated raw connections for one shard.
type dialer struct {
	plan *Plan
	tls  *tls.Config // base for wss URLs; nil when no URL needs it
	http *http.Client
	errs *errorCounts
}

func newDialer(p *Plan, errs *errorCounts) *dialer {
	d := &dialer{plan: p, errs: errs}
	// InsecureSkipVerify only on request (--tls-insecure), for self-signed
	// test certificates.
	d.tls = &tls.Config{InsecureSkipVerify: p.TLSInsecure, MinVersion: tls.VersionTLS12}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = d.tls.Clone()
	tr.MaxIdleConnsPerHost = 16
	d.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return d
}

// close releases the dialer's idle HTTP connections.
func (d *dialer) close() { d.http.CloseIdleConnections() }

// mintToken returns a token for user, signed with the app's secret as the
// app's backend would.
func mintToken(p *Plan, user string) (string, error) {
	now := time.Now()
	return token.Mint(p.Secret, token.Claims{User: user, App: p.App, IssuedAt: now.Add(-time.Minute), Expires: now.Add(tokenTTL)})
}

// timing is where one successful connection spent its time.
type timing struct {
	TCP, Upgrade, Auth, Total time.Duration
	TLS, Resumed              bool
}

// dialOpts are per-connection choices.
type dialOpts struct {
	// sessions, when set, is this client's TLS session cache, so that a
	// later connection of the same client can resume.
	sessions tls.ClientSessionCache
	// afterAuth runs on the new connection before it counts as connected
	// (connect --resume: the sync). Its time is part of Total.
	afterAuth func(ctx context.Context, c *rawConn) error
	// setup runs on the connection before its reader starts, to install
	// the event handlers.
	setup func(c *rawConn)
	// user overrides the simulated user's id (the coordinator's own
	// client).
	user string
}

// statusError is an HTTP refusal of the upgrade.
type statusError struct {
	status     int
	retryAfter time.Duration
}

func (e *statusError) Error() string { return "upgrade refused with HTTP " + strconv.Itoa(e.status) }

// connect opens client i's connection, authenticated, retrying failed
// attempts (plan.Retries) with back-off, or after Retry-After for a 503.
func (d *dialer) connect(ctx context.Context, i int, o dialOpts) (*rawConn, timing, error) {
	var last error
	for attempt := 0; attempt <= d.plan.Retries; attempt++ {
		if attempt > 0 {
			wait := time.Duration(100<<min(attempt-1, 5)) * time.Millisecond
			var se *statusError
			if errors.As(last, &se) && se.retryAfter > 0 {
				wait = min(se.retryAfter, 10*time.Second)
			}
			wait += rand.N(wait/2 + 1)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, timing{}, ctx.Err()
			}
		}
		c, tm, err := d.attempt(ctx, i, o)
		if err == nil {
			return c, tm, nil
		}
		last = err
		d.errs.add(classify(err))
		if ctx.Err() != nil {
			break
		}
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.Code != protocol.CodeUnavailable && perr.Code != protocol.CodeRateLimited {
			break // a refused token or app: retrying cannot help
		}
	}
	return nil, timing{}, last
}

// classify names an error for the report's error counts.
func classify(err error) string {
	var (
		se   *statusError
		perr *protocol.Error
		ne   net.Error
	)
	switch {
	case errors.As(err, &se):
		return "http_" + strconv.Itoa(se.status)
	case errors.As(err, &perr):
		return perr.Code
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	}
	var tlsErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &tlsErr):
		return "tls_verify"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op
	}
	return "other"
}

// attempt makes one connection attempt.
func (d *dialer) attempt(ctx context.Context, i int, o dialOpts) (*rawConn, timing, error) {
	var tm timing
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	user := d.plan.User(i)
	if o.user != "" {
		user = o.user
	}
	tok, err := mintToken(d.plan, user)
	if err != nil {
		return nil, tm, err
	}
	// Total counts the router's answer too, as a client's wait does;
	// Upgrade does not.
	start := time.Now()
	target := d.plan.gatewayFor(i)
	if target == "" {
		if target, err = d.route(ctx); err != nil {
			return nil, tm, err
		}
	}
	dialStart := time.Now()
	var refused *statusError
	nd := d.plan.netDialer(i, attemptTimeout)
	wd := ws.Dialer{
		ReadBufferSize:  readBufferBytes,
		WriteBufferSize: readBufferBytes,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			t0 := time.Now()
			c, err := nd.DialContext(ctx, network, addr)
			tm.TCP = time.Since(t0)
			return c, err
		},
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			refused = &statusError{status: status}
			if r, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
				if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil && s > 0 {
					refused.retryAfter = time.Duration(s) * time.Second
				}
			}
		},
	}
	if u, err := url.Parse(target); err == nil && u.Scheme == "wss" {
		cfg := d.tls.Clone()
		cfg.ClientSessionCache = o.sessions
		wd.TLSConfig = cfg
		tm.TLS = true
	}
	nc, br, _, err := wd.Dial(ctx, target)
	if err != nil {
		if refused != nil {
			return nil, tm, refused
		}
		return nil, tm, err
	}
	tm.Upgrade = time.Since(dialStart) - tm.TCP
	if tc, ok := nc.(*tls.Conn); ok {
		tm.Resumed = tc.ConnectionState().DidResume
	}
	var buffered []byte
	if br != nil {
		buffered, _ = br.Peek(br.Buffered())
		buffered = append([]byte(nil), buffered...)
		ws.PutReader(br)
	}
	c := newRawConn(nc, buffered, user)
	if o.setup != nil {
		o.setup(c)
	}
	c.start(d.plan.Deadline)
	authStart := time.Now()
	var res protocol.AuthResult
	if err := c.Call(ctx, protocol.OpAuth, protocol.AuthArgs{App: d.plan.App, Token: tok, Client: clientName}, &res); err != nil {
		c.Close()
		return nil, tm, err
	}
	tm.Auth = time.Since(authStart)
	c.auth = res
	if o.afterAuth != nil {
		if err := o.afterAuth(ctx, c); err != nil {
			c.Close()
			return nil, tm, err
		}
	}
	tm.Total = time.Since(start)
	return c, tm, nil
}

// route asks the router for a gateway, as the SDK does before connecting.
func (d *dialer) route(ctx context.Context) (string, error) {
	u := d.plan.Router + "/v1/route?app=" + url.QueryEscape(d.plan.App)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("router: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		se := &statusError{status: resp.StatusCode}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			se.retryAfter = time.Duration(s) * time.Second
		}
		return "", fmt.Errorf("router: %w", se)
	}
	var r protocol.RouteResult
	if err := json.Unmarshal(body, &r); err != nil || r.Primary == "" {
		return "", fmt.Errorf("router: unusable answer %q", body)
	}
	return r.Primary, nil
}
