// Package store defines Floodgate's durable state — apps, conversations,
// members and messages — behind the Store interface, which the SQLite
// (embedded) and PostgreSQL (cluster) engines implement. The store is the
// source of truth: the bus may drop, the store may not.
//
// Every method is scoped by app id: an implementation never returns, counts
// or changes a row of one app in a call made for another.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every implementation; test with errors.Is.
var (
	// ErrNotFound: the app, conversation, member or user does not exist
	// (in this app).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: an object with that id already exists.
	ErrConflict = errors.New("store: already exists")
	// ErrBusy: the store's bounded write queue is full; nothing was written
	// and the caller may retry later.
	ErrBusy = errors.New("store: write queue full")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: the call cannot apply to its arguments (a direct
	// conversation of one user, members added to a room, an unknown kind).
	// It is a caller's mistake, not a store failure.
	ErrInvalid = errors.New("store: invalid request")
)

// Conversation kinds, as stored.
const (
	KindDirect = "direct"
	KindGroup  = "group"
	KindRoom   = "room"
)

// App is a tenant. Its secret signs the app's user tokens and authenticates
// its backend on the server API.
type App struct {
	ID        string
	Name      string
	Secret    string
	Disabled  bool
	CreatedAt time.Time
	// PrevSecret stays valid for verifying tokens until PrevSecretUntil, so
	// rotating the secret does not log every user out at once.
	PrevSecret      string
	PrevSecretUntil time.Time
}

// Conversation is a direct (two members, one per user pair), group
// (persisted membership) or room (no membership) conversation.
type Conversation struct {
	App       string
	ID        string
	Kind      string
	Name      string
	Creator   string
	CreatedAt time.Time
	// LastSeq is the seq of the newest message, 0 when there is none.
	LastSeq uint64
	// LastAt is when the newest message was written (CreatedAt if none);
	// conversation listings are ordered by it.
	LastAt time.Time
}

// Member is a user's membership of a direct or group conversation.
type Member struct {
	User string
	// JoinedSeq is the conversation's LastSeq when the user joined.
	JoinedSeq uint64
	// ReadSeq is the user's read cursor; it never moves backwards.
	ReadSeq uint64
}

// Message is a persisted message. Seq numbers of a conversation are 1, 2, 3…
// with no gaps and no reuse.
type Message struct {
	App         string
	Conv        string
	Seq         uint64
	At          time.Time // assigned by the store, millisecond precision
	Sender      string    // empty for a system message
	ClientMsgID string    // empty when the sender supplied none
	Body        []byte    // JSON
}

// NewMessage is a message to append.
type NewMessage struct {
	App  string
	Conv string
	// Sender is empty for a system message.
	Sender string
	// ClientMsgID makes the append idempotent: a second append with the same
	// (App, Conv, Sender, ClientMsgID) returns the first message and writes
	// nothing. Empty means no deduplication.
	ClientMsgID string
	Body        []byte
}

// Appended is the result of an append.
type Appended struct {
	Message
	// Duplicate is true when the message existed already (same client id).
	Duplicate bool
}

// Summary is one entry of a user's conversation listing.
type Summary struct {
	Conversation Conversation
	LastMessage  *Message // nil when the conversation has no message yet
	ReadSeq      uint64
}

// ListCursor continues a listing after its last entry; the zero value starts
// at the most recently active conversation.
type ListCursor struct {
	LastAt time.Time
	ID     string
}

// ConvState is the sequence state of one conversation, as seen by one user
// where a user is involved.
type ConvState struct {
	ID        string
	Kind      string
	LastSeq   uint64
	JoinedSeq uint64 // 0 for rooms and for conversations read without a user
	ReadSeq   uint64
	// Member is true when the user asked about is a member (never for rooms,
	// which have no membership).
	Member bool
}

// Store is the durable state of Floodgate. Implementations are safe for
// concurrent use. Every method honours ctx's deadline; none blocks without
// one; a call whose ctx has already ended changes nothing.
//
// Conventions every engine follows (the storetest suite checks them):
//   - limit <= 0 returns nothing;
//   - a method naming a conversation that does not exist returns
//     ErrNotFound, and so does creating anything in an app that does not;
//   - a zero CreatedAt means now;
//   - a new member's ReadSeq is its JoinedSeq, so history from before it
//     joined does not count as unread;
//   - RevokeSessions only moves forward;
//   - EnsureDirect returns ErrConflict if the id belongs to a conversation
//     of another kind or pair;
//   - ConvStates is ordered by id;
//   - AppendMessage checks no membership and creates no member;
//   - a second Close returns nil.
//
// ListConversations pages by LastAt, so a conversation that receives a
// message while a client pages moves to the first page and is not seen on
// later ones; clients learn of it from the message event.
type Store interface {
	// CreateApp stores a new app; ErrConflict if the id is taken.
	CreateApp(ctx context.Context, a App) error
	// App returns one app; ErrNotFound if there is none.
	App(ctx context.Context, id string) (App, error)
	// Apps returns every app, ordered by id.
	Apps(ctx context.Context) ([]App, error)
	// RotateAppSecret replaces the secret; the old one stays valid for
	// tokens until prevUntil. Returns the updated app.
	RotateAppSecret(ctx context.Context, id, secret string, prevUntil time.Time) (App, error)
	// SetAppDisabled disables or re-enables an app.
	SetAppDisabled(ctx context.Context, id string, disabled bool) error

	// CreateConversation stores a group or room conversation with its
	// initial members (ignored for rooms), each joining at seq 0;
	// ErrConflict if the id is taken in this app.
	CreateConversation(ctx context.Context, c Conversation, members []string) (Conversation, error)
	// EnsureDirect returns the direct conversation id between users a and b,
	// creating it (with both as members) if it does not exist. It is
	// idempotent and safe to race.
	EnsureDirect(ctx context.Context, app, id, a, b string) (Conversation, error)
	// Conversation returns one conversation; ErrNotFound if there is none.
	Conversation(ctx context.Context, app, id string) (Conversation, error)
	// Member returns user's membership of conv; ErrNotFound if the user is
	// not a member (or the conversation does not exist).
	Member(ctx context.Context, app, conv, user string) (Member, error)
	// Members returns up to limit members of conv, ordered by user id.
	Members(ctx context.Context, app, conv string, limit int) ([]Member, error)
	// ConversationMembers returns one conversation and the ids of up to
	// limit of its members, ordered (none for a room): what a send needs
	// to check access and fan out, in one read where the engine can.
	// ErrNotFound if there is no such conversation.
	ConversationMembers(ctx context.Context, app, id string, limit int) (Conversation, []string, error)
	// MemberCount returns how many members conv has.
	MemberCount(ctx context.Context, app, conv string) (int, error)
	// AddMembers adds users to a group, each joining at the current LastSeq;
	// users already members are skipped. Returns the users actually added.
	AddMembers(ctx context.Context, app, conv string, users []string) ([]string, error)
	// RemoveMembers removes users from a group. Returns the users actually
	// removed.
	RemoveMembers(ctx context.Context, app, conv string, users []string) ([]string, error)
	// ListConversations returns up to limit of user's direct and group
	// conversations, most recently active first, starting after cursor.
	ListConversations(ctx context.Context, app, user string, cursor ListCursor, limit int) ([]Summary, error)
	// UserConversations returns the sequence state of up to limit of user's
	// direct and group conversations, ordered by id.
	UserConversations(ctx context.Context, app, user string, limit int) ([]ConvState, error)
	// ConvStates returns the sequence state of the listed conversations that
	// exist; JoinedSeq and ReadSeq are user's where user is a member.
	ConvStates(ctx context.Context, app, user string, ids []string) ([]ConvState, error)

	// AppendMessage persists one message and assigns it the conversation's
	// next seq. When it returns without error the message is durable (it
	// survives a crash of the process). Implementations batch concurrent
	// appends into one transaction (group commit); ErrBusy when the batch
	// queue is full, ErrNotFound if the conversation does not exist. A
	// non-system sender's read cursor moves to the new seq.
	AppendMessage(ctx context.Context, m NewMessage) (Appended, error)
	// MessagesAfter returns up to limit messages of conv with seq > after,
	// in ascending seq order.
	MessagesAfter(ctx context.Context, app, conv string, after uint64, limit int) ([]Message, error)
	// MessagesBefore returns up to limit messages of conv with seq < before
	// (before == 0: the newest), in ascending seq order.
	MessagesBefore(ctx context.Context, app, conv string, before uint64, limit int) ([]Message, error)
	// SetReadSeq moves user's read cursor in conv to seq, never backwards and
	// never past LastSeq, and returns the cursor after the update.
	// ErrNotFound if the user is not a member.
	SetReadSeq(ctx context.Context, app, conv, user string, seq uint64) (uint64, error)

	// RevokeSessions records that tokens of user issued before t are no
	// longer accepted.
	RevokeSessions(ctx context.Context, app, user string, t time.Time) error
	// RevokedBefore returns the time recorded by RevokeSessions, or the zero
	// time if the user's sessions were never revoked.
	RevokedBefore(ctx context.Context, app, user string) (time.Time, error)
	// LatestRevocation returns the latest time recorded by RevokeSessions for
	// any user of app, or the zero time if none. A token issued after it
	// needs no per-user lookup, which keeps the connect path off the store
	// in the common case.
	LatestRevocation(ctx context.Context, app string) (time.Time, error)

	// Ping reports whether the store can serve reads and writes.
	Ping(ctx context.Context) error
	// Close flushes pending appends and releases the store. Appends that were
	// acknowledged are durable; appends still queued are written or fail.
	Close() error
}

// PoolStats describes one connection pool of a store at one instant, for
// metrics: a pool whose callers wait is where a slow store call's time goes
// when the database itself is idle.
type PoolStats struct {
	// Name says what the pool serves, e.g. "main", "auth", "reader".
	Name string
	// MaxConns is the pool's size; InUse and Idle its connections now.
	MaxConns, InUse, Idle int
	// Waits counts the calls that found no idle connection and waited for
	// one; WaitTime is the total time they waited.
	Waits    int64
	WaitTime time.Duration
}

// Pooled is implemented by the stores that can report their connection
// pools.
type Pooled interface {
	PoolStats() []PoolStats
}

// ConversationMembersOf implements ConversationMembers with two reads, for
// an engine in the same process, where a second read costs no round trip.
func ConversationMembersOf(ctx context.Context, s Store, app, id string, limit int) (Conversation, []string, error) {
	c, err := s.Conversation(ctx, app, id)
	if err != nil || c.Kind == KindRoom {
		return c, nil, err
	}
	ms, err := s.Members(ctx, app, id, limit)
	if err != nil {
		return Conversation{}, nil, err
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.User
	}
	return c, ids, nil
}
