package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Errors Session.Closed receives when the client broke the rules.
var (
	// ErrProtocol: the client sent something RFC 6455 forbids (an unmasked
	// or malformed frame, RSV bits, a misplaced continuation...); the
	// connection was closed with 1002 or, for invalid UTF-8 in a close
	// reason, 1007.
	ErrProtocol = errors.New("transport: websocket protocol violation")
	// ErrMessageTooBig: a client message exceeded MaxFrameBytes; the
	// connection was closed with 1009.
	ErrMessageTooBig = errors.New("transport: message too big")
)

// firstChunk caps the buffer allocated for a message before its bytes
// arrive: a client declaring a large frame and sending it slowly, or never,
// holds no more than this until it actually sends more.
const firstChunk = 4 << 10

// endKind says why a reader stopped.
type endKind uint8

const (
	endLost      endKind = iota // reading failed: end of stream, reset, deadline
	endPeerClose                // the client sent a valid close frame
	endFail                     // the client broke the protocol or a limit
)

// end is a reader's outcome: for endPeerClose the client's code (1005 if
// the frame had none), for the others the error.
type end struct {
	kind endKind
	code int
	err  error
	// skip is, for endFail, what remains unread of the offending frame.
	skip int64
	// peerClosed: the client's close frame was read, so the client is
	// waiting for the server's and the socket must stay open until it is
	// written.
	peerClosed bool
}

// reader reads one connection's frames. It lives on the reader goroutine;
// between messages it holds no buffer.
type reader struct {
	c  *conn
	nc net.Conn
	// pending is what net/http had read past the handshake; it is read
	// before the socket.
	pending []byte
	hdr     [ws.MaxHeaderSize - 2]byte
	msg     *[]byte   // pooled buffer of the message being assembled; nil between messages
	op      ws.OpCode // opcode of the message being assembled; 0 between messages
}

// serve is a connection's reader goroutine: it opens the session, reads
// frames until the connection ends and then closes the connection.
func (c *conn) serve(pending []byte) {
	defer c.srv.wg.Done()
	c.open()
	r := &reader{c: c, nc: c.nc, pending: pending}
	e := r.run()
	r.releaseMsg()
	if e.kind == endFail {
		c.fail(e)
		if !e.peerClosed {
			e.peerClosed = r.drain(e.skip)
		}
	}
	c.readerExit(e)
}

// open hands c to the Handler, before anything is read from c.
func (c *conn) open() {
	sess := c.srv.h.Open(c)
	if sess == nil {
		sess = nopSession{}
	}
	c.sess = sess
}

// fail closes c after a client error: with OversizeFrame first if the
// message was too big. OversizeFrame is skipped if it does not fit in the
// budget: the close matters more.
func (c *conn) fail(e end) {
	s := c.srv
	c.mu.Lock()
	var start bool
	if e.code == 1009 && len(s.opts.OversizeFrame) > 0 && c.queued+len(s.opts.OversizeFrame) <= s.opts.QueueBytes {
		start, _ = c.enqueueLocked(ws.OpText, s.opts.OversizeFrame, len(s.opts.OversizeFrame))
	}
	started, start2 := c.closeLocked(e.code, "", e.err, false)
	c.mu.Unlock()
	if start || start2 {
		c.startFlusher()
	}
	if started && e.code == 1009 {
		s.stats.oversize.Add(1)
	}
	s.log.Debug("client error", "conn", c.id, "code", e.code, "err", e.err)
}

// Read reads the bytes net/http buffered, then the socket.
func (r *reader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		if len(r.pending) == 0 {
			r.pending = nil
		}
		return n, nil
	}
	return r.nc.Read(p)
}

// run reads frames and delivers messages until the connection must end.
func (r *reader) run() end {
	c, s := r.c, r.c.srv
	limit := s.opts.MaxFrameBytes
	for {
		h, err := ws.ReadHeaderBuffer(r, r.hdr[:])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return failure(1002, ErrProtocol)
			}
			return end{kind: endLost, err: err}
		}
		c.lastRead.Store(s.now())
		// Payload bytes are counted as they are read: a declared length
		// may never come.
		s.stats.bytesIn.Add(uint64(ws.HeaderSize(h)))
		bad := failure(1002, ErrProtocol)
		bad.skip = h.Length
		if h.Rsv != 0 || !h.Masked || h.OpCode.IsReserved() {
			return bad
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				return bad
			}
			if e, done := r.control(h); done {
				return e
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && r.op == 0:
			return bad
		case h.OpCode != ws.OpContinuation && r.op != 0:
			return bad
		case h.OpCode != ws.OpContinuation:
			r.op = h.OpCode
		}
		// Checked against the declared length, before reading or
		// allocating anything for the payload.
		if h.Length > int64(limit-r.msgLen()) {
			big := failure(1009, ErrMessageTooBig)
			big.skip = h.Length
			return big
		}
		if err := r.readPayload(int(h.Length), h.Mask); err != nil {
			return end{kind: endLost, err: err}
		}
		if !h.Fin {
			continue
		}
		data := []byte{}
		if r.msg != nil {
			data = *r.msg
		}
		// Once closing, messages are discarded (RFC 6455 section 1.4):
		// whoever closed is done with the connection.
		if !c.closing.Load() {
			c.sess.Frame(data)
			s.stats.framesIn.Add(1)
		}
		r.releaseMsg()
	}
}

func failure(code int, err error) end { return end{kind: endFail, code: code, err: err} }

func (r *reader) msgLen() int {
	if r.msg == nil {
		return 0
	}
	return len(*r.msg)
}

// readPayload appends n unmasked payload bytes to the message buffer. The
// buffer grows as bytes arrive, not to what the header declared.
func (r *reader) readPayload(n int, mask [4]byte) error {
	if n == 0 {
		return nil
	}
	start := r.msgLen()
	need := start + n
	pool := &r.c.srv.bufs
	if r.msg == nil {
		r.msg = pool.get(min(need, firstChunk))
	}
	for len(*r.msg) < need {
		b := *r.msg
		if len(b) == cap(b) {
			nb := pool.get(min(need, max(2*cap(b), firstChunk)))
			*nb = append(*nb, b...)
			pool.put(r.msg)
			r.msg = nb
			b = *nb
		}
		m, err := r.Read(b[len(b):min(cap(b), need)])
		*r.msg = b[:len(b)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	ws.Cipher((*r.msg)[start:need], mask, 0)
	r.c.srv.stats.bytesIn.Add(uint64(n))
	return nil
}

// releaseMsg gives the message buffer back to the pool.
func (r *reader) releaseMsg() {
	if r.msg != nil {
		r.c.srv.bufs.put(r.msg)
		r.msg = nil
	}
	r.op = 0
}

// control handles a control frame; done reports that the reader must stop.
func (r *reader) control(h ws.Header) (e end, done bool) {
	n := int(h.Length)
	pool := &r.c.srv.bufs
	bp := pool.get(n)
	defer pool.put(bp)
	p := (*bp)[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return end{kind: endLost, err: err}, true
	}
	ws.Cipher(p, h.Mask, 0)
	r.c.srv.stats.bytesIn.Add(uint64(n))
	switch h.OpCode {
	case ws.OpPing:
		c := r.c
		// The pong must outlive the pooled buffer; pings are rare enough
		// for a small allocation.
		pong := append([]byte(nil), p...)
		c.mu.Lock()
		start, _ := c.enqueueLocked(ws.OpPong, pong, len(pong)+2)
		c.mu.Unlock()
		if start {
			c.startFlusher()
		}
	case ws.OpClose:
		return parseClose(p), true
	}
	return end{}, false
}

// parseClose validates the body of a client's close frame.
func parseClose(p []byte) end {
	switch {
	case len(p) == 0:
		return end{kind: endPeerClose, code: 1005, peerClosed: true}
	}
	// A bad close frame is still the client's last frame.
	bad := failure(1002, ErrProtocol)
	bad.peerClosed = true
	code := 0
	if len(p) >= 2 {
		code = int(binary.BigEndian.Uint16(p))
	}
	if !validCloseCode(code) {
		return bad
	}
	if !utf8.Valid(p[2:]) {
		bad.code = 1007
		return bad
	}
	return end{kind: endPeerClose, code: code, peerClosed: true}
}

// drain reads and discards what the client still sends after a failure:
// the rest of the offending frame (skip bytes), then whole frames until the
// client's close frame, which it reports; or until the client hangs up or
// the close wait expires. Closing the socket with unread data would make
// the kernel answer with a reset, which can destroy the close frame (and
// OversizeFrame) before the client reads them; and stopping at the client's
// close frame spares a well-behaved client the wait.
func (r *reader) drain(skip int64) (peerClosed bool) {
	pool := &r.c.srv.bufs
	bp := pool.get(firstChunk)
	defer pool.put(bp)
	buf := (*bp)[:cap(*bp)]
	for {
		for skip > 0 {
			n, err := r.Read(buf[:min(int64(len(buf)), skip)])
			if err != nil {
				return false
			}
			skip -= int64(n)
		}
		// After a protocol error this may be parsing garbage; at worst
		// it stops early at a "close frame" or waits for the deadline.
		h, err := ws.ReadHeaderBuffer(r, r.hdr[:])
		if err != nil {
			return false
		}
		if h.OpCode == ws.OpClose {
			return true
		}
		skip = h.Length
	}
}

// nopSession stands in for a nil Session from Handler.Open.
type nopSession struct{}

func (nopSession) Frame([]byte)      {}
func (nopSession) Closed(int, error) {}
