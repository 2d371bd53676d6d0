package transport

import (
	"bufio"
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Server upgrades HTTP requests to WebSocket connections and serves them:
// it hands each connection to its Handler, reads client messages into the
// connection's Session and writes what the Session's owner sends. Create it
// with New; its methods are safe for concurrent use.
type Server struct {
	h        Handler
	opts     Options
	log      *slog.Logger
	upgrader ws.HTTPUpgrader

	nextID atomic.Uint64
	sweeps atomic.Uint64 // rounds of the idle sweeper, for tests
	// active counts connection slots: upgrades in progress and established
	// connections until their Session.Closed returns. MaxConns bounds it
	// and Shutdown waits for it to reach zero.
	active   atomic.Int64
	shutting atomic.Bool
	// drained is closed once shutting is set and active is zero.
	drained   chan struct{}
	drainOnce sync.Once
	stop      chan struct{} // closed to stop the sweeper
	stopOnce  sync.Once
	// wg counts every goroutine the package starts: the sweeper, readers,
	// flushers, event loops and workers.
	wg sync.WaitGroup

	reg     registry
	bufs    bufPool
	batches sync.Pool // *batch
	stats   counters
	// ev is the event loops and their workers; without them (other
	// platforms, Options.GoroutinePerConn) every connection has a reader
	// goroutine.
	ev evServer
}

// New returns a Server that hands connections to h, configured by opts
// (zero fields take their documented defaults). It starts the idle sweeper
// and, on Linux, the event loops, which run until Shutdown: a Server must be
// shut down to release them.
func New(h Handler, opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		h:       h,
		opts:    opts,
		log:     opts.Logger,
		drained: make(chan struct{}),
		stop:    make(chan struct{}),
		bufs:    newBufPool(opts.MaxFrameBytes),
	}
	s.upgrader = ws.HTTPUpgrader{Timeout: opts.WriteTimeout}
	s.reg.init()
	s.wg.Add(1)
	go s.sweep()
	if !opts.GoroutinePerConn {
		s.ev.start(s)
	}
	return s
}

// ServeHTTP upgrades the request to a WebSocket connection and starts
// serving it; it returns without waiting for the connection to end. When
// MaxConns connections are served, or after Shutdown was called, it answers
// HTTP 503 with a Retry-After header instead. A request that is not a valid
// WebSocket handshake gets an HTTP error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.reserve() {
		s.refuse(w, s.opts.RetryAfter, "server at connection limit, retry later")
		return
	}
	if s.opts.Admit != nil && !s.opts.Admit() {
		s.stats.rejected.Add(1)
		s.release()
		s.refuse(w, s.opts.AdmitRetryAfter, "server busy, retry shortly")
		return
	}
	nc, rw, _, err := s.upgrader.Upgrade(r, w)
	if err != nil {
		s.stats.upgradeErrors.Add(1)
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		if nc != nil {
			_ = nc.Close()
		}
		s.release()
		return
	}
	s.start(nc, takeBuffered(rw.Reader))
}

// start serves an upgraded connection holding a slot from reserve. pending
// is what was read from nc past the handshake.
func (s *Server) start(nc net.Conn, pending []byte) {
	c := s.newConn(nc)
	// Adopted before it is registered, so that nobody sees c change mode.
	evented := s.ev.adopt(c)
	s.reg.add(c)
	if s.shutting.Load() {
		// Shutdown began during the handshake and may already have looked
		// at the registry; nobody would close this connection.
		s.reg.remove(c)
		s.goAway(c)
		s.release()
		return
	}
	s.stats.accepted.Add(1)
	s.stats.conns.Add(1)
	if evented {
		s.stats.evented.Add(1)
		s.ev.begin(c, pending)
		return
	}
	s.wg.Add(1)
	go c.serve(pending)
}

// takeBuffered returns a copy of what net/http read from the socket past the
// handshake, usually nothing: the client may have sent its first frames
// without waiting for the 101 response. The copy lets the 4 KiB bufio.Reader
// be garbage collected instead of staying with the connection.
func takeBuffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	p, _ := br.Peek(n)
	return append([]byte(nil), p...)
}

// reserve takes a connection slot, reporting false if the server is at
// MaxConns or shutting down.
func (s *Server) reserve() bool {
	if s.shutting.Load() {
		return false
	}
	for {
		n := s.active.Load()
		if s.opts.MaxConns > 0 && n >= int64(s.opts.MaxConns) {
			s.stats.rejected.Add(1)
			return false
		}
		if s.active.CompareAndSwap(n, n+1) {
			break
		}
	}
	if s.shutting.Load() {
		s.release()
		return false
	}
	return true
}

// release gives back a slot taken by reserve.
func (s *Server) release() {
	if s.active.Add(-1) == 0 && s.shutting.Load() {
		s.drainOnce.Do(func() { close(s.drained) })
	}
}

// refuse answers a request the server has no slot for.
func (s *Server) refuse(w http.ResponseWriter, base time.Duration, msg string) {
	d := base + rand.N(base/2+1)
	secs := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// goAway closes a connection upgraded after Shutdown began, telling the
// client with 1001 (going away) that it was not served.
func (s *Server) goAway(c *conn) {
	frame := appendCloseFrame(make([]byte, 0, 32), 1001, "shutting down")
	if c.nc == nil {
		c.evGoAway(frame)
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(s.opts.CloseTimeout))
	_, _ = c.nc.Write(frame)
	_ = c.nc.Close()
}

// Shutdown makes the server refuse new upgrades (HTTP 503), then waits until
// every connection has closed and its Session.Closed has returned; closing
// them is the caller's business. If ctx ends first, Shutdown closes the
// remaining sockets without a close frame (their sessions see 1006), waits
// for their readers to notice and returns ctx's error. On return every
// goroutine the server started has ended, event loops and workers included. A Session.Frame call that never
// returns blocks Shutdown, as the reader of its connection cannot end.
// Calling Shutdown again waits again and returns nil, or ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	if s.active.Load() == 0 {
		s.drainOnce.Do(func() { close(s.drained) })
	}
	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.reg.each(func(c *conn) { c.abort(err) })
		<-s.drained
	}
	// The loops stop only now: until every connection has finished, they
	// are what tells its reader and flusher about the socket.
	s.stopOnce.Do(func() {
		close(s.stop)
		s.ev.stop()
	})
	s.wg.Wait()
	return err
}

// now is the server's clock for idle tracking, in Unix nanoseconds.
func (s *Server) now() int64 { return s.opts.Now().UnixNano() }
