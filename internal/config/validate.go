package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
)

// envelopeBytes is the room a message frame needs around its body (ids,
// conversation, sender, timestamps, JSON punctuation). A body of
// max-body-bytes must still fit in a frame, and in the send queue, with it.
const envelopeBytes = 1024

// Validate reports every value in c that cannot work, each problem naming
// its option, joined into one error so a configuration can be fixed in one
// pass. It checks values only; whether files exist or addresses can be
// bound is found out when the server starts.
func (c Config) Validate() error {
	var p problems

	for _, l := range []struct {
		name string
		v    int
	}{
		{"append-batch", c.AppendBatch},
		{"append-queue", c.AppendQueue},
		{"max-conns", c.MaxConns},
		{"frame-workers", c.FrameWorkers},
		{"max-frame-bytes", c.MaxFrameBytes},
		{"max-body-bytes", c.MaxBodyBytes},
		{"send-queue-bytes", c.SendQueueBytes},
		{"max-rooms", c.MaxRooms},
		{"max-sync-convs", c.MaxSyncConvs},
		{"max-group-members", c.MaxGroupMembers},
		{"max-presence", c.MaxPresence},
		{"presence-members", c.PresenceMembers},
		{"burst", c.Burst},
		{"subscribe-rate", c.SubscribeRate},
	} {
		// The layers below treat zero as "use my default" or "unlimited";
		// accepting it here would make the option silently mean something
		// else than what was written.
		if l.v < 1 {
			p.addf(l.name, "must be at least 1 (got %d)", l.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"auth-timeout", c.AuthTimeout},
		{"ping-interval", c.PingInterval},
		{"write-timeout", c.WriteTimeout},
		{"shutdown-timeout", c.ShutdownTimeout},
		{"heartbeat-interval", c.HeartbeatInterval},
		{"route-ttl", c.RouteTTL},
		{"drain-window", c.DrainWindow},
	} {
		if d.v <= 0 {
			p.addf(d.name, "must be positive (got %s)", formatDuration(d.v))
		}
	}
	if c.CatchUpDelay < 0 {
		p.addf("catch-up-delay", "must not be negative (got %s)", formatDuration(c.CatchUpDelay))
	}
	// Zero is meaningful here: a rotated secret stops working at once.
	if c.SecretGrace < 0 {
		p.addf("secret-grace", "must not be negative (got %s)", formatDuration(c.SecretGrace))
	}
	if c.Rate <= 0 || math.IsNaN(c.Rate) {
		p.addf("rate", "must be positive (got %v)", c.Rate)
	}
	if c.MaxBodyBytes >= 1 && c.MaxFrameBytes < c.MaxBodyBytes+envelopeBytes {
		p.addf("max-frame-bytes", "must be at least max-body-bytes + %d = %d, so a message of the largest body fits in a frame (got %d)",
			envelopeBytes, c.MaxBodyBytes+envelopeBytes, c.MaxFrameBytes)
	}
	if c.MaxBodyBytes >= 1 && c.SendQueueBytes >= 1 && c.SendQueueBytes < c.MaxBodyBytes+envelopeBytes {
		// Otherwise delivering one large message closes the recipient as a
		// slow consumer, every time.
		p.addf("send-queue-bytes", "must be at least max-body-bytes + %d = %d, so a message of the largest body can be queued (got %d)",
			envelopeBytes, c.MaxBodyBytes+envelopeBytes, c.SendQueueBytes)
	}

	if (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			p.addf("tls-key", "is set without tls-cert; give both or neither")
		} else {
			p.addf("tls-cert", "is set without tls-key; give both or neither")
		}
	}
	if c.AdvertiseURL != "" {
		if u, err := url.Parse(c.AdvertiseURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			p.addf("advertise-url", "must be a ws:// or wss:// URL (got %q)", c.AdvertiseURL)
		}
	}

	switch s := c.Store; {
	case s == "", strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
	case strings.HasPrefix(s, "sqlite:"):
		if strings.TrimPrefix(s, "sqlite:") == "" {
			p.addf("store", "sqlite: needs a database file path, e.g. sqlite:/var/lib/floodgate/floodgate.db")
		}
	default:
		// Schemes are matched case-sensitively because that is how the
		// server picks the store; a value passing here must open there.
		p.addf("store", "must be empty, sqlite:PATH, postgres://… or postgresql://… (got %q)", redactURL(s))
	}
	// Without a store URL the database lives in data-dir, and without an
	// admin token one is generated and kept there.
	if c.DataDir == "" && (c.Store == "" || c.AdminToken == "") {
		p.addf("data-dir", "must be set unless both store and admin-token are")
	}
	if c.UserInterest != "user" && c.UserInterest != "app" {
		p.addf("user-interest", "must be user or app (got %q)", c.UserInterest)
	}
	if c.SQLiteSync != "full" && c.SQLiteSync != "normal" {
		p.addf("sqlite-sync", "must be full or normal (got %q)", c.SQLiteSync)
	}
	if len(c.NATSURLs) > 0 && c.NATSListen != "" {
		// nats-listen exposes the in-process server, which does not run
		// when an external one is used; the address would silently stay
		// closed.
		p.addf("nats-listen", "has no effect with nats-url; unset one of them")
	}

	validLog(&p, c.LogLevel, c.LogFormat)
	return errors.Join(p...)
}

func validLog(p *problems, level, format string) {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		p.addf("log-level", "must be debug, info, warn or error (got %q)", level)
	}
	switch format {
	case "text", "json":
	default:
		p.addf("log-format", "must be text or json (got %q)", format)
	}
}

// problems collects Validate's findings.
type problems []error

func (p *problems) addf(option, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", option, fmt.Sprintf(format, args...)))
}

// redactURL hides a password that may be embedded in a store URL, since
// the error ends up in logs.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}
