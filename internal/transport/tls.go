package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// NewTLSListener is tls.NewListener for a Server: the connections it
// accepts are TLS connections whose socket the event loops can take over
// once the handshake is done, so that an idle TLS connection, like a plain
// one, needs no goroutine (on Linux; elsewhere, or with
// Options.GoroutinePerConn, they are served like any TLS connection).
// Connections from tls.NewListener work too, with a reader goroutine each.
func NewTLSListener(inner net.Listener, cfg *tls.Config) net.Listener {
	return &tlsListener{Listener: inner, cfg: cfg}
}

type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

// Accept implements net.Listener.
func (l *tlsListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(&tlsSock{Conn: nc}, l.cfg), nil
}

// tlsSock is what a tls.Conn from NewTLSListener reads and writes. Until
// the event loops adopt the connection it is the socket itself. Afterwards
// it holds no socket: a read pass feeds it the ciphertext it read and lets
// the tls.Conn decrypt from it, and what the tls.Conn writes (records,
// alerts) waits in out until the connection's flusher writes it to the
// socket. The tls.Conn's own locks order its reads and its writes; out has
// a lock of its own because the reader writes too (alerts, key updates)
// while the flusher empties out.
type tlsSock struct {
	net.Conn // the socket until adopted, then nil: nil means adopted

	// Set by adopt, before any read pass or flusher runs, and read-only
	// afterwards.
	laddr, raddr net.Addr
	pool         *bufPool
	max          int // bytes out may hold; writing more fails

	in []byte // ciphertext fed by the read pass, read by the tls.Conn only

	mu  sync.Mutex
	out *[]byte // ciphertext not yet written, from off; pooled, nil when none
	off int
}

// errNeedInput is what a tlsSock reads when it has nothing more: the read
// pass has fed it all that the socket had. It is a temporary net.Error so
// that the tls.Conn keeps the partial record it read and goes on with the
// next feed, rather than failing for good.
var errNeedInput error = needInput{}

type needInput struct{}

func (needInput) Error() string   { return "transport: TLS record incomplete" }
func (needInput) Timeout() bool   { return true }
func (needInput) Temporary() bool { return true }

// errTLSOutFull is what a tlsSock's Write returns when out would hold more
// than max bytes; the tls.Conn then fails for good and the connection
// closes. A flusher encrypts one batch, at most QueueBytes plus a close
// frame, and writes it before the next, so this is a safety net.
var errTLSOutFull = errors.New("transport: TLS output buffer full")

// adopt detaches s from its socket, whose descriptor the event loops now
// own, and bounds what out may hold.
func (s *tlsSock) adopt(pool *bufPool, max int) {
	s.laddr, s.raddr = s.Conn.LocalAddr(), s.Conn.RemoteAddr()
	s.pool, s.max = pool, max
	s.Conn = nil
}

// Read implements net.Conn.
func (s *tlsSock) Read(p []byte) (int, error) {
	if s.Conn != nil {
		return s.Conn.Read(p)
	}
	if len(s.in) == 0 {
		return 0, errNeedInput
	}
	n := copy(p, s.in)
	s.in = s.in[n:]
	return n, nil
}

// Write implements net.Conn.
func (s *tlsSock) Write(p []byte) (int, error) {
	if s.Conn != nil {
		return s.Conn.Write(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := 0
	if s.out != nil {
		held = len(*s.out) - s.off
	}
	if held+len(p) > s.max {
		return 0, errTLSOutFull
	}
	switch {
	case s.out == nil:
		s.out = s.pool.getAny(len(p))
	case len(*s.out)+len(p) > cap(*s.out):
		nb := s.pool.getAny(max(held+len(p), 2*cap(*s.out)))
		*nb = append(*nb, (*s.out)[s.off:]...)
		s.pool.put(s.out)
		s.out, s.off = nb, 0
	}
	*s.out = append(*s.out, p...)
	return len(p), nil
}

// flushOut writes out with write until it is empty, then returns its buffer
// to the pool; it stops at write's first error (errWouldBlock when the
// socket is full), keeping the rest.
func (s *tlsSock) flushOut(write func([]byte) (int, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.out != nil {
		b := (*s.out)[s.off:]
		if len(b) == 0 {
			s.pool.put(s.out)
			s.out, s.off = nil, 0
			break
		}
		n, err := write(b)
		s.off += n
		if err != nil {
			return err
		}
	}
	return nil
}

// pending reports whether out holds bytes not yet written.
func (s *tlsSock) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out != nil
}

// discard drops what out holds; the connection is finished.
func (s *tlsSock) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out != nil {
		s.pool.put(s.out)
		s.out, s.off = nil, 0
	}
}

// Close implements net.Conn; once adopted, the socket is the event loops'
// to close.
func (s *tlsSock) Close() error {
	if s.Conn != nil {
		return s.Conn.Close()
	}
	return nil
}

// LocalAddr implements net.Conn.
func (s *tlsSock) LocalAddr() net.Addr {
	if s.Conn != nil {
		return s.Conn.LocalAddr()
	}
	return s.laddr
}

// RemoteAddr implements net.Conn.
func (s *tlsSock) RemoteAddr() net.Addr {
	if s.Conn != nil {
		return s.Conn.RemoteAddr()
	}
	return s.raddr
}

// SetDeadline implements net.Conn. Once adopted the tls.Conn never waits,
// and the connection's deadlines are the event loops' timers.
func (s *tlsSock) SetDeadline(t time.Time) error {
	if s.Conn != nil {
		return s.Conn.SetDeadline(t)
	}
	return nil
}

// SetReadDeadline implements net.Conn.
func (s *tlsSock) SetReadDeadline(t time.Time) error {
	if s.Conn != nil {
		return s.Conn.SetReadDeadline(t)
	}
	return nil
}

// SetWriteDeadline implements net.Conn.
func (s *tlsSock) SetWriteDeadline(t time.Time) error {
	if s.Conn != nil {
		return s.Conn.SetWriteDeadline(t)
	}
	return nil
}
