package transport

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"
)

// TestTLSKeyUpdate has OpenSSL's s_client, which can send a TLS 1.3
// KeyUpdate (Go's client cannot), ask a connection on the event loops to
// update its keys. crypto/tls writes the answer, its own KeyUpdate, from
// inside a Read, that is from the read pass that decrypted the request:
// the connection must then start a flusher for it, and the answer must
// reach the client with nothing else to send. Messages then still go both
// ways, each side on its new keys.
func TestTLSKeyUpdate(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl to send a KeyUpdate with")
	}
	ts := startServer(t, echo(), tlsEventLoops, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	// Interactive (no -quiet): a line "K" sends a KeyUpdate that requests
	// the peer's. -msg prints every TLS message, KeyUpdates included.
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", ts.http.Listener.Addr().String(), "-tls1_3", "-msg")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	// Every write is one read for s_client, which takes a read starting
	// with a command letter for a command: none of these does but "K".
	send := func(p []byte) {
		t.Helper()
		if _, err := stdin.Write(p); err != nil {
			t.Fatalf("writing to s_client: %v", err)
		}
	}
	seen := func(what string, cond func(string) bool) {
		t.Helper()
		waitFor(t, what, func() bool { return cond(out.String()) })
	}
	contains := func(s string) func(string) bool {
		return func(o string) bool { return strings.Contains(o, s) }
	}
	send([]byte(upgradeRequest))
	seen("the upgrade", contains("101 Switching Protocols"))
	send(frameBytes(ws.OpText, true, []byte("before-the-key-update"), true))
	seen("the first echo", contains("before-the-key-update"))

	before := out.String()
	send([]byte("K\n"))
	seen("the server's KeyUpdate", func(o string) bool {
		return strings.Contains(strings.TrimPrefix(o, before), "<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
	})
	send(frameBytes(ws.OpText, true, []byte("after-the-key-update"), true))
	seen("the echo on the new keys", contains("after-the-key-update"))
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
