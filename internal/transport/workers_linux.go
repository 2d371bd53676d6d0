//go:build linux

package transport

import "sync"

// readChunk is the size of a worker's read buffer: what one read(2) takes
// from a socket. A frame left incomplete at its end is copied out (see
// frameState), so the buffer is free for the next connection.
const readChunk = 16 << 10

// runQueue is the worker pool: a FIFO of connections whose sockets have
// data, and the goroutines that run their read passes. A connection is in
// the queue at most once (its evConn.rs says so), so the queue is bounded by
// the number of connections, and each connection's frames are read by one
// worker at a time, in order. keep workers wait for work when there is none;
// up to max run while there is.
type runQueue struct {
	srv  *Server
	mu   sync.Mutex
	cond sync.Cond
	head *conn
	tail *conn
	// running counts the workers; idle those waiting in cond.Wait that no
	// push has signalled yet.
	running, idle int
	keep, max     int
	stopped       bool
}

func (q *runQueue) init(s *Server, keep, max int) {
	q.srv = s
	q.cond.L = &q.mu
	q.keep, q.max = min(keep, max), max
}

// push queues c for a read pass, waking or starting a worker for it. The
// worker is started after unlocking: creating a goroutine may allocate and
// help the garbage collector, and in a reconnect storm thousands of
// upgrades push at once, so q.mu is held for as little as possible.
func (q *runQueue) push(c *conn) {
	q.mu.Lock()
	if q.tail == nil {
		q.head = c
	} else {
		q.tail.ev.next = c
	}
	q.tail = c
	start := false
	switch {
	case q.idle > 0:
		q.idle--
		q.cond.Signal()
	case q.running < q.max:
		q.running++
		q.srv.wg.Add(1)
		start = true
	}
	q.mu.Unlock()
	if start {
		go q.work()
	}
}

// stop makes the workers exit once the queue is empty; Shutdown calls it
// when no connection is left, so it is.
func (q *runQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.idle = 0
	q.cond.Broadcast()
	q.mu.Unlock()
}

// work is a worker goroutine.
func (q *runQueue) work() {
	defer q.srv.wg.Done()
	pool := &q.srv.bufs
	bp := pool.get(readChunk)
	defer pool.put(bp)
	buf := (*bp)[:readChunk]
	q.mu.Lock()
	for {
		c := q.head
		if c == nil {
			if q.stopped || q.idle >= q.keep {
				q.running--
				q.mu.Unlock()
				return
			}
			q.idle++
			q.cond.Wait()
			continue
		}
		q.head = c.ev.next
		if q.head == nil {
			q.tail = nil
		}
		c.ev.next = nil
		q.mu.Unlock()
		c.readPass(buf)
		q.mu.Lock()
	}
}
