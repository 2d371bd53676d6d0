package transport

import (
	"log/slog"
	"time"
)

// Defaults New applies to the zero fields of Options.
const (
	// DefaultMaxFrameBytes is Options.MaxFrameBytes's default, the
	// protocol's documented max_frame_bytes.
	DefaultMaxFrameBytes = 64 << 10
	// DefaultQueueBytes is Options.QueueBytes's default.
	DefaultQueueBytes = 1 << 20
	// DefaultWriteTimeout is Options.WriteTimeout's default.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultCloseTimeout is Options.CloseTimeout's default.
	DefaultCloseTimeout = 2 * time.Second
	// DefaultSlowConsumerCode is Options.SlowConsumerCode's default, RFC
	// 6455's "policy violation"; the gateway uses its own 4100.
	DefaultSlowConsumerCode = 1008
	// DefaultRetryAfter is Options.RetryAfter's default.
	DefaultRetryAfter = 5 * time.Second
	// DefaultAdmitRetryAfter is Options.AdmitRetryAfter's default.
	DefaultAdmitRetryAfter = time.Second
	// DefaultFrameWorkers is Options.FrameWorkers's default: enough for
	// Session.Frame calls waiting on a database for a few milliseconds not
	// to hold up the others, few enough that a stalled database cannot
	// make the server start thousands of goroutines.
	DefaultFrameWorkers = 256
)

// sweepInterval is how often the idle sweeper looks at every connection.
const sweepInterval = time.Second

// Options configures a Server. A zero field selects the default named in its
// comment; negative durations and sizes count as zero.
type Options struct {
	// MaxConns is the most connections served at once, upgrades in
	// progress included. Beyond it an upgrade is refused with HTTP 503 and a
	// Retry-After header, before any WebSocket handshake. Zero: no limit.
	MaxConns int
	// Admit, when set, is asked before each upgrade whether the server
	// takes one more connection now; false refuses it as MaxConns does
	// (HTTP 503 with Retry-After). It lets the handler shed a reconnect
	// storm before paying for connections it could not serve in time.
	Admit func() bool
	// AdmitRetryAfter is the base of the Retry-After header of an upgrade
	// Admit refused: short, as what it waits for (auths in progress) clears
	// in about the time of an auth. Default DefaultAdmitRetryAfter.
	AdmitRetryAfter time.Duration
	// MaxFrameBytes is the largest message a client may send, counted after
	// assembling continuation frames. A larger one is answered with
	// OversizeFrame and close code 1009. Default DefaultMaxFrameBytes.
	MaxFrameBytes int
	// QueueBytes is each connection's outbound budget: the payload bytes of
	// the frames queued or being written (control frames count their header
	// too). A Send that would exceed it fails with ErrSlowConsumer. Default
	// DefaultQueueBytes.
	QueueBytes int
	// WriteTimeout is the deadline of every socket write; a write that
	// misses it closes the connection. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// CloseTimeout bounds, from the moment a connection starts closing, the
	// writing of its queued frames and close frame; once the close frame is
	// written it also bounds the wait for the client's answering close
	// frame. Default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// SlowConsumerCode is the close code sent when Send overflows
	// QueueBytes. Default DefaultSlowConsumerCode.
	SlowConsumerCode int
	// OversizeFrame, if not empty, is a text frame sent before closing with
	// 1009 a connection whose client sent a message over MaxFrameBytes. It
	// is shared by every connection and never modified.
	OversizeFrame []byte
	// RetryAfter is the base of the Retry-After header of a refused upgrade;
	// each refusal adds up to half of it at random, so that refused clients
	// do not come back together. Rounded up to whole seconds. Default
	// DefaultRetryAfter.
	RetryAfter time.Duration
	// Logger receives the package's diagnostics, all per-connection ones at
	// debug level. Default: discard.
	Logger *slog.Logger
	// Now is the clock of idle timeouts: when frames arrive and when the
	// sweeper looks. Socket deadlines always use the real clock. Default
	// time.Now.
	Now func() time.Time
	// GoroutinePerConn serves every connection with a reader goroutine of
	// its own, as every platform but Linux always does, instead of the
	// event loops that serve TCP connections on Linux (plain, or TLS from
	// NewTLSListener) without a goroutine or a buffer per idle connection. It is an escape
	// hatch, and the baseline of the comparison benchmarks; an idle
	// connection costs about 4 KiB more with it.
	GoroutinePerConn bool
	// FrameWorkers bounds, for the connections served by the event loops,
	// the goroutines that read their frames and call Session.Frame: at
	// most this many Frame calls run at once, and a connection whose frames
	// arrive while all of them are busy waits for one. Workers beyond
	// GOMAXPROCS exist only while there is work. Default
	// DefaultFrameWorkers.
	FrameWorkers int

	// sweepEvery replaces sweepInterval; tests shorten it.
	sweepEvery time.Duration
}

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.MaxConns < 0 {
		o.MaxConns = 0
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.SlowConsumerCode == 0 {
		o.SlowConsumerCode = DefaultSlowConsumerCode
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.AdmitRetryAfter <= 0 {
		o.AdmitRetryAfter = DefaultAdmitRetryAfter
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FrameWorkers <= 0 {
		o.FrameWorkers = DefaultFrameWorkers
	}
	if o.sweepEvery <= 0 {
		o.sweepEvery = sweepInterval
	}
	return o
}
