package client

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// A client frame is one masked, final text frame that a server reads back
// as the message, whatever its length class, and the message is left as
// it was.
func TestClientTextFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 100000} {
		msg := []byte(strings.Repeat("x", n))
		orig := bytes.Clone(msg)
		r := bytes.NewReader(clientTextFrame(msg))
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !h.Fin || h.OpCode != ws.OpText || !h.Masked || h.Length != int64(n) {
			t.Fatalf("%d bytes: header %+v, want a final masked text frame of %d bytes", n, h, n)
		}
		payload, _ := io.ReadAll(r)
		ws.Cipher(payload, h.Mask, 0)
		if !bytes.Equal(payload, orig) {
			t.Fatalf("%d bytes: the server reads a different message", n)
		}
		if !bytes.Equal(msg, orig) {
			t.Fatalf("%d bytes: the message was changed", n)
		}
	}
}
