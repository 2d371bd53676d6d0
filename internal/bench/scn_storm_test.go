package bench

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
)

// The SDK reports a 503 only in its debug log of failed dials; the storm
// counts them there. This pins the message the count depends on.
func TestDialLogCountsRefusedUpgrades(t *testing.T) {
	var n atomic.Int64
	log := slog.New(dialLog{rejected: &n}).With("client", 1)
	log.Debug("floodgate: dial failed", "url", "ws://x/v1/ws", "err", errors.New("floodgate: upgrade refused with HTTP 503 (Retry-After 1s)"))
	log.Debug("floodgate: dial failed", "url", "ws://x/v1/ws", "err", errors.New("dial tcp: connection refused"))
	log.Info("floodgate: reconnecting", "why", "http 503")
	if n.Load() != 1 {
		t.Fatalf("counted %d refusals, want 1", n.Load())
	}
}
