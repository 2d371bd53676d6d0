// Package transport serves client WebSocket connections: the HTTP upgrade,
// frame reading and writing, per-connection outbound queues and idle
// timeouts. It knows nothing of the protocol carried inside the frames; the
// gateway sees a connection only through Conn and Session, so how
// connections are served (a goroutine per connection, or readiness
// notification over pooled buffers) can change without the rest of the
// server noticing.
package transport

import (
	"errors"
	"net"
	"time"
)

// Errors returned by Conn.Send.
var (
	// ErrSlowConsumer: the frame did not fit in the connection's outbound
	// byte budget. The connection has been closed with the configured
	// slow-consumer code; the frame was dropped.
	ErrSlowConsumer = errors.New("transport: outbound queue full")
	// ErrClosed: the connection is closed; the frame was dropped.
	ErrClosed = errors.New("transport: connection closed")
)

// Conn is one client connection. Its methods are safe for concurrent use and
// never block on the network.
type Conn interface {
	// ID is unique among the connections of one Server.
	ID() uint64
	// RemoteAddr is the peer's address.
	RemoteAddr() net.Addr
	// Send queues frame, one complete text message, for writing, after every
	// frame queued before it. The transport keeps frame until it is written,
	// so the caller must not modify it afterwards; one frame may be sent to
	// many connections. If the queued bytes would exceed the connection's
	// budget, Send drops the frame, closes the connection with the
	// slow-consumer close code and returns ErrSlowConsumer.
	Send(frame []byte) error
	// Close writes the frames already queued (for a bounded time), then a
	// close frame with code and reason, then closes the socket. Later calls
	// do nothing.
	Close(code int, reason string)
	// SetIdleTimeout makes the transport close the connection with code if
	// no frame arrives from the client for d (checked about once a second).
	// A connection whose bytes wait for a busy server to read them is not
	// idle: the time they wait is the server's, not the client's. d == 0
	// disables the check.
	SetIdleTimeout(d time.Duration, code int)
}

// Handler accepts new connections. The gateway implements it.
type Handler interface {
	// Open is called once per established WebSocket connection, before any
	// frame is read from it, and returns the session that receives its
	// frames.
	Open(c Conn) Session
}

// Session receives what happens on one connection.
type Session interface {
	// Frame is called for each complete message from the client, one call at
	// a time per connection: the transport reads nothing more from this
	// connection until Frame returns, which is the connection's
	// backpressure. data is valid only until Frame returns.
	Frame(data []byte)
	// Closed is called exactly once, after the connection is closed, with
	// the close code that was sent or received (1006 if none) and the error
	// that caused it, if any.
	Closed(code int, err error)
}
