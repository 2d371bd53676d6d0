package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The SDK reports a 503 only in its debug log of failed dials; the storm
// counts them there. This pins the message the count depends on.
func TestDialLogCountsRefusedUpgrades(t *testing.T) {
	var (
		n       atomic.Int64
		retries errorCounts
	)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	log := slog.New(dialLog{rejected: &n, retries: &retries}).With("client", 1)
	log.Debug("floodgate: dial failed", "url", "ws://x/v1/ws", "err", errors.New("floodgate: upgrade refused with HTTP 503 (Retry-After 1s)"))
	log.Debug("floodgate: dial failed", "url", "ws://x/v1/ws", "err", refused)
	// The attributes of the SDK's "reconnecting" line.
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "http 503", "code", 0, "err", errors.New("floodgate: upgrade refused with HTTP 503"))
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "connection failed", "code", 0, "err", refused)
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "connection failed", "code", 0, "err", refused)
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "connection failed", "code", 0, "err", reset)
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "connection failed", "code", 0,
		"err", fmt.Errorf("floodgate: auth: %w", context.DeadlineExceeded))
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "close backoff", "code", 4104, "err", nil)
	if n.Load() != 1 {
		t.Fatalf("counted %d refusals, want 1", n.Load())
	}
	want := map[string]int64{"http 503": 1, "connection failed: refused": 2, "connection failed: reset": 1,
		"connection failed: timeout": 1, "close backoff 4104": 1}
	if got := retries.snapshot(); !maps.Equal(got, want) {
		t.Fatalf("retries by cause %v, want %v", got, want)
	}
}
