package gateway

import "time"

// bucket is a token bucket: rate tokens per second up to burst. It is owned
// by one session and used only from its frame handler, so it needs no lock.
type bucket struct {
	tokens float64
	last   time.Time
	// refused counts consecutive refusals; a client that ignores
	// rate_limited long enough is disconnected.
	refused int
}

// take spends one token if there is one; otherwise it returns how long
// until there will be.
func (b *bucket) take(now time.Time, rate float64, burst int) (ok bool, wait time.Duration) {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Seconds() * rate
		if b.tokens > float64(burst) {
			b.tokens = float64(burst)
		}
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		b.refused = 0
		return true, 0
	}
	b.refused++
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}
