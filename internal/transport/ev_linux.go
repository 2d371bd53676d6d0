//go:build linux

package transport

import (
	"crypto/tls"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TCP connections, plain or TLS from NewTLSListener, are served on Linux by
// event loops rather than by a reader goroutine each (see loop_linux.go,
// the loops; workers_linux.go, the goroutines that read and call
// Session.Frame; evread_linux.go, reading).
//
// TLS: the handshake is net/http's, done on its goroutine through the
// tlsSock under the tls.Conn, which is then still the socket. Adopting the
// connection detaches the tlsSock from the socket: from then on read passes
// feed it the ciphertext they read and decrypt with the tls.Conn, and
// flushers encrypt into its output buffer and write that out, so that the
// tls.Conn never blocks and nothing waits in it.
//
// The file descriptor: once upgraded, the connection's socket is
// duplicated, the copy registered with a loop's epoll, and the net.Conn
// closed. The connection then owns a raw descriptor that the runtime's
// netpoller has never seen, so that nothing else waits on it, and holds
// none of what the net.Conn would (its netFD, the runtime's poll
// descriptor, the writev iovec cache it keeps forever). The price is that
// the descriptor's life is this package's business: it is closed only by
// finish (evRelease), when no read pass, flusher or parked write can use it
// any more; until then, "closing the socket" means shutdown(2), which ends
// the stream both ways without freeing the descriptor number for reuse by
// another connection under a concurrent read or write.

// evServer is a Server's event loops and worker pool.
type evServer struct {
	loops  []*loop
	queue  runQueue
	states sync.Pool // *frameState
}

// maxLoops bounds the event loops: a loop's work per notification (a
// lookup and a hand-off) is small, so a few of them keep up with many
// cores.
const maxLoops = 8

// start creates the loops, one per GOMAXPROCS, and the worker pool. If the
// kernel refuses an epoll instance, connections get reader goroutines.
func (e *evServer) start(s *Server) {
	n := min(runtime.GOMAXPROCS(0), maxLoops)
	for range n {
		l, err := newLoop(s)
		if err != nil {
			s.log.Warn("event loop unavailable, serving connections with goroutines", "err", err)
			for _, l := range e.loops {
				l.stop()
			}
			e.loops = nil
			return
		}
		e.loops = append(e.loops, l)
	}
	e.queue.init(s, runtime.GOMAXPROCS(0), s.opts.FrameWorkers)
	for _, l := range e.loops {
		s.wg.Add(1)
		go l.run()
	}
}

// stop ends the loops and the workers. Shutdown calls it once every
// connection has finished, so that none needs them any more.
func (e *evServer) stop() {
	for _, l := range e.loops {
		l.stop()
	}
	if e.loops != nil {
		e.queue.stop()
	}
}

// evConn is a connection's event-loop state.
type evConn struct {
	fd int
	// rs is the read state: 0 when the connection waits for the socket to
	// have data, else a read pass is queued or running and rs counts the
	// notifications since it last looked, so that it reads again rather
	// than wait for a notification it already consumed. rsDone once the
	// reader has exited.
	rs atomic.Uint32
	// stop tells the next read pass to end the reader: stopClosed,
	// stopDeadline.
	stop atomic.Uint32
	// wready: EPOLLOUT arrived since the flusher last tried to write.
	wready atomic.Bool
	// wwait: a flusher parked wb until the socket is writable; changed
	// under conn.mu only.
	wwait atomic.Bool

	// tls is the TLS layer of a connection from NewTLSListener, whose
	// reads and writes pass through its tlsSock; nil for plain ones.
	tls *tls.Conn

	next   *conn       // the run queue's link, under its lock
	rd     *frameState // read state between passes; nil at a message boundary
	opened bool        // Handler.Open was called; read passes only

	// Under conn.mu.
	wb       *batch      // the batch a parked flusher has not finished
	timer    *time.Timer // exists only while a deadline below is pending
	rdl      int64       // read deadline after the half-close; 0: none
	fdClosed bool
}

const rsDone = 1 << 31

// Why a read pass must end the reader.
const (
	stopClosed   = 1 << iota // the socket was closed
	stopDeadline             // the client did not answer the close in time
)

// evBatch is the iovec array a batch is written with, kept with the pooled
// batch so that writing allocates nothing.
type evBatch struct {
	iov []unix.Iovec
}

func (b *evBatch) reset() {
	clear(b.iov)
	b.iov = b.iov[:0]
}

// adopt moves c, not yet registered, to an event loop if its socket is a
// plain TCP one (or a Unix stream socket, which behaves the same) or a TLS
// connection over TCP from NewTLSListener, and reports whether it did;
// anything going wrong leaves c as it was, to be served by a goroutine.
// Other wrappers hide their socket, or are not one.
func (e *evServer) adopt(c *conn) bool {
	var sc interface {
		net.Conn
		SyscallConn() (syscall.RawConn, error)
	}
	var ts *tlsSock
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		sc = nc
	case *net.UnixConn:
		if nc.LocalAddr().Network() != "unix" {
			return false
		}
		sc = nc
	case *tls.Conn:
		s, ok := nc.NetConn().(*tlsSock)
		if !ok || s.Conn == nil {
			return false
		}
		if tc, ok := s.Conn.(*net.TCPConn); ok {
			sc, ts = tc, s
		}
	}
	if sc == nil || len(e.loops) == 0 {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return false
	}
	// Edge-triggered: each arrival of data, or of room to write, is told
	// once, so the loop never hears about a connection whose pass has not
	// finished with what was already there, and never has to be told to
	// stop listening (one epoll_ctl per connection, none per message). The
	// price is that a pass must read until EAGAIN before it may wait again.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET}
	ev.Fd, ev.Pad = int32(uint32(c.id)), int32(uint32(c.id>>32))
	l := e.loops[c.id%uint64(len(e.loops))]
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = unix.Close(fd)
		return false
	}
	c.raddr = sc.RemoteAddr()
	c.ev.fd = fd
	if ts != nil {
		// Room for one batch's records and what is left of the previous
		// one's, with a margin for the records' overhead and alerts.
		ts.adopt(&c.srv.bufs, 2*c.srv.opts.QueueBytes+64<<10)
		c.ev.tls = c.nc.(*tls.Conn)
	}
	// The first pass, queued by begin, owns the reader: notifications
	// before it only count.
	c.ev.rs.Store(1)
	_ = sc.Close()
	c.nc = nil
	return true
}

// begin schedules c's first read pass, which opens its session and reads
// pending, what came with the handshake, before the socket.
func (e *evServer) begin(c *conn, pending []byte) {
	if len(pending) > 0 {
		c.frameState().pending = pending
	}
	e.queue.push(c)
}

// evGoAway writes frame, a close frame, to a connection that will not be
// served, and closes it. The socket is new, so its buffer takes the frame.
func (c *conn) evGoAway(frame []byte) {
	if tc := c.ev.tls; tc != nil {
		if _, err := tc.Write(frame); err == nil {
			_ = c.tlsSock().flushOut(c.writeFD)
		}
	} else {
		_, _ = unix.Write(c.ev.fd, frame)
	}
	c.ev.fdClosed = true
	_ = unix.Close(c.ev.fd)
}

// readQueued reports whether c's socket has news that no read pass has
// looked at yet: a pass is queued, waiting for a worker, or running. The
// idle sweeper spares such a connection, because when every worker is
// busy (a reconnect storm) the wait is the server's doing. A connection
// with a reader goroutine reads at once, so never has any.
func (c *conn) readQueued() bool {
	if c.nc != nil {
		return false
	}
	rs := c.ev.rs.Load()
	return rs != 0 && rs != rsDone
}

// kickReader makes sure a read pass will look at c: the loop calls it when
// the socket has news, and closing calls it so that the reader notices.
func (c *conn) kickReader() {
	if c.ev.rs.Add(1) == 1 {
		c.srv.ev.queue.push(c)
	}
}

// writable is the loop's news that c's socket has room again.
func (c *conn) writable() {
	c.ev.wready.Store(true)
	if !c.ev.wwait.Load() {
		return
	}
	c.mu.Lock()
	c.resumeWriterLocked()
	c.mu.Unlock()
}

// resumeWriterLocked starts a flusher for a parked batch, with c.mu held.
func (c *conn) resumeWriterLocked() {
	if !c.ev.wwait.Load() {
		return
	}
	c.ev.wwait.Store(false)
	c.evArmTimerLocked()
	c.startFlusher()
}

// takeParkedLocked returns the batch a flusher parked, if any, with c.mu
// held.
func (c *conn) takeParkedLocked() *batch {
	b := c.ev.wb
	c.ev.wb = nil
	return b
}

// park keeps b, which the socket could not take whole, until the socket is
// writable, and reports whether the calling flusher must exit (leaving
// c.flushing set: the write is still in progress). It reports false if the
// flusher should go on at once: the socket became writable meanwhile or was
// closed.
func (c *conn) park(b *batch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ev.wb = b
	if c.sockClosed {
		return false
	}
	// wwait is set before wready is looked at, and writable sets wready
	// before looking at wwait, so one of them sees the other's.
	c.ev.wwait.Store(true)
	if c.ev.wready.Load() {
		c.ev.wwait.Store(false)
		return false
	}
	c.evArmTimerLocked()
	return true
}

// evWrite writes b's buffers with writev until they are all written or the
// socket is full (errWouldBlock).
func (c *conn) evWrite(b *batch) (int64, error) {
	if c.ev.tls != nil {
		return c.evTLSWrite(b)
	}
	var total int64
	for len(b.work) > 0 {
		iov := b.ev.iov[:0]
		for _, p := range b.work[:min(len(b.work), maxIovecs)] {
			v := unix.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			iov = append(iov, v)
		}
		b.ev.iov = iov
		c.ev.wready.Store(false)
		n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(c.ev.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return total, errWouldBlock
		default:
			return total, os.NewSyscallError("writev", errno)
		}
		total += int64(n)
		consumeBuffers(&b.work, int64(n))
	}
	return total, nil
}

// evTLSWrite encrypts b's buffers, which it consumes at once, into the
// tlsSock's output, then writes that to the socket until it is empty or the
// socket is full (errWouldBlock); a resumed batch has only the output left
// to write. It returns the plaintext bytes it took, as writing over a
// tls.Conn does.
func (c *conn) evTLSWrite(b *batch) (int64, error) {
	var n int64
	if len(b.work) > 0 {
		var err error
		n, err = writeCoalesced(c.ev.tls, &c.srv.bufs, b.work)
		b.work = nil
		if err != nil {
			return n, err
		}
	}
	return n, c.tlsSock().flushOut(c.writeFD)
}

// writeFD writes p to the socket with one write(2), returning errWouldBlock
// if the socket is full.
func (c *conn) writeFD(p []byte) (int, error) {
	for {
		c.ev.wready.Store(false)
		n, err := unix.Write(c.ev.fd, p)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		default:
			return 0, os.NewSyscallError("write", err)
		}
	}
}

// tlsSock returns the socket wrapper of c's TLS layer, when it has one.
func (c *conn) tlsSock() *tlsSock {
	if c.ev.tls == nil {
		return nil
	}
	return c.ev.tls.NetConn().(*tlsSock)
}

// evOutPending reports, with c.mu held, whether c's TLS layer wrote what
// the socket has not taken yet, such as an alert written while reading.
func (c *conn) evOutPending() bool {
	s := c.tlsSock()
	return s != nil && s.pending()
}

// kickFlusher starts a flusher unless one runs, so that what the TLS layer
// wrote while reading reaches the socket.
func (c *conn) kickFlusher() {
	c.mu.Lock()
	start := !c.flushing && !c.sockClosed
	if start {
		c.flushing = true
	}
	c.mu.Unlock()
	if start {
		c.startFlusher()
	}
}

// maxIovecs is the kernel's IOV_MAX.
const maxIovecs = 1024

// consumeBuffers drops n written bytes from the front of v.
func consumeBuffers(v *net.Buffers, n int64) {
	for len(*v) > 0 {
		l := int64(len((*v)[0]))
		if l > n {
			(*v)[0] = (*v)[0][n:]
			return
		}
		n -= l
		(*v)[0] = nil
		*v = (*v)[1:]
	}
}

// evCloseSocket shuts the socket down both ways and makes the reader and a
// parked flusher notice. The descriptor stays open until finish.
func (c *conn) evCloseSocket() {
	c.mu.Lock()
	if !c.ev.fdClosed {
		_ = unix.Shutdown(c.ev.fd, unix.SHUT_RDWR)
	}
	c.resumeWriterLocked()
	c.mu.Unlock()
	c.ev.stop.Or(stopClosed)
	c.kickReader()
}

// evHalfClose ends the server's side of the stream and arms the deadline of
// the wait for the client's close frame.
func (c *conn) evHalfClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ev.fdClosed {
		return
	}
	if tc := c.ev.tls; tc != nil {
		// close_notify first, if the socket takes it now; the WebSocket
		// close already said all there is to say.
		if tc.CloseWrite() == nil {
			_ = c.tlsSock().flushOut(c.writeFD)
		}
	}
	_ = unix.Shutdown(c.ev.fd, unix.SHUT_WR)
	c.ev.rdl = time.Now().Add(c.srv.opts.CloseTimeout).UnixNano()
	c.evArmTimerLocked()
}

// evRelease closes the descriptor; finish calls it when nothing else can
// use it.
func (c *conn) evRelease() {
	c.mu.Lock()
	if c.ev.fdClosed {
		c.mu.Unlock()
		return
	}
	c.ev.fdClosed = true
	c.ev.rdl = 0
	c.evArmTimerLocked()
	c.mu.Unlock()
	if s := c.tlsSock(); s != nil {
		s.discard()
	}
	_ = unix.Close(c.ev.fd)
}

// evArmTimerLocked sets c's timer to the nearest pending deadline (the
// parked write's, the read's after the half-close), or drops it when none
// is, with c.mu held. A connection has a timer only while one is pending,
// so an idle connection has none.
func (c *conn) evArmTimerLocked() {
	if c.nc != nil {
		return
	}
	var next int64
	if c.ev.wwait.Load() {
		next = c.wdl
	}
	if c.ev.rdl != 0 && (next == 0 || c.ev.rdl < next) {
		next = c.ev.rdl
	}
	switch {
	case next == 0:
		if c.ev.timer != nil {
			c.ev.timer.Stop()
			c.ev.timer = nil
		}
	case c.ev.timer == nil:
		c.ev.timer = time.AfterFunc(time.Until(time.Unix(0, next)), c.onDeadline)
	default:
		c.ev.timer.Reset(time.Until(time.Unix(0, next)))
	}
}

// onDeadline runs when c's timer fires: a parked write past its deadline
// gets a flusher, which fails it; a reader past its deadline is told to
// stop.
func (c *conn) onDeadline() {
	now := time.Now().UnixNano()
	kick := false
	c.mu.Lock()
	if c.ev.rdl != 0 && now >= c.ev.rdl {
		c.ev.rdl = 0
		c.ev.stop.Or(stopDeadline)
		kick = true
	}
	if c.ev.wwait.Load() && now >= c.wdl {
		c.resumeWriterLocked()
	}
	c.evArmTimerLocked()
	c.mu.Unlock()
	if kick {
		c.kickReader()
	}
}
