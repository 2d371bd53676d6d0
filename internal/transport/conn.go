package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is the server side of one WebSocket connection and implements Conn.
//
// Its life: ServeHTTP registers it and starts its reader, which opens the
// Session and reads frames. The reader is either a goroutine of its own
// (serve, for connections whose socket the event loops cannot take, or when
// Options say so) or read passes that the event loops schedule on the
// worker pool when the socket has data (readPass, on Linux; over TLS too
// when the connection comes from NewTLSListener). Frames to write go through Send into
// a queue that a short-lived flusher goroutine drains. Closing, from any
// side, ends with the socket closed, the reader gone and no flusher running;
// whichever of the reader and the flusher sees that state last calls finish,
// which reports Session.Closed.
//
// An idle connection holds this struct and the socket, plus, with a reader
// goroutine, that goroutine blocked in Read: no write goroutine, no timer
// and no buffer.
type conn struct {
	srv *Server
	id  uint64
	// nc is the socket of a connection with a reader goroutine; nil for one
	// served by the event loops, which owns the file descriptor in ev.
	nc    net.Conn
	raddr net.Addr // the peer's address when nc is nil
	// flushFn is c.flush as a func value, made once, because `go c.flush()`
	// allocates a closure on every call and Send starts flushers often.
	flushFn func()
	// vectored: nc is a TCP socket, written with writev.
	vectored bool
	sess     Session // set by serve before the first read

	lastRead atomic.Int64  // srv.now() when the last frame header arrived
	idle     atomic.Uint64 // packIdle(timeout, code); 0: no idle timeout
	closing  atomic.Bool   // closeReq || sockClosed, for the reader's lock-free check

	mu sync.Mutex
	q  *batch // frames not yet taken by the flusher; nil when none
	// queued counts the budgeted bytes of q plus those of the batch being
	// written; hiwater is its maximum, kept for tests.
	queued, hiwater int
	flushing        bool  // a flusher goroutine is running
	wdl             int64 // write deadline in force, Unix nanoseconds
	closeReq        bool  // a close frame is to be written after q
	closeSent       bool  // the close frame was written
	closeCode       int
	closeReason     string
	closeBy         int64 // real-clock deadline for all writing once closeReq is set
	readerDone      bool
	sockClosed      bool
	code            int   // close code reported to Closed; 0 until one is sent or received
	cause           error // reported to Closed

	ev evConn // the event loops' state of the connection; unused with nc
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{srv: s, id: s.nextID.Add(1), nc: nc}
	c.flushFn = c.flush
	_, c.vectored = nc.(*net.TCPConn)
	c.lastRead.Store(s.now())
	return c
}

// ID implements Conn.
func (c *conn) ID() uint64 { return c.id }

// RemoteAddr implements Conn.
func (c *conn) RemoteAddr() net.Addr {
	if c.nc == nil {
		return c.raddr
	}
	return c.nc.RemoteAddr()
}

// Close implements Conn.
func (c *conn) Close(code int, reason string) {
	c.closeWith(code, reason, nil, false)
}

// SetIdleTimeout implements Conn.
func (c *conn) SetIdleTimeout(d time.Duration, code int) {
	c.idle.Store(packIdle(d, code))
}

// closeWith starts closing c with code unless it is already closing, and
// reports whether it did. cause is what Session.Closed will receive. drop
// discards the frames not yet handed to the flusher.
func (c *conn) closeWith(code int, reason string, cause error, drop bool) bool {
	c.mu.Lock()
	started, start := c.closeLocked(code, reason, cause, drop)
	c.mu.Unlock()
	if start {
		c.startFlusher()
	}
	return started
}

// closeLocked is closeWith with c.mu held. It reports whether it started the
// close and whether the caller must start a flusher (after unlocking) to
// write the close frame. It never touches the network beyond moving a
// deadline, so that Send and Close never block.
func (c *conn) closeLocked(code int, reason string, cause error, drop bool) (started, startFlusher bool) {
	if c.closeReq || c.sockClosed {
		return false, false
	}
	c.closeReq = true
	c.closing.Store(true)
	c.closeCode, c.closeReason = code, reason
	if c.cause == nil {
		c.cause = cause
	}
	c.closeBy = time.Now().Add(c.srv.opts.CloseTimeout).UnixNano()
	if drop && c.q != nil {
		c.queued -= c.q.budget
		c.srv.putBatch(c.q)
		c.q = nil
	}
	if c.flushing {
		// The write in progress must not outlive CloseTimeout either.
		if c.closeBy < c.wdl {
			c.setWriteDeadlineLocked(c.closeBy)
		}
		return true, false
	}
	c.flushing = true
	return true, true
}

// abort closes the socket at once, without a close frame; the reader and any
// flusher fail and finish the connection. Shutdown uses it when its context
// ends.
func (c *conn) abort(cause error) {
	c.mu.Lock()
	if c.sockClosed {
		c.mu.Unlock()
		return
	}
	c.sockClosed = true
	c.closing.Store(true)
	if c.cause == nil {
		c.cause = cause
	}
	c.mu.Unlock()
	c.closeSocket()
}

// readerExit records why the reader stopped and closes the socket, unless
// the client sent a close frame and a flusher still has to write the
// server's: then the flusher closes the socket after writing it.
func (c *conn) readerExit(e end) {
	var start, closeNow bool
	c.mu.Lock()
	if e.kind == endPeerClose {
		if c.code == 0 {
			c.code = e.code
		}
		_, start = c.closeLocked(e.code, "", nil, false)
	} else if c.cause == nil && !c.closeReq {
		// Once closing was asked for, a read error (the client hanging
		// up, the close wait expiring) is the expected end, not a cause.
		c.cause = e.err
	}
	c.readerDone = true
	if !(e.peerClosed && c.closeReq && !c.closeSent && c.flushing) && !c.sockClosed {
		c.sockClosed = true
		c.closing.Store(true)
		closeNow = true
	}
	fin := !c.flushing
	c.mu.Unlock()
	if start {
		c.startFlusher()
	}
	if closeNow {
		c.closeSocket()
	}
	if fin {
		c.finish()
	}
}

// finish reports the end of the connection; it runs exactly once, when the
// reader has exited, no flusher runs and the socket is closed, so nothing
// touches the connection afterwards but Send and Close returning early.
func (c *conn) finish() {
	// The socket was marked closed, but whoever marked it may not have
	// closed it yet.
	c.releaseSocket()
	c.srv.reg.remove(c)
	c.mu.Lock()
	code, cause := c.code, c.cause
	c.mu.Unlock()
	if code == 0 {
		code = 1006
	}
	c.srv.log.Debug("connection closed", "conn", c.id, "code", code, "err", cause)
	c.sess.Closed(code, cause)
	c.srv.stats.conns.Add(-1)
	c.srv.release()
}

// The socket operations below are the only ones that differ between a
// connection with a reader goroutine (nc) and one served by the event loops,
// whose versions are in ev_linux.go.

// closeSocket makes the socket unusable, so that the reader and any flusher
// fail and finish the connection.
func (c *conn) closeSocket() {
	if c.nc == nil {
		c.evCloseSocket()
		return
	}
	_ = c.nc.Close()
}

// releaseSocket closes the socket for good; finish calls it, once nothing
// else can touch the socket.
func (c *conn) releaseSocket() {
	if c.nc == nil {
		c.evRelease()
		return
	}
	_ = c.nc.Close()
}

// setWriteDeadlineLocked sets the deadline of the writes in progress or to
// come, in Unix nanoseconds, with c.mu held.
func (c *conn) setWriteDeadlineLocked(dl int64) {
	c.wdl = dl
	if c.nc == nil {
		c.evArmTimerLocked()
		return
	}
	_ = c.nc.SetWriteDeadline(time.Unix(0, dl))
}

// halfClose ends the server's side of the stream once its close frame is
// written and bounds the wait for the client's answer by CloseTimeout.
func (c *conn) halfClose() {
	if c.nc == nil {
		c.evHalfClose()
		return
	}
	// Outside c.mu: on TLS both may write an alert.
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.CloseTimeout))
}
