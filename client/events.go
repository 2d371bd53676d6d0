package client

import (
	"sync"

	"github.com/floodgate/floodgate/protocol"
)

// EventType says which field of an Event is set.
type EventType int

// Event types.
const (
	// EventMessage: Message is a message of a conversation the client
	// follows. Messages of one conversation arrive exactly once and in seq
	// order, across reconnects.
	EventMessage EventType = iota + 1
	// EventRead: Read says a member moved their read cursor.
	EventRead
	// EventTyping: Typing says a member is typing (show it for a few
	// seconds). Best effort: dropped when the application is behind.
	EventTyping
	// EventPresence: Presence says a member of a subscribed conversation
	// came online or went offline. Best effort, like EventTyping.
	EventPresence
	// EventOnline: Online lists the members online in a subscribed
	// conversation, after the SDK subscribed again on a new connection;
	// it replaces what the application knew, since presence events may
	// have been missed while disconnected.
	EventOnline
	// EventMember: Member says a group's membership changed. When the
	// client's own user was removed or left, the SDK stops following the
	// conversation.
	EventMember
	// EventGone: Gone names a conversation the SDK stopped following because
	// the server says the user can no longer read it (removed from a group,
	// a room that could not be joined again after a reconnect).
	EventGone
	// EventConnected: State.Auth describes the new authenticated
	// connection. Sent after every (re)connect.
	EventConnected
	// EventDisconnected: State says why an authenticated connection ended;
	// the SDK reconnects on its own.
	EventDisconnected
	// EventStopped: State.Err (a *CloseError) says why the server refused to
	// go on. It is the last event: the channel is closed after it.
	EventStopped
)

// String returns the type's name, for logs.
func (t EventType) String() string {
	switch t {
	case EventMessage:
		return "message"
	case EventRead:
		return "read"
	case EventTyping:
		return "typing"
	case EventPresence:
		return "presence"
	case EventOnline:
		return "online"
	case EventMember:
		return "member"
	case EventGone:
		return "gone"
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventStopped:
		return "stopped"
	}
	return "unknown"
}

// Event is one thing that happened, in the order it happened. Exactly the
// pointer field matching Type is set; it is the application's to keep.
type Event struct {
	Type     EventType
	Message  *protocol.Message
	Read     *protocol.ReadEvent
	Typing   *protocol.TypingEvent
	Presence *protocol.PresenceEvent
	Online   *Online
	Member   *protocol.MemberEvent
	Gone     *Gone
	State    *State
}

// Online lists the members of Conv online now.
type Online struct {
	Conv  string
	Users []string
}

// Gone names a conversation the SDK no longer follows, and why.
type Gone struct {
	Conv string
	// Err is the server's refusal when a room could not be joined again;
	// nil when a sync said the conversation is gone.
	Err error
}

// State describes a change of the connection's state.
type State struct {
	// Auth is the auth result of the new connection (EventConnected).
	Auth *protocol.AuthResult
	// Code is the close code received, 0 when the connection just broke.
	Code int
	// Directive is the server's directive before the close, if any.
	Directive *protocol.Directive
	// Err is why the connection ended (EventDisconnected) or why the SDK
	// stopped (EventStopped, a *CloseError).
	Err error
}

// eventQueue holds the events the application has not received yet, in
// order. The reader goroutine pushes (never blocking: it is the reader that
// decides to stop reading when the queue is long); the pump goroutine pops
// and hands events to the application's channel.
type eventQueue struct {
	mu    sync.Mutex
	items []Event
	head  int
	// wake tells the pump an event arrived.
	wake chan struct{}
	// space is closed (and replaced) when an event leaves the queue and
	// someone waits for room, so waiters can select on it with their own
	// cancellation.
	space   chan struct{}
	waiting bool
	// final: no more events will come; the pump closes the channel once
	// the queue is empty.
	final bool
	// inHand is the event the pump has popped and not yet handed over.
	inHand  Event
	handing bool
}

func newEventQueue() *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1), space: make(chan struct{})}
}

func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	if !q.final {
		q.items = append(q.items, ev)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// finish marks the end of the stream.
func (q *eventQueue) finish() {
	q.mu.Lock()
	q.final = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// pop returns the oldest event; ok is false when the queue is empty, and
// done is true when it is empty and final.
func (q *eventQueue) pop() (ev Event, ok, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return Event{}, false, q.final
	}
	ev = q.items[q.head]
	q.items[q.head] = Event{}
	q.head++
	q.inHand, q.handing = ev, true
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		// Compact, so a queue that never quite empties does not grow.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	if q.waiting {
		close(q.space)
		q.space, q.waiting = make(chan struct{}), false
	}
	return ev, true, false
}

// handed records that the event in hand reached the application (or was
// dropped by Close).
func (q *eventQueue) handed() {
	q.mu.Lock()
	q.inHand, q.handing = Event{}, false
	q.mu.Unlock()
}

// undelivered calls f for every message the application has not received
// yet, oldest first.
func (q *eventQueue) undelivered(f func(m *protocol.Message)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.handing && q.inHand.Message != nil {
		f(q.inHand.Message)
	}
	for _, ev := range q.items[q.head:] {
		if ev.Message != nil {
			f(ev.Message)
		}
	}
}

// below reports whether fewer than n events are queued; when not, it
// returns a channel closed as soon as one leaves.
func (q *eventQueue) below(n int) (bool, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items)-q.head < n {
		return true, nil
	}
	q.waiting = true
	return false, q.space
}

// waitBelow blocks until fewer than n events are queued; it returns false
// if a or b is closed first.
func (q *eventQueue) waitBelow(n int, a, b <-chan struct{}) bool {
	for {
		ok, space := q.below(n)
		if ok {
			return true
		}
		select {
		case <-space:
		case <-a:
			return false
		case <-b:
			return false
		}
	}
}

// pump hands queued events to the application until the stream ends (after
// a stop: the channel is closed once the last event was received) or Close.
func (c *Client) pump() {
	defer close(c.pumpDone)
	defer close(c.events)
	for {
		ev, ok, done := c.q.pop()
		if done {
			return
		}
		if !ok {
			select {
			case <-c.q.wake:
				continue
			case <-c.quit:
				return
			}
		}
		select {
		case c.events <- ev:
			c.q.handed()
		case <-c.quit:
			return
		}
	}
}
