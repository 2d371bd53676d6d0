//go:build linux

package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// readsPerPass bounds the reads of one pass, so that a client sending
// without pause gets its turn and then waits behind the others.
const readsPerPass = 16

// frameState is what a connection served by the event loops keeps between
// two reads when they did not end on a message boundary: the bytes of an
// incomplete header or control frame, the message being assembled, and,
// after a protocol error, where the discarding is. It comes from a pool and
// goes back as soon as the connection is at a message boundary again, so an
// idle connection holds none.
type frameState struct {
	hdr  [ws.MaxHeaderSize]byte // an incomplete header
	nhdr int
	// h is the frame whose payload is being read when inFrame; got of its
	// payload bytes have arrived, in msg (data) or ctl (control).
	h       ws.Header
	inFrame bool
	got     int64
	msg     *[]byte   // pooled buffer of the message being assembled, unmasked
	op      ws.OpCode // opcode of the message being assembled; 0 between messages
	ctl     [125]byte
	// pending is what net/http read past the handshake, read before the
	// socket by the first pass.
	pending []byte
	// draining: the client broke the rules (fail is how), and what it
	// sends is discarded, skip bytes of payload first, until its close
	// frame.
	draining bool
	skip     int64
	fail     end
}

// empty reports whether s holds nothing worth keeping.
func (s *frameState) empty() bool {
	return s.nhdr == 0 && !s.inFrame && s.msg == nil && s.pending == nil && !s.draining
}

// frameState returns c's read state, taking one from the pool if c has none.
func (c *conn) frameState() *frameState {
	if c.ev.rd == nil {
		st, _ := c.srv.ev.states.Get().(*frameState)
		if st == nil {
			st = new(frameState)
		}
		c.ev.rd = st
	}
	return c.ev.rd
}

// tidy returns c's read state to the pool once it holds nothing.
func (c *conn) tidy() {
	st := c.ev.rd
	if st == nil || !st.empty() {
		return
	}
	c.ev.rd = nil
	*st = frameState{}
	c.srv.ev.states.Put(st)
}

// readPass is what a worker does with a connection whose socket has news:
// it reads, and hands complete messages to Session.Frame one by one, until
// the socket has nothing more (then the connection waits for the loop's
// next notification), the pass has had its share (then the connection goes
// to the back of the queue) or the reader ends. Only one pass runs at a
// time per connection, and a read follows only once the messages of the
// previous one are handled: Frame's backpressure is a read's worth of
// bytes rather than a frame, so that small frames cost one read(2) per
// batch rather than two per frame.
//
// On a TLS connection the socket's bytes are ciphertext: a read takes the
// first half of buf, and the tls.Conn decrypts into the second half.
func (c *conn) readPass(buf []byte) {
	first := !c.ev.opened
	if first {
		c.ev.opened = true
		c.open()
	}
	c.ev.rs.Store(1)
	if st := c.ev.rd; st != nil && st.pending != nil {
		p := st.pending
		st.pending = nil
		if c.consume(p) {
			return
		}
	}
	var plain []byte
	if c.ev.tls != nil {
		buf, plain = buf[:len(buf)/2], buf[len(buf)/2:]
		// The tls.Conn may hold records that arrived with the handshake,
		// which the socket will not announce again.
		if first && c.tlsConsume(nil, plain) {
			return
		}
	}
	for i := 0; ; i++ {
		if stop := c.ev.stop.Load(); stop != 0 {
			err := error(net.ErrClosed)
			if stop&stopClosed == 0 {
				err = os.ErrDeadlineExceeded
			}
			c.endRead(end{kind: endLost, err: err})
			return
		}
		if i == readsPerPass {
			c.srv.ev.queue.push(c)
			return
		}
		dst, direct := buf, false
		if plain == nil {
			dst, direct = c.readTarget(buf)
		}
		n, err := unix.Read(c.ev.fd, dst)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			// Nothing more: wait for the loop, unless it told of news
			// since rs was last set, which this read may have missed.
			if c.ev.rs.CompareAndSwap(1, 0) {
				return
			}
			c.ev.rs.Store(1)
			continue
		case err != nil:
			c.endRead(end{kind: endLost, err: os.NewSyscallError("read", err)})
			return
		case n == 0:
			c.endRead(end{kind: endLost, err: c.eofError()})
			return
		}
		var done bool
		switch {
		case plain != nil:
			done = c.tlsConsume(dst[:n], plain)
		case direct:
			done = c.payloadRead(n)
		default:
			done = c.consume(dst[:n])
		}
		if done {
			return
		}
	}
}

// eofError is the error of a stream that ended: io.ErrUnexpectedEOF in the
// middle of a frame.
func (c *conn) eofError() error {
	if st := c.ev.rd; st != nil && (st.inFrame || st.nhdr > 0) {
		return io.ErrUnexpectedEOF
	}
	return io.EOF
}

// tlsConsume decrypts p, ciphertext just read, into plain, one buffer at a
// time, and consumes what it decrypts; records not complete yet stay in
// the tls.Conn until the next read. It reports whether the reader has
// ended: a bad record or the client's close_notify ends it as a lost
// connection would. If decrypting wrote records of the server's own (an
// alert, the answer to a key update), it starts a flusher to send them.
func (c *conn) tlsConsume(p, plain []byte) (done bool) {
	s := c.tlsSock()
	s.in = p
	defer func() { s.in = nil }()
	for {
		n, err := c.ev.tls.Read(plain)
		if n > 0 && c.consume(plain[:n]) {
			return true
		}
		if err == nil {
			continue
		}
		if errors.Is(err, errNeedInput) {
			break
		}
		if errors.Is(err, io.EOF) {
			err = c.eofError()
		}
		return c.endRead(end{kind: endLost, err: err})
	}
	if s.pending() {
		c.kickFlusher()
	}
	return false
}

// readTarget returns where the next read goes: straight into the message
// buffer, up to the end of the frame, while a data frame's payload is
// arriving (a large frame is then copied only by the kernel), else buf.
func (c *conn) readTarget(buf []byte) (dst []byte, direct bool) {
	st := c.ev.rd
	if st == nil || !st.inFrame || st.h.OpCode.IsControl() {
		return buf, false
	}
	left := int(st.h.Length - st.got)
	b := c.growMsg(st, left)
	return b[len(b):min(cap(b), len(b)+left)], true
}

// payloadRead accounts for n payload bytes read into the message buffer.
func (c *conn) payloadRead(n int) (done bool) {
	st := c.ev.rd
	b := *st.msg
	ws.Cipher(b[len(b):len(b)+n], st.h.Mask, int(st.got))
	*st.msg = b[:len(b)+n]
	st.got += int64(n)
	if st.got < st.h.Length {
		return false
	}
	done = c.frameDone(st)
	if !done {
		c.tidy()
	}
	return done
}

// growMsg makes room in st's message buffer for more of a frame of which
// left bytes have not arrived, and returns the buffer. It grows with what
// arrives rather than to what the header declares: a client declaring a
// large frame and sending it slowly, or never, holds no more than
// firstChunk until it actually sends more.
func (c *conn) growMsg(st *frameState, left int) []byte {
	pool := &c.srv.bufs
	if st.msg == nil {
		st.msg = pool.get(min(left, firstChunk))
	}
	b := *st.msg
	if len(b) == cap(b) && left > 0 {
		need := len(b) + left
		nb := pool.get(min(need, max(2*cap(b), firstChunk)))
		*nb = append(*nb, b...)
		pool.put(st.msg)
		st.msg = nb
		b = *nb
	}
	return b
}

// appendMsg appends unmasked payload bytes to st's message buffer; left
// bytes of the frame are still to come after them.
func (c *conn) appendMsg(st *frameState, p []byte, left int) {
	if st.msg == nil && len(p) > 0 {
		st.msg = c.srv.bufs.get(max(len(p), min(len(p)+left, firstChunk)))
	}
	for len(p) > 0 {
		b := c.growMsg(st, len(p)+left)
		k := copy(b[len(b):cap(b)], p)
		*st.msg = b[:len(b)+k]
		p = p[k:]
	}
}

// consume parses p, bytes just read, continuing the frame left incomplete
// by the previous read, and handles every message and control frame it
// completes. What is left of an incomplete frame is copied into the
// connection's frameState: p's buffer is the worker's. It reports whether
// the reader has ended.
func (c *conn) consume(p []byte) (done bool) {
	s := c.srv
	for len(p) > 0 {
		st := c.ev.rd
		switch {
		case st != nil && st.inFrame:
			k := int(min(int64(len(p)), st.h.Length-st.got))
			q := p[:k]
			p = p[k:]
			ws.Cipher(q, st.h.Mask, int(st.got))
			if st.h.OpCode.IsControl() {
				copy(st.ctl[st.got:], q)
			} else {
				c.appendMsg(st, q, int(st.h.Length-st.got)-k)
			}
			st.got += int64(k)
			if st.got < st.h.Length {
				return false
			}
			if c.frameDone(st) {
				return true
			}
			continue
		case st != nil && st.draining && st.skip > 0:
			k := int(min(int64(len(p)), st.skip))
			st.skip -= int64(k)
			p = p[k:]
			continue
		}

		// A header: from p, or completing the one in st.
		var hb []byte
		if st != nil && st.nhdr > 0 {
			for need := headerLen(st.hdr[:st.nhdr]); st.nhdr < need; need = headerLen(st.hdr[:st.nhdr]) {
				if len(p) == 0 {
					return false
				}
				k := copy(st.hdr[st.nhdr:need], p)
				st.nhdr += k
				p = p[k:]
			}
			hb = st.hdr[:st.nhdr]
			st.nhdr = 0
		} else {
			need := headerLen(p)
			if len(p) < need {
				st = c.frameState()
				st.nhdr = copy(st.hdr[:], p)
				return false
			}
			hb, p = p[:need], p[need:]
		}
		h, herr := parseHeader(hb)

		if st != nil && st.draining {
			// After a protocol error this may be parsing garbage; at
			// worst it stops early at a "close frame".
			switch {
			case herr != nil:
				return c.endRead(st.fail)
			case h.OpCode == ws.OpClose:
				e := st.fail
				e.peerClosed = true
				return c.endRead(e)
			}
			st.skip = h.Length
			continue
		}
		if herr != nil {
			if c.readFailed(failure(1002, ErrProtocol)) {
				return true
			}
			continue
		}
		c.lastRead.Store(s.now())
		s.stats.bytesIn.Add(uint64(len(hb)))
		if e, bad := c.check(h); bad {
			if c.readFailed(e) {
				return true
			}
			continue
		}
		if int64(len(p)) < h.Length {
			st = c.frameState()
			st.h, st.inFrame, st.got = h, true, int64(len(p))
			ws.Cipher(p, h.Mask, 0)
			if h.OpCode.IsControl() {
				copy(st.ctl[:], p)
			} else {
				c.appendMsg(st, p, int(h.Length)-len(p))
			}
			return false
		}
		payload := p[:h.Length]
		p = p[h.Length:]
		ws.Cipher(payload, h.Mask, 0)
		if c.frame(h, payload) {
			return true
		}
	}
	c.tidy()
	return false
}

// check validates a header as the goroutine reader does, with the same
// answers, and records the message's opcode.
func (c *conn) check(h ws.Header) (e end, bad bool) {
	e = failure(1002, ErrProtocol)
	e.skip = h.Length
	if h.Rsv != 0 || !h.Masked || h.OpCode.IsReserved() {
		return e, true
	}
	if h.OpCode.IsControl() {
		return e, h.Length > 125 || !h.Fin
	}
	var op ws.OpCode
	msgLen := 0
	if st := c.ev.rd; st != nil {
		op = st.op
		if st.msg != nil {
			msgLen = len(*st.msg)
		}
	}
	switch {
	case h.OpCode == ws.OpContinuation && op == 0:
		return e, true
	case h.OpCode != ws.OpContinuation && op != 0:
		return e, true
	}
	// Checked against the declared length, before reading or allocating
	// anything for the payload.
	if h.Length > int64(c.srv.opts.MaxFrameBytes-msgLen) {
		e = failure(1009, ErrMessageTooBig)
		e.skip = h.Length
		return e, true
	}
	if !h.Fin && h.OpCode != ws.OpContinuation {
		c.frameState().op = h.OpCode
	}
	return e, false
}

// frameDone handles the frame whose payload st has just completed.
func (c *conn) frameDone(st *frameState) (done bool) {
	st.inFrame = false
	h := st.h
	if h.OpCode.IsControl() {
		return c.control(h, st.ctl[:h.Length])
	}
	c.srv.stats.bytesIn.Add(uint64(h.Length))
	if h.Fin {
		c.deliver(st.message())
		c.releaseMsg()
	}
	return false
}

// frame handles a complete frame whose unmasked payload is p, in the
// worker's buffer.
func (c *conn) frame(h ws.Header, p []byte) (done bool) {
	if h.OpCode.IsControl() {
		return c.control(h, p)
	}
	c.srv.stats.bytesIn.Add(uint64(len(p)))
	st := c.ev.rd
	if h.Fin && (st == nil || st.op == 0) {
		// A message in one frame, the usual case, is handed over where
		// it was read.
		c.deliver(p)
		return false
	}
	// A fragment: check recorded the message's opcode in st.
	c.appendMsg(st, p, 0)
	if h.Fin {
		c.deliver(st.message())
		c.releaseMsg()
	}
	return false
}

// message is the message assembled in st.
func (st *frameState) message() []byte {
	if st.msg == nil {
		return []byte{}
	}
	return *st.msg
}

// deliver hands a complete message to the session. Once closing, messages
// are discarded (RFC 6455 section 1.4): whoever closed is done with the
// connection.
func (c *conn) deliver(p []byte) {
	if !c.closing.Load() {
		c.sess.Frame(p)
		c.srv.stats.framesIn.Add(1)
	}
}

// releaseMsg gives the message buffer back and ends the message.
func (c *conn) releaseMsg() {
	st := c.ev.rd
	if st == nil {
		return
	}
	if st.msg != nil {
		c.srv.bufs.put(st.msg)
		st.msg = nil
	}
	st.op = 0
}

// control handles a complete control frame.
func (c *conn) control(h ws.Header, p []byte) (done bool) {
	c.srv.stats.bytesIn.Add(uint64(len(p)))
	switch h.OpCode {
	case ws.OpPing:
		// The pong must outlive the read buffer; pings are rare enough
		// for a small allocation.
		pong := append([]byte(nil), p...)
		c.mu.Lock()
		start, _ := c.enqueueLocked(ws.OpPong, pong, len(pong)+2)
		c.mu.Unlock()
		if start {
			c.startFlusher()
		}
	case ws.OpClose:
		e := parseClose(p)
		if e.kind == endFail {
			c.releaseMsg()
			c.fail(e)
		}
		return c.endRead(e)
	}
	return false
}

// readFailed closes c after a client error and starts discarding what the
// client sends until its close frame, as the goroutine reader's drain does,
// for the same reasons. It reports whether the reader has ended.
func (c *conn) readFailed(e end) (done bool) {
	c.releaseMsg()
	c.fail(e)
	st := c.frameState()
	st.inFrame, st.nhdr = false, 0
	st.draining, st.skip, st.fail = true, e.skip, e
	return false
}

// endRead ends the reader with e, or with the error that started the
// discarding if the reader was discarding: the reader will not run again.
func (c *conn) endRead(e end) (done bool) {
	c.ev.rs.Store(rsDone)
	if st := c.ev.rd; st != nil {
		if st.draining && e.kind == endLost {
			e = st.fail
		}
		c.releaseMsg()
		*st = frameState{}
		c.srv.ev.states.Put(st)
		c.ev.rd = nil
	}
	c.readerExit(e)
	return true
}

// headerLen is the length of the header starting with b, or 2 if b is too
// short to tell.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 2
	}
	n := 2
	if b[1]&0x80 != 0 {
		n += 4
	}
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// parseHeader decodes a complete header, with ws.ReadHeader's checks.
func parseHeader(b []byte) (h ws.Header, err error) {
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	rest := b[2:]
	switch l := b[1] & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
	case 127:
		if rest[0]&0x80 != 0 {
			return h, ws.ErrHeaderLengthMSB
		}
		h.Length = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], rest)
	}
	return h, nil
}
