//go:build !linux

package transport

import (
	"net"
	"testing"
)

// idleConnsMax is the larger connection count of BenchmarkIdleConns.
func idleConnsMax() int { return 2000 }

// streamPair returns the two ends of a loopback TCP connection, the first
// for the server.
func streamPair(t *testing.T) (server, client net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}
