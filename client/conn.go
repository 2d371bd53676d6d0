package client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/floodgate/floodgate/protocol"
)

// maxReadBytes bounds one frame from the server. A sync reply stops at
// about 1 MiB; the margin covers "about" without letting a broken server
// make the client allocate without bound.
const maxReadBytes = 8 << 20

// readBufferBytes is the read buffer of a connection: most frames from the
// server are a few hundred bytes.
const readBufferBytes = 2048

// closeGrace is how long the client waits for the server's side of a
// close (its close frame, or the close after a directive or a refused auth)
// before dropping the socket.
const closeGrace = 2 * time.Second

// maxRetryAfter caps a Retry-After header, so that a misconfigured proxy
// cannot park the client for days.
const maxRetryAfter = time.Hour

// wsConn is one WebSocket connection to a gateway. Its reader runs on one
// goroutine (Client.readLoop); writes come from any goroutine and are
// serialised here.
type wsConn struct {
	nc  net.Conn
	rd  *wsutil.Reader
	ctl wsutil.FrameHandlerFunc
	url string
	idx int // index in the URL list, -1 for a redirect target

	writeTimeout time.Duration
	wmu          sync.Mutex

	readDone chan struct{} // closed when the reader has exited
	kick     chan struct{} // a request waits for its reply: the reader must read
	lastRecv atomic.Int64  // Unix nanoseconds of the last frame received
	parked   atomic.Bool   // the reader waits for the application, not the network
	closing  sync.Once
	closed   chan struct{} // closed when the connection is being closed
	closeSig sync.Once

	// Guarded by Client.mu.
	pending   map[uint64]*pending
	inflight  int  // len(pending), kept for the reader's parking decision
	dead      bool // the reader has exited; no request can be answered
	directive *protocol.Directive
	code      int
	reason    string
	err       error
	resyncAt  time.Time // when a full sync is due after a resync event
}

// dialWS opens a WebSocket to url. An HTTP refusal of the upgrade is a
// *statusError carrying Retry-After.
func dialWS(ctx context.Context, url string, o *Options) (*wsConn, error) {
	var refused *statusError
	timeout := o.DialTimeout
	d := ws.Dialer{
		Timeout:   timeout,
		TLSConfig: o.TLSConfig,
		NetDial:   o.NetDial,
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			refused = &statusError{status: status, retryAfter: -1}
			if r, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
				refused.retryAfter = parseRetryAfter(r.Header.Get("Retry-After"))
			}
		},
	}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		if refused != nil {
			return nil, refused
		}
		return nil, err
	}
	cn := &wsConn{
		nc:           nc,
		url:          url,
		writeTimeout: timeout,
		readDone:     make(chan struct{}),
		kick:         make(chan struct{}, 1),
		closed:       make(chan struct{}),
		pending:      make(map[uint64]*pending),
	}
	// Buffered, so that a frame's header and payload (and often the next
	// frames) take one read rather than two or more.
	src := br
	if src == nil {
		src = bufio.NewReaderSize(nc, readBufferBytes)
	}
	cn.rd = &wsutil.Reader{Source: src, State: ws.StateClientSide, MaxFrameSize: maxReadBytes, MaxMessageSize: maxReadBytes}
	cn.ctl = wsutil.ControlFrameHandler(lockedWriter{cn}, ws.StateClientSide)
	cn.rd.OnIntermediate = cn.ctl
	return cn, nil
}

// parseRetryAfter reads a Retry-After value (seconds or an HTTP date) as
// whole seconds, or -1.
func parseRetryAfter(v string) int64 {
	if v == "" {
		return -1
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return min(max(n, 0), int64(maxRetryAfter/time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(int64(time.Until(t)/time.Second), 0), int64(maxRetryAfter/time.Second))
	}
	return -1
}

// lockedWriter lets the control frame handler (pongs, the close reply)
// write between the application's frames rather than inside one.
type lockedWriter struct{ cn *wsConn }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.cn.wmu.Lock()
	defer w.cn.wmu.Unlock()
	_ = w.cn.nc.SetWriteDeadline(time.Now().Add(w.cn.writeTimeout))
	return w.cn.nc.Write(p)
}

// readMessage returns the next text or binary message, answering control
// frames on the way. A close frame from the server is a wsutil.ClosedError.
func (cn *wsConn) readMessage() ([]byte, error) {
	for {
		hdr, err := cn.rd.NextFrame()
		if err != nil {
			return nil, err
		}
		cn.lastRecv.Store(time.Now().UnixNano())
		if hdr.OpCode.IsControl() {
			if err := cn.ctl(hdr, cn.rd); err != nil {
				return nil, err
			}
			continue
		}
		if hdr.OpCode&(ws.OpText|ws.OpBinary) == 0 {
			if err := cn.rd.Discard(); err != nil {
				return nil, err
			}
			continue
		}
		var buf bytes.Buffer
		if hdr.Fin && hdr.Length < maxReadBytes {
			buf.Grow(int(hdr.Length))
		}
		if _, err := buf.ReadFrom(cn.rd); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
}

// write sends one text frame; a failure (including the write deadline)
// breaks the connection.
func (cn *wsConn) write(frame []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.nc.SetWriteDeadline(time.Now().Add(cn.writeTimeout))
	_, err := cn.nc.Write(clientTextFrame(frame))
	if err != nil {
		cn.abort()
	}
	return err
}

// clientTextFrame returns msg as one masked text frame, header and payload
// in one buffer: one write and one segment per message, where writing the
// header and the payload separately costs two of each. msg is not changed.
func clientTextFrame(msg []byte) []byte {
	h := ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: ws.NewMask(), Length: int64(len(msg))}
	b := bytes.NewBuffer(make([]byte, 0, ws.HeaderSize(h)+len(msg)))
	_ = ws.WriteHeader(b, h) // a bytes.Buffer does not fail
	n := b.Len()
	b.Write(msg)
	out := b.Bytes()
	ws.Cipher(out[n:], h.Mask, 0)
	return out
}

// closeWith starts a clean close: a close frame with code, then the reader
// gets closeGrace to see the server's close frame before the socket is
// dropped.
func (cn *wsConn) closeWith(code int, reason string) {
	cn.closing.Do(func() {
		cn.wmu.Lock()
		_ = cn.nc.SetWriteDeadline(time.Now().Add(closeGrace))
		f := ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), reason))
		_ = ws.WriteFrame(cn.nc, ws.MaskFrameInPlace(f))
		cn.wmu.Unlock()
		_ = cn.nc.SetReadDeadline(time.Now().Add(closeGrace))
	})
	cn.signalClosed()
}

// expectClose gives the server closeGrace to close the connection (after a
// directive or a refused auth), so that the reader is never left waiting on
// a server that said it would close but did not.
func (cn *wsConn) expectClose() {
	_ = cn.nc.SetReadDeadline(time.Now().Add(closeGrace))
}

// abort drops the socket; the reader exits with an error.
func (cn *wsConn) abort() {
	_ = cn.nc.Close()
	cn.signalClosed()
}

// signalClosed wakes a reader parked on the event queue.
func (cn *wsConn) signalClosed() { cn.closeSig.Do(func() { close(cn.closed) }) }

// wakeReader tells a reader parked on a full event queue that a reply is
// awaited.
func (cn *wsConn) wakeReader() {
	select {
	case cn.kick <- struct{}{}:
	default:
	}
}
