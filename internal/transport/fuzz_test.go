package transport

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// FuzzReadFrames feeds arbitrary bytes to a connection's reader as the
// client's stream, the first byte choosing how much of it arrives with the
// handshake. The connection must end, with Closed called once, without
// panicking or hanging, and no delivered message may exceed the limit.
func FuzzReadFrames(f *testing.F) {
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	text := func(s string) []byte { return frameBytes(ws.OpText, true, []byte(s), true) }
	f.Add(cat([]byte{0}, text("hello"), text("")))
	f.Add(cat([]byte{3}, frameBytes(ws.OpText, false, []byte("a"), true),
		frameBytes(ws.OpPing, true, []byte("p"), true),
		frameBytes(ws.OpContinuation, true, []byte("b"), true)))
	f.Add(cat([]byte{1}, frameBytes(ws.OpClose, true, ws.NewCloseFrameBody(1000, "bye"), true)))
	f.Add(cat([]byte{0}, frameBytes(ws.OpText, true, make([]byte, 300), true)))
	f.Add(cat([]byte{0}, frameBytes(ws.OpBinary, true, []byte("x"), false)))
	f.Add([]byte{0, 0x81, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0, 0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 0x89, 0x80})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		split := min(int(data[0]), len(data)-1)
		stream := data[1:]
		h := &recorder{}
		// A short close timeout keeps inputs that end mid-close fast to fuzz.
		opts := Options{MaxFrameBytes: 256, QueueBytes: 1024, OversizeFrame: []byte(`"too big"`), CloseTimeout: 20 * time.Millisecond}
		// Fakes are always served by a reader goroutine: no event loops.
		s := New(h, goroutines.options(opts))
		fc := newFakeConn(bytes.NewReader(stream[split:]))
		if !s.serveFake(fc, bytes.Clone(stream[:split])) {
			t.Fatal("no slot")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("connection did not end: %v", err)
		}
		if n := len(h.closedEvents()); n != 1 {
			t.Fatalf("Closed called %d times", n)
		}
		for _, m := range h.frameList() {
			if len(m) > 256 {
				t.Fatalf("delivered %d bytes over the 256 limit", len(m))
			}
		}

		// The same stream from a client over a socket, which the event
		// loops serve where the platform has them, arriving in pieces:
		// the same messages must come out. Unless a slow-consumer close,
		// which depends on timing, discarded some in either.
		h2, s2 := serveStream(t, opts, stream[:split], stream[split:], data[0])
		if n := len(h2.closedEvents()); n != 1 {
			t.Fatalf("over a socket: Closed called %d times", n)
		}
		if s.Stats().SlowConsumerCloses+s2.Stats().SlowConsumerCloses > 0 {
			return
		}
		want, got := h.frameList(), h2.frameList()
		if len(got) != len(want) {
			t.Fatalf("over a socket: %d messages, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("over a socket: message %d is %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// serveStream serves a connection whose client sends stream in pieces of
// sizes drawn from seed, after pending (what came with the handshake), then
// half-closes and reads until the end. It returns once the server has shut
// down.
func serveStream(t *testing.T, opts Options, pending, stream []byte, seed byte) (*recorder, *Server) {
	sc, cl := streamPair(t)
	defer cl.Close()
	h := &recorder{}
	s := New(h, opts)
	if !s.serveFake(sc, bytes.Clone(pending)) {
		t.Fatal("no slot")
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(io.Discard, cl)
	}()
	for k := 0; len(stream) > 0; k++ {
		n := min(len(stream), 1+(int(seed)+7*k)%13)
		if _, err := cl.Write(stream[:n]); err != nil {
			break // the server has closed
		}
		stream = stream[n:]
	}
	_ = cl.(interface{ CloseWrite() error }).CloseWrite()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("over a socket: connection did not end: %v", err)
	}
	_ = cl.Close()
	<-read
	if eventLoops.evented() && s.stats.evented.Load() != 1 {
		t.Fatal("the socket was not served by the event loops")
	}
	return h, s
}
