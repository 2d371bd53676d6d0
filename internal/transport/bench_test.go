package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// benchModes runs bench once per mode, as sub-benchmarks.
func benchModes(b *testing.B, bench func(b *testing.B, m mode)) {
	for _, m := range []mode{eventLoops, goroutines} {
		b.Run(m.name, func(b *testing.B) { bench(b, m) })
	}
}

// BenchmarkSendFanout sends one shared frame to 1000 connections whose
// clients read as fast as they can; an op is one frame to every connection,
// timed until all of them are written to the sockets.
func BenchmarkSendFanout(b *testing.B) { benchModes(b, benchSendFanout) }

func benchSendFanout(b *testing.B, m mode) {
	const conns = 1000
	h := &recorder{}
	// The budget only has to absorb scheduling hiccups of the readers: a
	// slow-consumer close would end the benchmark.
	ts := startServer(b, h, m, Options{QueueBytes: 64 << 20})
	for range conns {
		cl := dial(b, ts.url)
		go func() { _, _ = io.Copy(io.Discard, cl.r) }()
	}
	h.waitConn(b, conns-1)
	cs := make([]Conn, conns)
	for i := range cs {
		cs[i] = h.conn(i)
	}
	frame := bytes.Repeat([]byte("x"), 256)
	send := func(rounds int) {
		want := ts.Stats().FramesOut + uint64(rounds*conns)
		for range rounds {
			for _, c := range cs {
				if err := c.Send(frame); err != nil {
					b.Fatal(err)
				}
			}
		}
		waitFor(b, "frames written", func() bool { return ts.Stats().FramesOut >= want })
	}
	send(20) // fill the batch pool and the sockets' iovec caches

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	send(b.N)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	sends := float64(b.N * conns)
	b.ReportMetric(sends/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/sends, "allocs/send")
	b.ReportMetric(0, "ns/op") // an op is 1000 sends; frames/s says it better

}

// BenchmarkSendFlush measures Send and the flushing it causes on one
// connection whose socket takes everything at once: the allocations counted
// are those of Send, of the flusher goroutines it starts and of their
// writes. It waits for the queue to drain every 256 frames, as Send would
// otherwise outrun the flusher and overflow the budget.
func BenchmarkSendFlush(b *testing.B) {
	h := &recorder{}
	s := New(h, Options{})
	s.serveFake(newFakeConn(nil), nil)
	c := h.waitConn(b, 0)
	ic := c.(*conn)
	drained := func() bool {
		ic.mu.Lock()
		defer ic.mu.Unlock()
		return !ic.flushing
	}
	frame := bytes.Repeat([]byte("x"), 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := c.Send(frame); err != nil {
			b.Fatal(err)
		}
		if i++; i%256 == 0 {
			for !drained() {
				runtime.Gosched()
			}
		}
	}
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
}

// repeatReader yields frame n times, then io.EOF.
type repeatReader struct {
	frame []byte
	n     int
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := copy(p, r.frame[r.off:])
	r.off += k
	if r.off == len(r.frame) {
		r.off = 0
		r.n--
	}
	return k, nil
}

type nopHandler struct{}

func (nopHandler) Open(Conn) Session { return nopSession{} }

// BenchmarkReadFrame reads masked text frames, delivering each to a Session
// that does nothing: "fake" from an in-memory connection that always has
// data (the reader goroutine's parsing alone), "epoll" and "goroutine" from
// a loopback TCP socket that a client keeps full.
func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []int{16, 128, 4096, 60 << 10} {
		frame := frameBytes(ws.OpText, true, make([]byte, size), true)
		b.Run(fmt.Sprintf("fake/%d", size), func(b *testing.B) {
			s := New(nopHandler{}, Options{})
			fc := newFakeConn(&repeatReader{frame: frame, n: b.N})
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			b.ResetTimer()
			s.serveFake(fc, nil)
			// Returns when the reader has consumed every frame.
			if err := s.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if got := s.Stats().FramesIn; got != uint64(b.N) {
				b.Fatalf("read %d frames, want %d", got, b.N)
			}
		})
		for _, m := range []mode{eventLoops, goroutines} {
			b.Run(fmt.Sprintf("%s/%d", m.name, size), func(b *testing.B) {
				benchReadSocket(b, m, frame)
			})
		}
	}
}

// benchReadSocket times the reading of b.N copies of frame sent by a
// client as fast as the server takes them.
func benchReadSocket(b *testing.B, m mode, frame []byte) {
	ts := startServer(b, nopHandler{}, m, Options{})
	cl := dial(b, ts.url)
	waitFor(b, "connection", func() bool { return ts.Stats().Conns == 1 })
	// Whole frames per write, about 64 KiB of them.
	per := max(1, (64<<10)/len(frame))
	chunk := bytes.Repeat(frame, per)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		_ = cl.nc.SetWriteDeadline(time.Now().Add(patience))
		for left := b.N; left > 0; left -= per {
			if _, err := cl.nc.Write(chunk[:min(left, per)*len(frame)]); err != nil {
				return
			}
		}
	}()
	for ts.Stats().FramesIn < uint64(b.N) {
		time.Sleep(50 * time.Microsecond)
	}
	b.StopTimer()
}

// BenchmarkRoundTrip measures the latency the transport adds: clients send
// a 64-byte frame, the handler echoes it, the client reads the echo before
// sending the next. With one client an op is a round trip; with many, ns/op
// is the inverse of the throughput and us/rtt each client's wait.
func BenchmarkRoundTrip(b *testing.B) {
	for _, clients := range []int{1, 64} {
		for _, m := range []mode{eventLoops, goroutines} {
			b.Run(fmt.Sprintf("%s/clients=%d", m.name, clients), func(b *testing.B) {
				benchRoundTrip(b, m, clients)
			})
		}
	}
}

func benchRoundTrip(b *testing.B, m mode, clients int) {
	// Not echo(): its recorder would keep every frame.
	ts := startServer(b, echoHandler{}, m, Options{})
	cls := make([]*client, clients)
	for i := range cls {
		cls[i] = dial(b, ts.url)
	}
	msg := frameBytes(ws.OpText, true, bytes.Repeat([]byte("r"), 64), true)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, cl := range cls {
		wg.Go(func() {
			buf := make([]byte, 2+64)
			for next.Add(1) <= int64(b.N) {
				if _, err := cl.nc.Write(msg); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(cl.r, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())*float64(clients)/float64(b.N), "us/rtt")
}

// echoHandler echoes every message without keeping it.
type echoHandler struct{}

func (echoHandler) Open(c Conn) Session { return echoSession{c} }

type echoSession struct{ c Conn }

func (s echoSession) Frame(p []byte)  { _ = s.c.Send(bytes.Clone(p)) }
func (echoSession) Closed(int, error) {}

// BenchmarkIdleConns measures what an idle connection costs: heap and
// goroutine stacks after GC, per connection, for WebSocket connections
// served each way and, for comparison, as many bare TCP connections. Both
// sides of every connection live in this process, so the bare TCP figure
// (two sockets, no goroutine) is the floor subtracted to give
// transport-B/conn. Neither counts kernel socket memory, nor the runtime's
// poll descriptors (outside the heap, one per net.Conn: the event loops'
// connections have none). Over TLS the figures include the clients' TLS
// state as well as the server's, so it is the two TLS modes that compare.
// The connection counts are 2000 and as close to 10000 as the file
// descriptor limit allows. Run it with -benchtime=1x.
func BenchmarkIdleConns(b *testing.B) {
	for _, n := range []int{2000, idleConnsMax()} {
		for _, m := range []mode{eventLoops, goroutines, tlsEventLoops, tlsGoroutines} {
			b.Run(fmt.Sprintf("%s/conns=%d", m.name, n), func(b *testing.B) {
				for range b.N {
					tcp := measureIdle(b, n, openBareTCP)
					wsm := measureIdle(b, n, func(b *testing.B, n int) func() { return openWebSockets(b, m, n) })
					b.ReportMetric(tcp.heap+tcp.stack, "tcp-B/conn")
					b.ReportMetric(wsm.heap, "ws-heap-B/conn")
					b.ReportMetric(wsm.stack, "ws-stack-B/conn")
					b.ReportMetric(wsm.heap+wsm.stack-tcp.heap-tcp.stack, "transport-B/conn")
					b.ReportMetric(wsm.goroutines, "goroutines/conn")
				}
			})
		}
	}
}

// idleCost is the growth per connection of what memNow measures.
type idleCost struct{ heap, stack, goroutines float64 }

// measureIdle opens n connections with open, which returns a function
// closing them, and reports the growth per connection.
func measureIdle(b *testing.B, n int, open func(b *testing.B, n int) func()) idleCost {
	m0 := memNow()
	closeAll := open(b, n)
	m1 := memNow()
	closeAll()
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
	return idleCost{
		heap:       per(m0.heap, m1.heap),
		stack:      per(m0.stack, m1.stack),
		goroutines: float64(m1.goroutines-m0.goroutines) / float64(n),
	}
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func openBareTCP(b *testing.B, n int) func() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	conns := make([]net.Conn, 0, 2*n)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for range n {
		conns = append(conns, <-accepted)
	}
	_ = ln.Close()
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

func openWebSockets(b *testing.B, m mode, n int) func() {
	s := New(nopHandler{}, m.options(Options{}))
	hs, url := serveHTTP(s, m)
	d := dialer(url)
	conns := make([]net.Conn, 0, n)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		c, _, _, err := d.Dial(ctx, url)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(b, "connections", func() bool { return s.Stats().Conns == int64(n) })
	if m.evented() && s.stats.evented.Load() != uint64(n) {
		b.Fatalf("%d of %d connections on the event loops", s.stats.evented.Load(), n)
	}
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		_ = s.Shutdown(ctx)
		// Let the next measurement start from a quiet heap.
		time.Sleep(10 * time.Millisecond)
	}
}
