package config

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // the start of one of the reported problems
	}{
		{"append-batch zero", func(c *Config) { c.AppendBatch = 0 }, "append-batch: must be at least 1"},
		{"append-queue negative", func(c *Config) { c.AppendQueue = -1 }, "append-queue: must be at least 1"},
		{"max-conns zero", func(c *Config) { c.MaxConns = 0 }, "max-conns:"},
		{"max-frame-bytes zero", func(c *Config) { c.MaxFrameBytes = 0 }, "max-frame-bytes: must be at least 1"},
		{"max-body-bytes zero", func(c *Config) { c.MaxBodyBytes = 0 }, "max-body-bytes:"},
		{"send-queue-bytes zero", func(c *Config) { c.SendQueueBytes = 0 }, "send-queue-bytes: must be at least 1"},
		{"max-rooms zero", func(c *Config) { c.MaxRooms = 0 }, "max-rooms:"},
		{"max-sync-convs zero", func(c *Config) { c.MaxSyncConvs = 0 }, "max-sync-convs:"},
		{"max-group-members zero", func(c *Config) { c.MaxGroupMembers = 0 }, "max-group-members:"},
		{"max-presence zero", func(c *Config) { c.MaxPresence = 0 }, "max-presence:"},
		{"presence-members zero", func(c *Config) { c.PresenceMembers = 0 }, "presence-members:"},
		{"burst zero", func(c *Config) { c.Burst = 0 }, "burst: must be at least 1"},
		{"rate zero", func(c *Config) { c.Rate = 0 }, "rate: must be positive"},
		{"rate negative", func(c *Config) { c.Rate = -1 }, "rate:"},
		{"rate NaN", func(c *Config) { c.Rate = math.NaN() }, "rate:"},
		{"auth-timeout zero", func(c *Config) { c.AuthTimeout = 0 }, "auth-timeout: must be positive"},
		{"ping-interval negative", func(c *Config) { c.PingInterval = -time.Second }, "ping-interval:"},
		{"write-timeout zero", func(c *Config) { c.WriteTimeout = 0 }, "write-timeout:"},
		{"shutdown-timeout zero", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown-timeout:"},
		{"secret-grace negative", func(c *Config) { c.SecretGrace = -time.Hour }, "secret-grace: must not be negative"},
		{"frame smaller than body", func(c *Config) { c.MaxFrameBytes = 16 << 10; c.MaxBodyBytes = 16 << 10 },
			"max-frame-bytes: must be at least max-body-bytes + 1024"},
		{"frame one byte short", func(c *Config) { c.MaxBodyBytes = c.MaxFrameBytes - 1023 }, "max-frame-bytes:"},
		{"send queue smaller than a message", func(c *Config) { c.SendQueueBytes = c.MaxBodyBytes }, "send-queue-bytes: must be at least max-body-bytes"},
		{"sqlite-sync", func(c *Config) { c.SQLiteSync = "off" }, `sqlite-sync: must be full or normal (got "off")`},
		{"sqlite-sync case", func(c *Config) { c.SQLiteSync = "FULL" }, "sqlite-sync:"},
		{"user-interest", func(c *Config) { c.UserInterest = "room" }, `user-interest: must be user or app (got "room")`},
		{"log-level", func(c *Config) { c.LogLevel = "trace" }, `log-level: must be debug, info, warn or error (got "trace")`},
		{"log-level empty", func(c *Config) { c.LogLevel = "" }, "log-level:"},
		{"log-format", func(c *Config) { c.LogFormat = "logfmt" }, "log-format: must be text or json"},
		{"tls-cert alone", func(c *Config) { c.TLSCert = "cert.pem" }, "tls-cert: is set without tls-key"},
		{"tls-key alone", func(c *Config) { c.TLSKey = "key.pem" }, "tls-key: is set without tls-cert"},
		{"store mysql", func(c *Config) { c.Store = "mysql://db/x" }, `store: must be empty, sqlite:PATH`},
		{"store path without scheme", func(c *Config) { c.Store = "/var/lib/floodgate.db" }, "store:"},
		{"store scheme case", func(c *Config) { c.Store = "SQLITE:/x.db" }, "store:"},
		{"store postgres without slashes", func(c *Config) { c.Store = "postgres:db" }, "store:"},
		{"store sqlite without path", func(c *Config) { c.Store = "sqlite:" }, "store: sqlite: needs a database file path"},
		{"data-dir empty", func(c *Config) { c.DataDir = "" }, "data-dir: must be set"},
		{"data-dir empty with store only", func(c *Config) { c.DataDir = ""; c.Store = "sqlite:/x.db" }, "data-dir:"},
		{"advertise-url without scheme", func(c *Config) { c.AdvertiseURL = "chat.example.com:7070" }, "advertise-url: must be a ws:// or wss:// URL"},
		{"advertise-url http", func(c *Config) { c.AdvertiseURL = "https://chat.example.com/v1/ws" }, "advertise-url:"},
		{"nats-listen with nats-url", func(c *Config) { c.NATSURLs = []string{"nats://a:4222"}; c.NATSListen = ":4222" }, "nats-listen: has no effect with nats-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			if !hasProblem(err, tt.want) {
				t.Errorf("error %q has no problem starting with %q", err, tt.want)
			}
		})
	}
}

// hasProblem reports whether one of the joined problems in err starts
// with prefix, so a test cannot pass on a different option's message.
func hasProblem(err error, prefix string) bool {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return strings.HasPrefix(err.Error(), prefix)
	}
	for _, e := range joined.Unwrap() {
		if strings.HasPrefix(e.Error(), prefix) {
			return true
		}
	}
	return false
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"sqlite store", func(c *Config) { c.Store = "sqlite:/var/lib/floodgate/floodgate.db" }},
		{"postgres store", func(c *Config) { c.Store = "postgres://u:p@db/floodgate" }},
		{"postgresql store", func(c *Config) { c.Store = "postgresql://db/floodgate?sslmode=verify-full" }},
		{"normal sync", func(c *Config) { c.SQLiteSync = "normal" }},
		{"app-wide user interest", func(c *Config) { c.UserInterest = "app" }},
		{"every log level", func(c *Config) { c.LogLevel = "debug" }},
		{"warn", func(c *Config) { c.LogLevel = "warn" }},
		{"error", func(c *Config) { c.LogLevel = "error" }},
		{"json logs", func(c *Config) { c.LogFormat = "json" }},
		{"tls", func(c *Config) { c.TLSCert, c.TLSKey = "cert.pem", "key.pem" }},
		{"no grace", func(c *Config) { c.SecretGrace = 0 }},
		{"unlimited rate", func(c *Config) { c.Rate = math.Inf(1) }},
		{"burst one", func(c *Config) { c.Burst = 1 }},
		{"frame exactly body + envelope", func(c *Config) { c.MaxFrameBytes = c.MaxBodyBytes + 1024 }},
		{"send queue exactly body + envelope", func(c *Config) { c.SendQueueBytes = c.MaxBodyBytes + 1024 }},
		{"no data-dir with store and token", func(c *Config) {
			c.DataDir, c.Store, c.AdminToken = "", "sqlite:/x.db", "secret"
		}},
		{"advertise-url", func(c *Config) { c.AdvertiseURL = "wss://chat.example.com/v1/ws" }},
		{"external nats", func(c *Config) { c.NATSURLs = []string{"nats://a:4222", "nats://b:4222"} }},
		{"ops disabled", func(c *Config) { c.OpsListen = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Burst, c.LogFormat, c.PingInterval = 0, "xml", 0
	err := c.Validate()
	for _, want := range []string{"burst:", "log-format:", "ping-interval:"} {
		if !hasProblem(err, want) {
			t.Errorf("error %q does not report %s", err, want)
		}
	}
}

func TestValidateRedactsStorePassword(t *testing.T) {
	c := Default()
	c.Store = "mysql://user:hunter2@db/x"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v should reject the store without showing its password", err)
	}
}
