//go:build linux

package transport

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// loop is one event loop: a goroutine reading the notifications of an epoll
// instance watching the sockets of its share of the connections, and
// handing each to its connection, to be acted on elsewhere: the loop never
// reads, writes or calls the Session, so one slow connection cannot hold up
// the others.
//
// The loop does not block a thread in epoll_wait: the epoll descriptor is
// itself registered with the runtime's netpoller (an epoll instance is
// readable while it has notifications), and the loop parks like any
// goroutine waiting on a socket. So the runtime's netpoller waits on the
// epoll descriptor only and the loop's epoll on the sockets only: no
// descriptor is watched by both. And when the loop parks after handing
// work to a worker, the thread that woke it runs that worker at once,
// rather than the worker waiting for the runtime to notice that the loop's
// thread is stuck in a system call: that wait would double the latency of
// a round trip.
type loop struct {
	srv  *Server
	epfd int
	// file is epfd for the netpoller; closing it stops the loop.
	file *os.File
	rc   syscall.RawConn

	events []unix.EpollEvent
	// poll is l.pollOnce as a func value made once, and n and err are its
	// results: a closure made on each wait would allocate.
	poll func(fd uintptr) bool
	n    int
	err  error
	// stopping is set by stop before it closes the epoll file.
	stopping atomic.Bool
}

// loopEvents is how many notifications one epoll_wait returns at most.
const loopEvents = 256

func newLoop(s *Server) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Non-blocking, so that os.NewFile hands it to the netpoller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	l := &loop{srv: s, epfd: epfd, file: f, rc: rc, events: make([]unix.EpollEvent, loopEvents)}
	l.poll = l.pollOnce
	return l, nil
}

// stop makes the loop's goroutine exit, and closes the epoll instance once
// it has.
func (l *loop) stop() {
	l.stopping.Store(true)
	_ = l.file.Close()
}

// pollOnce takes the notifications there are, without waiting; it returns
// false when there are none, which makes RawConn.Read wait until there are.
func (l *loop) pollOnce(fd uintptr) bool {
	l.n, l.err = unix.EpollWait(int(fd), l.events, 0)
	return l.n > 0 || l.err != nil
}

// run is the loop's goroutine.
func (l *loop) run() {
	defer l.srv.wg.Done()
	for {
		if err := l.rc.Read(l.poll); err != nil {
			// Closing the file is how stop ends the wait; RawConn.Read
			// reports it as internal/poll's "use of closed file", which is
			// not os.ErrClosed.
			if !l.stopping.Load() && !errors.Is(err, os.ErrClosed) {
				l.srv.log.Error("event loop stopped", "err", err)
			}
			return
		}
		if l.err == unix.EINTR {
			continue
		}
		if l.err != nil {
			// Only a bug makes epoll_wait fail; the connections of this
			// loop would hang, so say it loudly.
			l.srv.log.Error("epoll_wait failed, event loop stopped", "err", l.err)
			return
		}
		for i := range l.n {
			ev := &l.events[i]
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			// A connection that finished since the notification was
			// queued is gone from the registry; its id is never reused.
			c := l.srv.reg.get(id)
			if c == nil {
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.kickReader()
			}
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.writable()
			}
		}
	}
}

// get returns the registered connection with id, or nil: the loops find a
// notification's connection by the id it was registered with.
func (r *registry) get(id uint64) *conn {
	sh := r.shard(id)
	sh.mu.Lock()
	c := sh.conns[id]
	sh.mu.Unlock()
	return c
}
