package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// maxServerHeader is the longest header of an unmasked frame.
const maxServerHeader = 10

// maxPooledFrames keeps a burst's unusually long batch out of the pool, so
// the pool does not hoard memory sized for the worst moment.
const maxPooledFrames = 4096

// outFrame is one frame waiting to be written.
type outFrame struct {
	p  []byte // payload; shared with the caller of Send, never modified
	op ws.OpCode
}

// batch is a run of frames written together with one writev. Batches are
// pooled by the Server and taken only while a connection has something to
// write, so an idle connection holds none.
type batch struct {
	frames []outFrame
	budget int // bytes counted in conn.queued for these frames
	texts  int // frames from Send, for Stats.FramesOut
	hdrs   []byte
	bufs   net.Buffers
	// work is bufs as consumed by WriteTo; a field rather than a local so
	// that WriteTo's pointer receiver does not allocate.
	work net.Buffers
	ctl  [2 + 125]byte // the close frame
	// withClose: the close frame, with code, follows the frames; set when
	// the batch is taken for writing.
	withClose bool
	code      int
	ev        evBatch // what the event loops' writes need
}

func (s *Server) getBatch() *batch {
	if b, ok := s.batches.Get().(*batch); ok {
		return b
	}
	return new(batch)
}

// putBatch returns b to the pool without the references it held, so pooled
// batches do not keep frames alive.
func (s *Server) putBatch(b *batch) {
	if cap(b.frames) > maxPooledFrames {
		return
	}
	clear(b.frames)
	b.frames = b.frames[:0]
	clear(b.bufs)
	b.bufs = b.bufs[:0]
	b.work = nil
	b.budget, b.texts = 0, 0
	b.withClose, b.code = false, 0
	b.ev.reset()
	s.batches.Put(b)
}

// Send implements Conn.
func (c *conn) Send(frame []byte) error {
	c.mu.Lock()
	start, err := c.enqueueLocked(ws.OpText, frame, len(frame))
	c.mu.Unlock()
	if start {
		c.startFlusher()
	}
	return err
}

// enqueueLocked queues a frame charging cost to the budget, with c.mu held.
// It reports whether the caller must start a flusher after unlocking. The
// budget is checked before queuing so that the queue never holds more than
// QueueBytes, even for a moment.
func (c *conn) enqueueLocked(op ws.OpCode, p []byte, cost int) (startFlusher bool, err error) {
	if c.closeReq || c.sockClosed {
		return false, ErrClosed
	}
	if c.queued+cost > c.srv.opts.QueueBytes {
		c.srv.stats.slowConsumers.Add(1)
		c.srv.log.Debug("slow consumer", "conn", c.id, "queued", c.queued, "frame", len(p))
		// The client will reconnect and resume; what is still queued
		// would only delay the close frame.
		_, start := c.closeLocked(c.srv.opts.SlowConsumerCode, "slow consumer", ErrSlowConsumer, true)
		return start, ErrSlowConsumer
	}
	if c.q == nil {
		c.q = c.srv.getBatch()
	}
	c.q.frames = append(c.q.frames, outFrame{p: p, op: op})
	c.q.budget += cost
	if op == ws.OpText {
		c.q.texts++
	}
	c.queued += cost
	c.hiwater = max(c.hiwater, c.queued)
	if c.flushing {
		return false, nil
	}
	c.flushing = true
	return true, nil
}

func (c *conn) startFlusher() {
	c.srv.wg.Add(1)
	go c.flushFn()
}

// flush writes the queue until it is empty, then exits: a connection has a
// write goroutine only while it has something to write. Each round writes
// everything queued so far, plus the close frame once closing, with one
// writev under one deadline. On a connection served by the event loops a
// round that finds the socket full parks its batch and the goroutine exits;
// the loop starts a new flusher when the socket is writable again, or the
// deadline timer does when the round's deadline passes.
func (c *conn) flush() {
	defer c.srv.wg.Done()
	for {
		c.mu.Lock()
		b, resumed := c.takeParkedLocked(), true
		if b == nil {
			b, resumed = c.q, false
			c.q = nil
		}
		// Nothing to write, unless the TLS layer wrote records of its own
		// (an alert, the answer to a key update) that the client must get.
		if c.sockClosed || (b == nil && (!c.closeReq || c.closeSent) && (c.closeSent || !c.evOutPending())) {
			if b != nil {
				c.queued -= b.budget
				c.srv.putBatch(b)
			}
			c.flushing = false
			fin := c.readerDone
			c.mu.Unlock()
			if fin {
				c.finish()
			}
			return
		}
		dl := c.wdl
		var reason string
		if !resumed {
			// Send refuses frames once closeReq is set, so when closing, b
			// is the last batch and the close frame can follow it.
			if b == nil {
				b = c.srv.getBatch()
			}
			b.withClose = c.closeReq && !c.closeSent
			b.code, reason = c.closeCode, c.closeReason
			dl = time.Now().Add(c.srv.opts.WriteTimeout).UnixNano()
			if c.closeReq {
				dl = min(dl, c.closeBy)
			}
			// Set under c.mu so that a concurrent closeLocked, which may
			// only shorten it, is not undone.
			c.setWriteDeadlineLocked(dl)
		}
		c.mu.Unlock()

		var (
			n   int64
			err error
		)
		if !resumed {
			b.prepare(b.withClose, b.code, reason)
			n, err = c.write(b)
		} else if time.Now().UnixNano() >= dl {
			err = os.ErrDeadlineExceeded
		} else {
			n, err = c.write(b)
		}
		c.srv.stats.bytesOut.Add(uint64(n))
		if err == errWouldBlock {
			if c.park(b) {
				return
			}
			continue
		}

		var closeNow, halfClose bool
		c.mu.Lock()
		c.queued -= b.budget
		if err != nil {
			c.srv.stats.writeErrors.Add(1)
			if c.cause == nil {
				c.cause = err
			}
			c.srv.log.Debug("write failed", "conn", c.id, "err", err)
			closeNow = !c.sockClosed
			c.sockClosed = true
			c.closing.Store(true)
		} else {
			c.srv.stats.framesOut.Add(uint64(b.texts))
			if b.withClose {
				c.closeSent = true
				if c.code == 0 {
					c.code = wireCode(b.code)
				}
				// With the client's close frame already read there is
				// nothing left to wait for; otherwise let the client
				// see end of stream and answer, while the reader waits
				// at most CloseTimeout for it.
				if c.readerDone || c.sockClosed {
					closeNow = !c.sockClosed
					c.sockClosed = true
				} else {
					halfClose = true
				}
			}
		}
		c.mu.Unlock()
		c.srv.putBatch(b)
		switch {
		case closeNow:
			c.closeSocket()
		case halfClose:
			c.halfClose()
		}
	}
}

// errWouldBlock is what writing to a socket served by the event loops
// returns when the socket cannot take more bytes now; the batch is then
// consumed up to what was written.
var errWouldBlock = errors.New("transport: socket full")

// coalesceBytes is the size of the chunks written to sockets without
// writev: one TLS record's worth of payload.
const coalesceBytes = 16 << 10

// write writes b's buffers, with one writev on TCP sockets; anything else
// gets them through writeCoalesced.
func (c *conn) write(b *batch) (int64, error) {
	if c.nc == nil {
		return c.evWrite(b)
	}
	if c.vectored {
		return b.work.WriteTo(c.nc)
	}
	return writeCoalesced(c.nc, &c.srv.bufs, b.work)
}

// writeCoalesced writes bufs to w, which is not a socket (TLS above all) and
// would turn net.Buffers into one Write per buffer, that is a record and a
// syscall for each header and each payload: the buffers are copied into
// chunks of up to coalesceBytes, while larger payloads are written as they
// are.
func writeCoalesced(w io.Writer, pool *bufPool, bufs net.Buffers) (int64, error) {
	bp := pool.get(coalesceBytes)
	defer pool.put(bp)
	chunk := (*bp)[:0]
	var n int64
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		m, err := w.Write(chunk)
		n += int64(m)
		chunk = chunk[:0]
		return err
	}
	for _, p := range bufs {
		if len(chunk)+len(p) <= cap(chunk) {
			chunk = append(chunk, p...)
			continue
		}
		if err := flush(); err != nil {
			return n, err
		}
		if len(p) <= cap(chunk) {
			chunk = append(chunk, p...)
			continue
		}
		m, err := w.Write(p)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, flush()
}

// prepare lays out b's frames, and the close frame if withClose, as
// header/payload pairs for one writev. Server frames are not masked, so
// payloads are written as they are, shared and untouched.
func (b *batch) prepare(withClose bool, code int, reason string) {
	if need := len(b.frames) * maxServerHeader; cap(b.hdrs) < need {
		b.hdrs = make([]byte, 0, max(need, 2*cap(b.hdrs)))
	}
	// hdrs never reallocates below, so the slices of it in bufs stay valid.
	b.hdrs = b.hdrs[:0]
	b.bufs = b.bufs[:0]
	for _, f := range b.frames {
		start := len(b.hdrs)
		b.hdrs = appendHeader(b.hdrs, f.op, len(f.p))
		b.bufs = append(b.bufs, b.hdrs[start:len(b.hdrs):len(b.hdrs)])
		if len(f.p) > 0 {
			b.bufs = append(b.bufs, f.p)
		}
	}
	if withClose {
		b.bufs = append(b.bufs, appendCloseFrame(b.ctl[:0], code, reason))
	}
	b.work = b.bufs
}

// appendHeader appends the header of an unmasked, final frame.
func appendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
	}
}

// appendCloseFrame appends a close frame with code and reason, the reason
// cut to fit a control frame. A code that may not appear on the wire is
// sent as a close frame without a body, which the peer reads as 1005.
func appendCloseFrame(dst []byte, code int, reason string) []byte {
	if !validCloseCode(code) {
		return append(dst, 0x80|byte(ws.OpClose), 0)
	}
	const maxReason = 125 - 2
	if len(reason) > maxReason {
		reason = reason[:maxReason]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	dst = append(dst, 0x80|byte(ws.OpClose), byte(2+len(reason)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// wireCode is the code a peer reads from appendCloseFrame(code).
func wireCode(code int) int {
	if !validCloseCode(code) {
		return 1005
	}
	return code
}

// validCloseCode reports whether code may be sent in a close frame (RFC 6455
// section 7.4 and the IANA registry).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
