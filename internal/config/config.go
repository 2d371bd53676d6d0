// Package config holds the configuration of a Floodgate node: one struct
// filled from defaults, an optional YAML file, FLOODGATE_* environment
// variables and command-line flags, in increasing order of precedence.
//
// Each field's tags give its flag name (also the YAML key; the environment
// variable is FLOODGATE_ followed by the flag name upper-cased with '-'
// turned into '_') and its help text. The zero value is not useful; start
// from Default.
package config

import "time"

// Config configures `floodgate server`. Field order is the order of
// `floodgate server --help`.
type Config struct {
	Config string `flag:"config" usage:"YAML configuration file (keys are the flag names)"`

	Listen       string `flag:"listen" usage:"address for client WebSockets (/v1/ws) and the HTTP APIs"`
	OpsListen    string `flag:"ops-listen" usage:"address for /metrics, /livez, /readyz and /debug/pprof; empty disables"`
	AdvertiseURL string `flag:"advertise-url" usage:"WebSocket URL clients use to reach this node (default: derived from --listen)"`
	NodeID       string `flag:"node-id" usage:"unique name of this node (default: hostname and a random suffix)"`
	TLSCert      string `flag:"tls-cert" usage:"PEM certificate file; with --tls-key serves wss:// and https://"`
	TLSKey       string `flag:"tls-key" usage:"PEM private key file"`
	TLSHybridKEX bool   `flag:"tls-hybrid-kex" usage:"offer the post-quantum hybrid key exchange X25519MLKEM768 to TLS clients; false uses X25519 and P-256 only, about 15% less CPU per full handshake"`

	DataDir      string        `flag:"data-dir" usage:"directory for the embedded SQLite database and the generated admin token"`
	Store        string        `flag:"store" usage:"store URL: empty for SQLite in --data-dir, sqlite:PATH, or postgres://…"`
	SQLiteSync   string        `flag:"sqlite-sync" usage:"SQLite synchronous mode: full (durable across power loss) or normal (durable across process crash)"`
	AppendBatch  int           `flag:"append-batch" usage:"most messages written in one group-commit transaction"`
	AppendQueue  int           `flag:"append-queue" usage:"most messages waiting for group commit; beyond it sends fail with 'unavailable'"`
	CommitWindow time.Duration `flag:"commit-window" usage:"SQLite: how long a group commit waits for more messages to join it (0: none); more messages per fsync under moderate load, that much more ack latency"`

	NATSURLs      []string      `flag:"nats-url" usage:"external NATS server URL(s), comma-separated; empty runs NATS in-process"`
	NATSListen    string        `flag:"nats-listen" usage:"also expose the in-process NATS server on this address (empty: in-process only)"`
	SubscribeRate int           `flag:"subscribe-rate" usage:"with nats-url, most bus subscription changes per second; a restarted node takes its clients' subscriptions back at this pace"`
	CatchUpDelay  time.Duration `flag:"catch-up-delay" usage:"with nats-url, clients resync this long after subscribing, covering the time their interest takes to reach every NATS server (0 disables); not when the node's interest is older than this"`
	UserInterest  string        `flag:"user-interest" usage:"with nats-url, how a node follows its users on NATS: user (a subscription per user; a node receives its own users' messages only) or app (one wildcard per app: authenticating needs no NATS round trip and, once the wildcard has settled, no catch-up resync; every node receives all of the app's user messages: for a few nodes)"`

	HeartbeatInterval time.Duration `flag:"heartbeat-interval" usage:"how often the node announces its status on the bus; a node silent for 3 intervals is considered gone"`
	RouteTTL          time.Duration `flag:"route-ttl" usage:"how long clients may cache an answer of this node's router (/v1/route)"`
	DrainWindow       time.Duration `flag:"drain-window" usage:"on SIGTERM or 'floodgate ctl drain', the time over which clients are moved to other nodes in small batches"`

	AdminToken      string        `flag:"admin-token" usage:"bearer token for the admin API (default: generated on first start and kept in --data-dir)"`
	SecretGrace     time.Duration `flag:"secret-grace" usage:"how long an app's previous secret still verifies tokens after rotation"`
	AuthTimeout     time.Duration `flag:"auth-timeout" usage:"a connection must authenticate within this time"`
	MaxPendingAuth  int           `flag:"max-pending-auth" usage:"most connections open and not yet authenticated; beyond it upgrades get HTTP 503 with Retry-After, so a reconnect storm is shed while auth is slow (0: no limit)"`
	PingInterval    time.Duration `flag:"ping-interval" usage:"interval clients must ping at; silence for two intervals closes the connection"`
	WriteTimeout    time.Duration `flag:"write-timeout" usage:"deadline for writing to one client"`
	ShutdownTimeout time.Duration `flag:"shutdown-timeout" usage:"on SIGTERM, how long to wait for connections to close and the store to flush"`

	MaxConns        int     `flag:"max-conns" usage:"most client connections on this node; beyond it upgrades get HTTP 503"`
	FrameWorkers    int     `flag:"frame-workers" usage:"most client requests handled at once (each may wait for a store commit); more queue until one finishes"`
	MaxFrameBytes   int     `flag:"max-frame-bytes" usage:"largest frame a client may send; larger closes the connection (1009)"`
	MaxBodyBytes    int     `flag:"max-body-bytes" usage:"largest message body"`
	SendQueueBytes  int     `flag:"send-queue-bytes" usage:"outbound bytes queued per connection before it is closed as a slow consumer (4100)"`
	MaxRooms        int     `flag:"max-rooms" usage:"most rooms one connection may join"`
	MaxSyncConvs    int     `flag:"max-sync-convs" usage:"most conversations in one sync request"`
	MaxGroupMembers int     `flag:"max-group-members" usage:"most members of a group"`
	MaxPresence     int     `flag:"max-presence" usage:"most conversations one connection may watch for presence"`
	PresenceMembers int     `flag:"presence-members" usage:"presence is offered for conversations with at most this many members"`
	Rate            float64 `flag:"rate" usage:"requests per second allowed per connection (token bucket)"`
	Burst           int     `flag:"burst" usage:"request burst allowed per connection"`

	LogLevel  string `flag:"log-level" usage:"debug, info, warn or error"`
	LogFormat string `flag:"log-format" usage:"text or json"`
}

// Default returns the configuration `floodgate server` runs with when
// nothing is set. The limits are sized for one node of a few CPU cores.
func Default() Config {
	return Config{
		Listen:       ":7070",
		TLSHybridKEX: true,
		OpsListen:    ":7071",
		DataDir:      "./data",
		SQLiteSync:   "full",
		AppendBatch:  512,
		// Enough for a burst of sends from every connection of a busy node
		// while one fsync completes; beyond it senders are told to retry.
		AppendQueue:  16384,
		CommitWindow: time.Millisecond,

		SubscribeRate: 10000,
		CatchUpDelay:  2 * time.Second,
		UserInterest:  "user",

		HeartbeatInterval: time.Second,
		RouteTTL:          30 * time.Second,
		DrainWindow:       30 * time.Second,

		SecretGrace:     24 * time.Hour,
		AuthTimeout:     5 * time.Second,
		PingInterval:    25 * time.Second,
		WriteTimeout:    10 * time.Second,
		ShutdownTimeout: 10 * time.Second,

		MaxConns: 100000,
		// Requests wait for a group commit (a few milliseconds), so
		// throughput is about frame-workers / commit latency.
		FrameWorkers:    2048,
		MaxFrameBytes:   64 << 10,
		MaxBodyBytes:    16 << 10,
		SendQueueBytes:  1 << 20,
		MaxRooms:        100,
		MaxSyncConvs:    1000,
		MaxGroupMembers: 2000,
		MaxPresence:     20,
		PresenceMembers: 200,
		Rate:            50,
		Burst:           100,

		LogLevel:  "info",
		LogFormat: "text",
	}
}
