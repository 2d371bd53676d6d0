package client

import (
	"errors"
	"testing"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// randMax always draws the top of the range, randZero the bottom, and
// randHalf the middle: with them the jittered waits are exact.
func randMax(n int64) int64  { return n - 1 }
func randZero(int64) int64   { return 0 }
func randHalf(n int64) int64 { return n / 2 }

func TestBackoffSequence(t *testing.T) {
	const minD, maxD = 250 * time.Millisecond, 30 * time.Second
	ceilings := []time.Duration{
		250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second,
	}
	for _, tc := range []struct {
		name string
		rnd  randFunc
		want func(ceil time.Duration) time.Duration
	}{
		{"top of the range", randMax, func(c time.Duration) time.Duration { return c }},
		{"bottom of the range", randZero, func(time.Duration) time.Duration { return 0 }},
		{"middle", randHalf, func(c time.Duration) time.Duration { return (c + 1) / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &backoff{min: minD, max: maxD, rand: tc.rnd}
			for i, ceil := range ceilings {
				if got := b.next(); got != tc.want(ceil) {
					t.Fatalf("wait %d = %v, want %v", i, got, tc.want(ceil))
				}
			}
			// Many more attempts never overflow past the cap.
			for range 100 {
				if got := b.next(); got > maxD || got < 0 {
					t.Fatalf("wait %v outside [0, %v]", got, maxD)
				}
			}
			b.reset()
			if got := b.next(); got != tc.want(minD) {
				t.Fatalf("after reset: %v, want %v", got, tc.want(minD))
			}
		})
	}
}

func TestJitterIsWithinBounds(t *testing.T) {
	seen := map[time.Duration]bool{}
	rnd := func(n int64) int64 { return int64(len(seen)) % n } // walks the range
	for range 50 {
		d := jitter(rnd, 10)
		if d < 0 || d > 10 {
			t.Fatalf("jitter %v outside [0, 10]", d)
		}
		seen[d] = true
	}
	if jitter(randMax, 0) != 0 || jitter(randMax, -1) != 0 {
		t.Fatal("jitter of a non-positive bound must be 0")
	}
}

func TestDecide(t *testing.T) {
	const minD, maxD = 100 * time.Millisecond, 10 * time.Second
	dir := func(action string, code int, retryMS int64, url string) *protocol.Directive {
		return &protocol.Directive{Action: action, Code: code, RetryAfterMS: retryMS, URL: url}
	}
	tests := []struct {
		name     string
		o        outcome
		attempts int // back-off attempts before this one
		want     plan
		stopCode int
	}{
		{name: "directive reconnect: within retry_after", o: outcome{stable: true, directive: dir("reconnect", 4000, 700, "")},
			want: plan{delay: 700 * time.Millisecond}},
		{name: "directive reconnect 0: now", o: outcome{stable: true, directive: dir("reconnect", 4000, 0, "")},
			want: plan{delay: 0}},
		{name: "directive backoff: retry_after plus up to as much", o: outcome{stable: true, directive: dir("backoff", 4101, 3000, "")},
			want: plan{delay: 6 * time.Second}},
		{name: "directive backoff without retry_after: exponential", o: outcome{stable: true, directive: dir("backoff", 4101, 0, "")},
			attempts: 3, want: plan{delay: minD}},
		{name: "directive redirect with url", o: outcome{stable: true, directive: dir("redirect", 4200, 500, "ws://b/v1/ws")},
			want: plan{delay: 500 * time.Millisecond, url: "ws://b/v1/ws"}},
		{name: "directive redirect without url: ask the router again", o: outcome{stable: true, directive: dir("redirect", 4200, 0, "")},
			want: plan{rotate: true}},
		{name: "directive stop", o: outcome{stable: true, directive: dir("stop", 4403, 0, ""), code: 4403},
			want: plan{stop: true}, stopCode: 4403},
		{name: "close 1000: reconnect now", o: outcome{stable: true, code: 1000}, want: plan{delay: time.Second}},
		{name: "close 1001: reconnect now", o: outcome{stable: true, code: 1001}, want: plan{delay: time.Second}},
		{name: "close 4000-4099: reconnect now, spread", o: outcome{stable: true, code: 4042}, want: plan{delay: time.Second}},
		{name: "close 4100-4199: back-off", o: outcome{stable: false, code: 4150}, attempts: 2, want: plan{delay: 4 * minD}},
		{name: "close 4200-4299: another node", o: outcome{stable: true, code: 4299}, want: plan{delay: time.Second, rotate: true}},
		{name: "close 4300-4399: new token, back-off", o: outcome{stable: false, code: 4300}, attempts: 1, want: plan{delay: 2 * minD}},
		{name: "close 4400-4499: stop", o: outcome{code: 4499}, want: plan{stop: true}, stopCode: 4499},
		{name: "abnormal close: back-off", o: outcome{stable: false, code: 1006}, attempts: 3, want: plan{delay: 8 * minD}},
		{name: "no close at all: back-off", o: outcome{err: errors.New("refused")}, attempts: 20, want: plan{delay: maxD}},
		{name: "refused auth implies its close code", o: outcome{authErr: &protocol.Error{Code: protocol.CodeAppDisabled}},
			want: plan{stop: true}, stopCode: protocol.CloseAppDisabled},
		{name: "refused auth, expired token: back-off", o: outcome{authErr: &protocol.Error{Code: protocol.CodeTokenExpired}},
			want: plan{delay: minD}},
		{name: "http 503 with Retry-After: that plus jitter", o: outcome{refused: true, retryAfter: 2 * time.Second},
			want: plan{delay: 4 * time.Second}},
		{name: "http 503 with Retry-After: no back-off on top", o: outcome{refused: true, retryAfter: time.Second},
			attempts: 6, want: plan{delay: 2 * time.Second}},
		{name: "http 503 without Retry-After: back-off", o: outcome{refused: true}, attempts: 1, want: plan{delay: 2 * minD}},
		{name: "unstable connection: at least the back-off, whatever the directive says",
			o: outcome{authed: true, directive: dir("reconnect", 4000, 0, "")}, attempts: 4, want: plan{delay: 16 * minD}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &backoff{min: minD, max: maxD, rand: randMax, attempt: tt.attempts}
			got := decide(tt.o, b, randMax)
			if got.stop != tt.want.stop || got.delay != tt.want.delay || got.url != tt.want.url || got.rotate != tt.want.rotate {
				t.Fatalf("decide = %+v, want %+v", got, tt.want)
			}
			if tt.want.stop {
				var ce *CloseError
				if !errors.As(got.err, &ce) || ce.Code != tt.stopCode {
					t.Fatalf("stop error = %v, want a *CloseError with code %d", got.err, tt.stopCode)
				}
			}
		})
	}
}

// A 503 with Retry-After neither waits for nor advances the back-off: a
// node shedding a storm sets the schedule, and the clients it refused come
// back when it said, not ever later.
func TestDecide503KeepsBackoff(t *testing.T) {
	b := &backoff{min: time.Second, max: time.Minute, rand: randMax, attempt: 2}
	for range 5 {
		if p := decide(outcome{refused: true, retryAfter: time.Second}, b, randMax); p.delay != 2*time.Second {
			t.Fatalf("503 with Retry-After 1s: wait %v, want 2s (1s plus at most as much)", p.delay)
		}
	}
	if b.attempt != 2 {
		t.Fatalf("back-off at attempt %d after 503s, want 2 (unchanged)", b.attempt)
	}
	if p := decide(outcome{code: 1006}, b, randMax); p.delay != 4*time.Second {
		t.Fatalf("a broken connection after the 503s: %v, want the back-off's next step (4s)", p.delay)
	}
}

func TestDecideResetsAfterStableConnection(t *testing.T) {
	b := &backoff{min: time.Second, max: time.Minute, rand: randMax, attempt: 5}
	if p := decide(outcome{stable: true, code: 1006}, b, randMax); p.delay != time.Second {
		t.Fatalf("after a stable connection: %v, want the first back-off step (1s)", p.delay)
	}
	if p := decide(outcome{code: 1006}, b, randMax); p.delay != 2*time.Second {
		t.Fatalf("then: %v, want 2s", p.delay)
	}
}

func TestParseRetryAfter(t *testing.T) {
	for in, want := range map[string]int64{"": -1, "3": 3, "0": 0, "-5": 0, "junk": -1, "999999": int64(maxRetryAfter / time.Second)} {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %d, want %d", in, got, want)
		}
	}
}
