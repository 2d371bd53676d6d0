package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestAppendHeaderMatchesGobwas(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000, 1 << 30} {
		got := appendHeader(nil, ws.OpText, n)
		var want bytes.Buffer
		_ = ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(n)})
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("n=%d: %x, want %x", n, got, want.Bytes())
		}
		if len(got) > maxServerHeader {
			t.Errorf("n=%d: header of %d bytes", n, len(got))
		}
	}
}

func TestAppendCloseFrame(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes, cut on a rune boundary
	for _, tc := range []struct {
		code   int
		reason string
		body   []byte
	}{
		{1000, "", []byte{0x03, 0xe8}},
		{4100, "slow", ws.NewCloseFrameBody(4100, "slow")},
		{1005, "x", nil},
		{0, "", nil},
		{5000, "", nil},
	} {
		f := appendCloseFrame(nil, tc.code, tc.reason)
		h, err := ws.ReadHeader(bytes.NewReader(f))
		if err != nil || h.OpCode != ws.OpClose || !h.Fin || h.Masked {
			t.Fatalf("code %d: header %+v %v", tc.code, h, err)
		}
		if body := f[2:]; !bytes.Equal(body, tc.body) {
			t.Errorf("code %d: body %x, want %x", tc.code, body, tc.body)
		}
	}
	f := appendCloseFrame(nil, 4000, long)
	if len(f) > 2+125 || !utf8.Valid(f[4:]) || f[1] != byte(len(f)-2) {
		t.Fatalf("long reason: %d bytes, valid utf-8 %v", len(f), utf8.Valid(f[4:]))
	}
}

func TestSizeClass(t *testing.T) {
	for _, tc := range []struct{ n, class int }{
		{0, 0}, {1, 0}, {512, 0}, {513, 1}, {1024, 1}, {1025, 2}, {65536, 7}, {65537, 8},
	} {
		if got := sizeClass(tc.n); got != tc.class {
			t.Errorf("sizeClass(%d) = %d, want %d", tc.n, got, tc.class)
		}
	}
	p := newBufPool(64 << 10)
	for _, n := range []int{0, 100, 600, 4096, 64 << 10} {
		b := p.get(n)
		if cap(*b) < n || len(*b) != 0 || cap(*b) > 2*max(n, 512) {
			t.Errorf("get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		p.put(b)
	}
}

func TestPackIdle(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		code int
		want time.Duration
	}{
		{0, 4103, 0},
		{-time.Second, 4103, 0},
		{time.Microsecond, 4104, time.Millisecond},
		{50 * time.Second, 4103, 50 * time.Second},
	} {
		d, code := unpackIdle(packIdle(tc.d, tc.code))
		if d != tc.want || (d != 0 && code != tc.code) {
			t.Errorf("pack(%v, %d) -> %v, %d", tc.d, tc.code, d, code)
		}
	}
}

// newTestReader returns a reader over input, on a connection that is not
// served, for looking at the reader's state directly.
func newTestReader(t *testing.T, opts Options, input []byte) *reader {
	t.Helper()
	s := New(&recorder{}, opts)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	fc := newFakeConn(bytes.NewReader(input))
	c := s.newConn(fc)
	c.sess = nopSession{}
	return &reader{c: c, nc: fc}
}

func TestReadBufferGrowsWithData(t *testing.T) {
	// A frame declaring 1 MiB, allowed, of which only 100 bytes arrive.
	var hdr bytes.Buffer
	_ = ws.WriteHeader(&hdr, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 1 << 20})
	input := append(hdr.Bytes(), make([]byte, 100)...)
	r := newTestReader(t, Options{MaxFrameBytes: 2 << 20}, input)
	e := r.run()
	if e.kind != endLost || !errors.Is(e.err, io.ErrUnexpectedEOF) {
		t.Fatalf("end %+v", e)
	}
	if got := cap(*r.msg); got > firstChunk {
		t.Fatalf("buffer of %d bytes for 100 received", got)
	}
}

func TestReadDeliversFrames(t *testing.T) {
	var in []byte
	in = append(in, frameBytes(ws.OpText, true, []byte("one"), true)...)
	in = append(in, frameBytes(ws.OpText, false, []byte("tw"), true)...)
	in = append(in, frameBytes(ws.OpContinuation, true, []byte("o"), true)...)
	r := newTestReader(t, Options{}, nil)
	// Half from what net/http buffered, half from the socket.
	r.pending = in[:5]
	r.nc.(*fakeConn).in = bytes.NewReader(in[5:])
	var got []string
	r.c.sess = sessionFunc(func(p []byte) { got = append(got, string(p)) })
	e := r.run()
	if e.kind != endLost || !errors.Is(e.err, io.EOF) {
		t.Fatalf("end %+v", e)
	}
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("got %q", got)
	}
	if r.msg != nil {
		t.Fatal("buffer kept between messages")
	}
}

type sessionFunc func([]byte)

func (f sessionFunc) Frame(p []byte)  { f(p) }
func (sessionFunc) Closed(int, error) {}

func TestCloseCodeOnWire(t *testing.T) {
	p := make([]byte, 2)
	for code := range 5100 {
		binary.BigEndian.PutUint16(p, uint16(code))
		e := parseClose(p)
		if valid := validCloseCode(code); valid != (e.kind == endPeerClose) {
			t.Fatalf("code %d: valid %v, parsed %+v", code, valid, e)
		}
	}
}

func TestWriteCoalescedWithoutWritev(t *testing.T) {
	h := &recorder{}
	s := New(h, Options{})
	fc := newFakeConn(nil)
	fc.out = new(bytes.Buffer)
	sizes := []int{0, 10, 20_000, 5, 70_000, 3, 16 << 10}
	h.onOpen = func(c Conn) {
		for i, n := range sizes {
			_ = c.Send(bytes.Repeat([]byte{byte('a' + i)}, n))
		}
		c.Close(4000, "done")
	}
	s.serveFake(fc, nil)
	h.waitConn(t, 0)
	waitFor(t, "close frame written", func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return bytes.Contains(fc.out.Bytes(), []byte("done"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)

	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := bytes.NewReader(fc.out.Bytes())
	for i, n := range sizes {
		hd, err := ws.ReadHeader(out)
		p := make([]byte, hd.Length)
		if _, err2 := io.ReadFull(out, p); err != nil || err2 != nil {
			t.Fatalf("frame %d: %v %v", i, err, err2)
		}
		if hd.OpCode != ws.OpText || !bytes.Equal(p, bytes.Repeat([]byte{byte('a' + i)}, n)) {
			t.Fatalf("frame %d: op %v, %d bytes, want text of %d", i, hd.OpCode, len(p), n)
		}
	}
	hd, _ := ws.ReadHeader(out)
	if hd.OpCode != ws.OpClose || out.Len() != int(hd.Length) {
		t.Fatalf("then %+v and %d bytes, want the close frame", hd, out.Len())
	}

	// One batch of them: small frames share writes, the 20 and 70 KB
	// payloads are written on their own.
	fc2 := newFakeConn(nil)
	c := s.newConn(fc2)
	b := s.getBatch()
	for _, n := range sizes {
		b.frames = append(b.frames, outFrame{p: make([]byte, n), op: ws.OpText})
	}
	b.prepare(true, 1000, "")
	n, err := c.write(b)
	if err != nil || n != int64(fc2.written) {
		t.Fatalf("write: %d, %v; %d written", n, err, fc2.written)
	}
	// [h0 h1 p1 h2] [p2] [h3 p3 h4] [p4] [h5 p5 h6] [p6, a full chunk] [close]
	if fc2.writes != 7 {
		t.Fatalf("%d writes", fc2.writes)
	}
}
