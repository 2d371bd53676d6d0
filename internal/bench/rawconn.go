package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/floodgate/floodgate/protocol"
)

// readBufferBytes sizes each connection's read buffer. Frames the bench
// receives are a few hundred bytes; a bigger buffer would only multiply
// the tool's memory by the connection count.
const readBufferBytes = 1024

// maxFrameBytes bounds a frame from the server (a sync reply stops at
// about 1 MiB).
const maxFrameBytes = 8 << 20

// writeTimeout bounds every write: a server that stops reading must not
// stall a sender for ever.
const writeTimeout = 10 * time.Second

// errConnClosed fails the requests still waiting when a connection ends.
var errConnClosed = errors.New("connection closed")

// replyFunc receives the reply to a request, or err when the connection
// ended first. It runs on the connection's reader goroutine and must not
// block.
type replyFunc func(f *protocol.Frame, err error)

// msgEvent is what the bench needs of a "message" event.
type msgEvent struct {
	Conv   string
	Seq    uint64
	Sender string
	// SentNS is the sender's clock (Unix nanoseconds) stamped in the body
	// by the bench, 0 for bodies it did not write.
	SentNS int64
}

// rawConn is a lean protocol v1 client: one socket, a small read buffer,
// one reader goroutine, and nothing else per connection. It speaks the
// protocol by hand (no reconnect, no resume) because the scenarios that use
// it measure the server, and the SDK's machinery would cost the tool more
// than the server per connection.
type rawConn struct {
	nc   net.Conn
	br   *bufio.Reader
	user string
	auth protocol.AuthResult // set once authenticated

	wmu sync.Mutex // serialises frames on the socket

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]replyFunc
	closed  bool
	code    int   // close code received from the server, 0 if none
	err     error // why the reader stopped
	// onEnd runs once when the reader stops; dropped is false when the
	// bench closed the connection itself.
	onEnd func(c *rawConn, dropped bool)

	// onMessage sees message events on the reader goroutine; set it
	// before start. It must not block. Other events are ignored, as a
	// client ignores what it does not use.
	onMessage func(c *rawConn, m msgEvent)

	lastWrite atomic.Int64 // Unix nanoseconds, for the keepalive
	closing   atomic.Bool  // Close was called: the end is not a drop
	done      chan struct{}
	closeOnce sync.Once
}

// newRawConn wraps an upgraded WebSocket. buffered is what the dialer read
// past the handshake.
func newRawConn(nc net.Conn, buffered []byte, user string) *rawConn {
	var src io.Reader = nc
	if len(buffered) > 0 {
		src = io.MultiReader(bytes.NewReader(buffered), nc)
	}
	c := &rawConn{nc: nc, br: bufio.NewReaderSize(src, readBufferBytes), user: user,
		pending: make(map[uint64]replyFunc), done: make(chan struct{})}
	c.lastWrite.Store(time.Now().UnixNano())
	return c
}

// start runs the reader until the connection ends or deadline, which bounds
// every read: the run's end.
func (c *rawConn) start(deadline time.Time) {
	_ = c.nc.SetReadDeadline(deadline)
	go c.readLoop()
}

// Alive reports whether the reader still runs.
func (c *rawConn) Alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// CloseCode returns the server's close code (0 when none was received).
func (c *rawConn) CloseCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code
}

// ReadErr returns why the reader stopped (nil while it runs).
func (c *rawConn) ReadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *rawConn) readLoop() {
	defer close(c.done)
	err := c.read()
	c.mu.Lock()
	c.closed = true
	if c.err == nil {
		c.err = err
	}
	pending := c.pending
	c.pending = nil
	onEnd := c.onEnd
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, cb := range pending {
		cb(nil, errConnClosed)
	}
	if onEnd != nil {
		onEnd(c, !c.closing.Load())
	}
}

// setOnEnd installs f to run when the reader stops, or runs it now if it
// already has, so that a connection that ends while it is being counted
// is never missed.
func (c *rawConn) setOnEnd(f func(c *rawConn, dropped bool)) {
	c.mu.Lock()
	if !c.closed {
		c.onEnd = f
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	<-c.done
	f(c, !c.closing.Load())
}

func (c *rawConn) read() error {
	hb := make([]byte, ws.MaxHeaderSize)
	var msg []byte // a fragmented message being assembled
	for {
		h, err := ws.ReadHeaderBuffer(c.br, hb)
		if err != nil {
			return err
		}
		if h.Length > maxFrameBytes || int64(len(msg))+h.Length > maxFrameBytes {
			return fmt.Errorf("frame of %d bytes from the server", h.Length)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return err
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			if err := c.writeFrame(ws.OpPong, payload); err != nil {
				return err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code := 1005 // no status received
			if len(payload) >= 2 {
				code = int(binary.BigEndian.Uint16(payload))
			}
			c.mu.Lock()
			c.code = code
			c.mu.Unlock()
			_ = c.writeFrame(ws.OpClose, payload[:min(len(payload), 2)])
			return fmt.Errorf("closed by the server with %d", code)
		}
		if !h.Fin {
			msg = append(msg, payload...)
			continue
		}
		if msg != nil {
			payload, msg = append(msg, payload...), nil
		}
		c.dispatch(payload)
	}
}

// dispatch routes one server frame: message events take the fast path, the
// rest is decoded as a protocol.Frame.
func (c *rawConn) dispatch(data []byte) {
	if m, ok := parseMessageEvent(data); ok {
		if c.onMessage != nil {
			c.onMessage(c, m)
		}
		return
	}
	var f protocol.Frame
	if err := json.Unmarshal(data, &f); err != nil {
		return // not the protocol: ignored, as a client ignores what it does not know
	}
	if f.Ev != "" {
		var pm protocol.Message
		if f.Ev == protocol.EvMessage && c.onMessage != nil && json.Unmarshal(f.Data, &pm) == nil {
			var body struct {
				T int64 `json:"t"`
			}
			_ = json.Unmarshal(pm.Body, &body) // a body the bench did not write has no time
			c.onMessage(c, msgEvent{Conv: pm.Conv, Seq: pm.Seq, Sender: pm.Sender, SentNS: body.T})
		}
		return
	}
	c.mu.Lock()
	cb := c.pending[f.ID]
	delete(c.pending, f.ID)
	c.mu.Unlock()
	if cb != nil {
		cb(&f, nil)
	}
}

// Post sends a request and calls cb with its reply. args is already
// encoded JSON (nil for none). A failed write fails the connection and is
// returned; cb is then never called.
func (c *rawConn) Post(op string, args []byte, cb replyFunc) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errConnClosed
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cb
	c.mu.Unlock()
	frame := make([]byte, 0, len(args)+len(op)+40)
	frame = append(frame, `{"id":`...)
	frame = strconv.AppendUint(frame, id, 10)
	frame = append(frame, `,"op":"`...)
	frame = append(frame, op...)
	frame = append(frame, '"')
	if len(args) > 0 {
		frame = append(frame, `,"args":`...)
		frame = append(frame, args...)
	}
	frame = append(frame, '}')
	if err := c.writeFrame(ws.OpText, frame); err != nil {
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		return err
	}
	return nil
}

// Call sends a request and waits for its reply, decoding the result into
// out (nil to discard it). A refusal is a *protocol.Error.
func (c *rawConn) Call(ctx context.Context, op string, args, out any) error {
	var raw []byte
	if args != nil {
		var err error
		if raw, err = json.Marshal(args); err != nil {
			return err
		}
	}
	type reply struct {
		f   *protocol.Frame
		err error
	}
	ch := make(chan reply, 1)
	if err := c.Post(op, raw, func(f *protocol.Frame, err error) { ch <- reply{f, err} }); err != nil {
		return err
	}
	select {
	case r := <-ch:
		switch {
		case r.err != nil:
			return r.err
		case r.f.Error != nil:
			return r.f.Error
		case out != nil:
			return json.Unmarshal(r.f.Result, out)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// Ping sends a fire-and-forget ping: the server hears from the client and
// answers nothing.
func (c *rawConn) Ping() error {
	return c.writeFrame(ws.OpText, []byte(`{"op":"ping"}`))
}

// IdleFor reports how long the connection has written nothing.
func (c *rawConn) IdleFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, c.lastWrite.Load()))
}

// writeFrame writes one masked client frame in a single write, so that a
// frame is one TCP segment (one TLS record) when it fits.
func (c *rawConn) writeFrame(op ws.OpCode, payload []byte) error {
	mask := ws.NewMask()
	n := len(payload)
	buf := make([]byte, 0, n+14)
	buf = append(buf, 0x80|byte(op))
	switch {
	case n < 126:
		buf = append(buf, 0x80|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 0x80|126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 0x80|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	buf = append(buf, mask[:]...)
	start := len(buf)
	buf = append(buf, payload...)
	ws.Cipher(buf[start:], mask, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(buf); err != nil {
		_ = c.nc.Close() // the reader ends and fails what is pending
		return err
	}
	c.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// Close sends a normal close and drops the socket without waiting for the
// server's answer (a teardown of thousands of connections must not wait
// on each), then waits for the reader, which the closed socket ends.
func (c *rawConn) Close() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.wmu.Lock()
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write(closeFrame())
		c.wmu.Unlock()
		_ = c.nc.Close()
	})
	<-c.done
}

// closeFrame returns a masked close frame with code 1000.
func closeFrame() []byte {
	mask := ws.NewMask()
	body := []byte{0x03, 0xE8}
	ws.Cipher(body, mask, 0)
	return append([]byte{0x80 | byte(ws.OpClose), 0x80 | 2, mask[0], mask[1], mask[2], mask[3]}, body...)
}
