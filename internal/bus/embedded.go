package bus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Embedded is a NATS server running inside this process, for single-node
// deployments: the gateway talks to it without a socket, and it can also
// listen on TCP so other processes join the bus.
type Embedded struct {
	*server.Server
}

// StartEmbedded starts an in-process NATS server. listen is "host:port" to
// also accept TCP clients, or empty for in-process connections only.
func StartEmbedded(listen string) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "floodgate-embedded",
		DontListen: listen == "",
		NoSigs:     true,
		NoLog:      true,
		// Deliveries are single chat messages; a bound keeps one bad
		// publisher from pushing huge frames through every node.
		MaxPayload: 1 << 20,
	}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("bus: nats-listen: %w", err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("bus: nats-listen port: %w", err)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("bus: embedded nats did not start")
	}
	return &Embedded{s}, nil
}

// Close stops the server and waits for it to finish.
func (e *Embedded) Close() {
	e.Shutdown()
	e.WaitForShutdown()
}
