//go:build !linux

package transport

// Elsewhere than on Linux there are no event loops: every connection has a
// reader goroutine, and the event-loop side of the connection code is
// never reached.

type evServer struct{}

func (*evServer) start(*Server)             {}
func (*evServer) stop()                     {}
func (*evServer) adopt(*conn) bool          { return false }
func (*evServer) begin(*conn, []byte)       {}
func (*evBatch) reset()                     {}
func (*conn) evGoAway([]byte)               {}
func (*conn) evCloseSocket()                {}
func (*conn) evRelease()                    {}
func (*conn) evHalfClose()                  {}
func (*conn) evArmTimerLocked()             {}
func (*conn) evWrite(*batch) (int64, error) { return 0, errWouldBlock }
func (*conn) park(*batch) bool              { return false }
func (*conn) evOutPending() bool            { return false }
func (*conn) readQueued() bool              { return false }

type evConn struct{}

type evBatch struct{}

// takeParkedLocked has nothing to take; it is also what uses conn.ev here.
func (c *conn) takeParkedLocked() *batch {
	_ = c.ev
	return nil
}
