package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"testing"
	"time"
)

// The SDK reports a 503 only in its debug log of failed dials; the storm
// counts them there. This pins the message the count depends on.
func TestDialLogCountsRefusedUpgrades(t *testing.T) {
	var (
		n       atomic.Int64
		retries retryCounts
	)
	log := slog.New(dialLog{rejected: &n, retries: &retries}).With("client", 1)
	log.Debug("floodgate: dial failed", "url", "ws://x/v1/ws", "err", errors.New("floodgate: upgrade refused with HTTP 503 (Retry-After 1s)"))
	log.Debug("floodgate: dial failed", "url", "ws://x/v1/ws", "err", errors.New("dial tcp: connection refused"))
	log.Info("floodgate: reconnecting", "in", time.Second, "why", "http 503", "code", 0, "err", errors.New("floodgate: upgrade refused with HTTP 503"))
	log.Info("floodgate: reconnecting", "why", "connection failed", "err", errors.New("dial tcp 127.0.0.1:7170: connect: connection refused"))
	log.Info("floodgate: reconnecting", "why", "connection failed", "err", errors.New("dial tcp 127.0.0.1:7170: connect: connection refused"))
	log.Info("floodgate: reconnecting", "why", "connection failed", "err", errors.New("floodgate: auth: context deadline exceeded"))
	if n.Load() != 1 {
		t.Fatalf("counted %d refusals, want 1", n.Load())
	}
	want := map[string]int64{"http 503": 1, "connection failed: refused": 2, "connection failed: auth": 1}
	if got := retries.snapshot(); !maps.Equal(got, want) {
		t.Fatalf("retries by cause %v, want %v", got, want)
	}
	for i := range 2 * maxRetryCauses {
		retries.add(fmt.Sprint("cause ", i))
	}
	if got := len(retries.snapshot()); got != maxRetryCauses+1 {
		t.Fatalf("%d causes counted, want at most %d and other", got, maxRetryCauses)
	}
}
