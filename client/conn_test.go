package client

import (
	"bytes"
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
		f, err := ws.ReadFrame(bytes.NewReader(clientTextFrame(msg)))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !f.Header.Fin || f.Header.OpCode != ws.OpText || !f.Header.Masked {
			t.Fatalf("%d bytes: header %+v, want a final masked text frame", n, f.Header)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if !bytes.Equal(f.Payload, orig) {
			t.Fatalf("%d bytes: the server reads a different message", n)
		}
		if !bytes.Equal(msg, orig) {
			t.Fatalf("%d bytes: the message was changed", n)
		}
	}
}
