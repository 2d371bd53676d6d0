// Package bus carries live traffic between gateway nodes: deliveries to a
// user's or a room's connections, presence and control messages, and
// queries answered by every node. It is a fast path that may drop: the
// store is the source of truth, and a drop the bus notices is reported to
// the Handler so the gateway can make clients resync.
//
// The subject scheme is private to this package, so it can change without
// the gateway noticing.
package bus

import (
	"context"
	"errors"
	"time"
)

// Kind is what a Topic addresses.
type Kind byte

// Topic kinds.
const (
	// User addresses every connection of one user of an app.
	User Kind = 'u'
	// Room addresses every connection that joined one room.
	Room Kind = 'r'
	// App addresses every node serving connections of an app (control
	// messages: app disabled, caches to drop).
	App Kind = 'a'
	// Presence carries one user's online/offline changes.
	Presence Kind = 'p'
)

// Topic is one delivery target. For App topics ID is empty.
type Topic struct {
	Kind Kind
	App  string
	ID   string
}

// ErrUnavailable is returned when the bus cannot take a message now (its
// connection is down and its bounded reconnect buffer is full, or it is
// closed). The message is dropped; seq sync recovers it.
var ErrUnavailable = errors.New("bus: unavailable")

// ErrRateLimited is returned by Unsubscribe when the node is over its
// subscription change rate; the subscription stays and the caller retries
// later.
var ErrRateLimited = errors.New("bus: subscription changes over rate")

// Handler receives what the bus delivers. The gateway implements it, so the
// bus never depends on the gateway.
type Handler interface {
	// Deliver is called for each message published to a topic this node
	// subscribes to. Messages of one topic from one publisher arrive in
	// publish order. Deliver runs on one of a few shared dispatch goroutines
	// and must not block. data must not be modified; it may be retained.
	Deliver(t Topic, data []byte)
	// Lost reports that messages may have been dropped: for topic t (every
	// topic of t.Kind in t.App when t.ID is empty), or, when all is true, for
	// every topic (the bus lost its connection and resubscribed).
	Lost(t Topic, all bool)
	// Query answers a Gather sent by any node, this one included. A nil
	// answer sends nothing.
	Query(data []byte) []byte
}

// Bus is a node's connection to the bus. Implementations are safe for
// concurrent use.
type Bus interface {
	// Publish sends data to every node subscribed to t. It does not wait for
	// delivery and never blocks for long: ErrUnavailable when the message
	// cannot be buffered.
	Publish(t Topic, data []byte) error
	// Subscribe makes this node receive t's messages. It returns once the
	// bus server has registered the interest (or ctx ends), so a message
	// published after it returns is delivered. Subscribing to a topic twice
	// is a no-op.
	Subscribe(ctx context.Context, t Topic) error
	// Unsubscribe stops the node receiving t's messages.
	Unsubscribe(t Topic) error
	// Gather sends query to every node (this one included) and returns the
	// answers received before ctx ends or max answers have arrived.
	Gather(ctx context.Context, query []byte, max int) ([][]byte, error)
	// Broadcast publishes data on the cluster-wide channel ch (membership
	// heartbeats, control commands). Best effort, like Publish.
	Broadcast(ch string, data []byte) error
	// Listen calls fn with every message broadcast on ch, from any node,
	// until ctx ends. fn runs on a goroutine owned by the bus, one message
	// at a time, and must not block for long.
	Listen(ctx context.Context, ch string, fn func(data []byte)) error
	// Healthy returns nil when the bus is connected.
	Healthy() error
	// InterestAge is how long ago this node's interest in t was registered
	// with the bus (again, after a reconnection), 0 if the node does not
	// follow t or is disconnected. Interest takes a moment to reach every
	// server of a bus cluster, which meanwhile drop what is published to t
	// elsewhere; an older interest has reached them.
	InterestAge(t Topic) time.Duration
	// Subscriptions is how many topics this node subscribes to.
	Subscriptions() int
	// Close drains nothing: undelivered messages are dropped.
	Close() error
}
