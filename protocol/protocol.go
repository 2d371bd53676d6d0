package protocol

import "encoding/json"

// Version is the protocol version served at /v1/ws.
const Version = 1

// Request is a client-to-server frame.
//
// ID is chosen by the client and echoed in the reply. A request without an id
// (ID == 0) is fire-and-forget: the server sends no reply, not even an error.
type Request struct {
	ID   uint64          `json:"id,omitempty"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Reply answers the request with the same ID. Exactly one of Result and
// Error is set. A reply with ID 0 reports a frame that could not be parsed
// far enough to find its id.
type Reply struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Event is a server-initiated frame. Ev names the event; Data's shape depends
// on it (see the Ev* constants).
type Event struct {
	Ev   string          `json:"ev"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Frame is the union of what a server may send, used by clients to decode
// a frame before knowing whether it is a reply or an event: a reply has Ev
// empty.
type Frame struct {
	ID     uint64          `json:"id,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
	Ev     string          `json:"ev,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Error is the error half of a reply.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfterMS is set on rate_limited and unavailable errors: the
	// earliest time, in milliseconds, at which retrying can succeed.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Ops a client may send.
const (
	OpAuth          = "auth"
	OpPing          = "ping"
	OpConvDirect    = "conv.direct"
	OpConvCreate    = "conv.create"
	OpConvGet       = "conv.get"
	OpConvAdd       = "conv.add_members"
	OpConvRemove    = "conv.remove_members"
	OpConvLeave     = "conv.leave"
	OpConvList      = "conv.list"
	OpRoomJoin      = "room.join"
	OpRoomLeave     = "room.leave"
	OpSend          = "send"
	OpSync          = "sync"
	OpHistory       = "history"
	OpRead          = "read"
	OpTyping        = "typing"
	OpPresenceSub   = "presence.sub"
	OpPresenceUnsub = "presence.unsub"
)

// Events the server may push.
const (
	EvMessage   = "message"   // data: Message
	EvRead      = "read"      // data: ReadEvent
	EvTyping    = "typing"    // data: TypingEvent
	EvPresence  = "presence"  // data: PresenceEvent
	EvMember    = "member"    // data: MemberEvent
	EvResync    = "resync"    // data: ResyncEvent
	EvDirective = "directive" // data: Directive
)

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
	KindRoom   = "room"
)

// AuthArgs are the arguments of "auth", the first request on a connection.
type AuthArgs struct {
	App   string `json:"app"`
	Token string `json:"token"`
	// Client names the SDK and version, for logs only.
	Client string `json:"client,omitempty"`
}

// AuthResult is the result of a successful "auth".
type AuthResult struct {
	User    string `json:"user"`
	Device  string `json:"device,omitempty"`
	Session string `json:"session"`
	Node    string `json:"node"`
	// PingIntervalMS is how often the client must send something (a ping if
	// nothing else); the server closes a connection silent for two intervals.
	PingIntervalMS int64  `json:"ping_interval_ms"`
	Limits         Limits `json:"limits"`
}

// Limits tells a client the per-connection limits it must respect.
type Limits struct {
	MaxFrameBytes int     `json:"max_frame_bytes"`
	MaxBodyBytes  int     `json:"max_body_bytes"`
	MaxRooms      int     `json:"max_rooms"`
	MaxSyncConvs  int     `json:"max_sync_convs"`
	Rate          float64 `json:"rate"`
	Burst         int     `json:"burst"`
}

// PingResult is the result of "ping".
type PingResult struct {
	TS int64 `json:"ts"` // server time, Unix milliseconds
}

// Conversation describes a direct, group or room conversation.
type Conversation struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Name      string `json:"name,omitempty"`
	Creator   string `json:"creator,omitempty"`
	CreatedAt int64  `json:"created_at"` // Unix milliseconds
	LastSeq   uint64 `json:"last_seq"`
}

// Member is one member of a direct or group conversation.
type Member struct {
	User    string `json:"user"`
	ReadSeq uint64 `json:"read_seq"`
}

// Message is a persisted message, as delivered in "message" events, sync
// and history results.
type Message struct {
	Conv string `json:"conv"`
	Seq  uint64 `json:"seq"`
	TS   int64  `json:"ts"` // Unix milliseconds, assigned by the server
	// Sender is the user who sent it, or empty for a system message sent by
	// the app's backend.
	Sender      string          `json:"sender,omitempty"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	Body        json.RawMessage `json:"body"`
}

// ConvArgs names one conversation; it is the argument of conv.get,
// conv.leave, room.join, room.leave, typing, presence.sub and presence.unsub.
type ConvArgs struct {
	Conv string `json:"conv"`
}

// DirectArgs are the arguments of "conv.direct".
type DirectArgs struct {
	User string `json:"user"`
}

// CreateArgs are the arguments of "conv.create".
type CreateArgs struct {
	// ID is optional; the server generates one when it is empty.
	ID      string   `json:"id,omitempty"`
	Kind    string   `json:"kind"` // "group" or "room"
	Name    string   `json:"name,omitempty"`
	Members []string `json:"members,omitempty"` // group only; the creator is always a member
}

// ConvResult carries one conversation (conv.direct, conv.create, room.join).
type ConvResult struct {
	Conversation Conversation `json:"conversation"`
}

// ConvGetResult is the result of "conv.get".
type ConvGetResult struct {
	Conversation Conversation `json:"conversation"`
	Members      []Member     `json:"members,omitempty"`
}

// MembersArgs are the arguments of conv.add_members and conv.remove_members.
type MembersArgs struct {
	Conv  string   `json:"conv"`
	Users []string `json:"users"`
}

// UsersResult lists the users an add or remove actually changed.
type UsersResult struct {
	Users []string `json:"users"`
}

// ListArgs are the arguments of "conv.list".
type ListArgs struct {
	Limit int `json:"limit,omitempty"`
	// Cursor continues a previous listing (its result's Next).
	Cursor string `json:"cursor,omitempty"`
}

// ListResult is the result of "conv.list", most recently active first.
type ListResult struct {
	Conversations []ConvSummary `json:"conversations"`
	Next          string        `json:"next,omitempty"`
}

// ConvSummary is one entry of a conversation listing.
type ConvSummary struct {
	Conversation Conversation `json:"conversation"`
	LastMessage  *Message     `json:"last_message,omitempty"`
	ReadSeq      uint64       `json:"read_seq"`
	Unread       uint64       `json:"unread"`
}

// SendArgs are the arguments of "send".
type SendArgs struct {
	Conv        string          `json:"conv"`
	ClientMsgID string          `json:"client_msg_id"`
	Body        json.RawMessage `json:"body"`
}

// SendResult acknowledges a durable message.
type SendResult struct {
	Conv string `json:"conv"`
	Seq  uint64 `json:"seq"`
	TS   int64  `json:"ts"`
	// Duplicate is true when the message had been sent before with the same
	// client_msg_id; the result is the original's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// SyncArgs are the arguments of "sync".
type SyncArgs struct {
	// Convs maps a conversation id to the last seq the client has of it.
	Convs map[string]uint64 `json:"convs,omitempty"`
	// All adds every direct and group conversation of the user that Convs
	// does not list, from the seq at which the user joined it.
	All bool `json:"all,omitempty"`
	// Limit caps the messages per conversation in this reply.
	Limit int `json:"limit,omitempty"`
}

// SyncResult is the result of "sync". It lists only conversations that have
// messages after the client's seq.
type SyncResult struct {
	Convs []SyncConv `json:"convs"`
	// More is true when conversations with news did not fit in this reply;
	// the client asks again with its updated seqs.
	More bool `json:"more,omitempty"`
}

// SyncConv is the part of a sync result for one conversation.
type SyncConv struct {
	Conv     string    `json:"conv"`
	Kind     string    `json:"kind"`
	LastSeq  uint64    `json:"last_seq"`
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more,omitempty"`
	// Gone is true when the conversation no longer exists for this client
	// (it left or was removed, or a room is not joined on this connection);
	// the client stops following it.
	Gone bool `json:"gone,omitempty"`
}

// History directions.
const (
	Before = "before"
	After  = "after"
)

// HistoryArgs are the arguments of "history".
type HistoryArgs struct {
	Conv string `json:"conv"`
	// Seq is exclusive. With Direction "before" and Seq 0 the page ends at
	// the newest message; with "after" and Seq 0 it starts at the oldest.
	Seq       uint64 `json:"seq,omitempty"`
	Direction string `json:"direction,omitempty"` // "before" (default) or "after"
	Limit     int    `json:"limit,omitempty"`     // 1..100, default 50
}

// HistoryResult is the result of "history": messages in ascending seq order.
type HistoryResult struct {
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more,omitempty"`
}

// ReadArgs are the arguments of "read".
type ReadArgs struct {
	Conv string `json:"conv"`
	Seq  uint64 `json:"seq"`
}

// ReadResult is the result of "read": the cursor after the update, which
// never moves backwards.
type ReadResult struct {
	Seq uint64 `json:"seq"`
}

// PresenceResult is the result of "presence.sub": the members online now.
type PresenceResult struct {
	Online []string `json:"online"`
}

// ReadEvent tells the members of a conversation that User has read up to Seq.
type ReadEvent struct {
	Conv string `json:"conv"`
	User string `json:"user"`
	Seq  uint64 `json:"seq"`
}

// TypingEvent tells the members of a conversation that User is typing.
type TypingEvent struct {
	Conv string `json:"conv"`
	User string `json:"user"`
}

// PresenceEvent tells a presence subscriber that a member went on- or offline.
type PresenceEvent struct {
	Conv   string `json:"conv"`
	User   string `json:"user"`
	Online bool   `json:"online"`
}

// Member event actions.
const (
	MemberAdded   = "added"
	MemberRemoved = "removed"
	MemberLeft    = "left"
)

// MemberEvent tells the members of a group (and the users concerned) that
// membership changed.
type MemberEvent struct {
	Conv   string   `json:"conv"`
	Action string   `json:"action"`
	Users  []string `json:"users"`
	By     string   `json:"by,omitempty"`
}

// ResyncEvent tells the client that the server may have failed to deliver
// some events to it; the client should run a sync of everything it follows
// after DelayMS (which spreads the load when many clients are told at once).
type ResyncEvent struct {
	DelayMS int64 `json:"delay_ms"`
}

// Directive actions.
const (
	// ActionReconnect: reconnect now (after a random delay of at most
	// RetryAfterMS, if set).
	ActionReconnect = "reconnect"
	// ActionBackoff: reconnect after RetryAfterMS, plus jitter.
	ActionBackoff = "backoff"
	// ActionRedirect: reconnect to URL (or ask the router again if URL is
	// empty), after a random delay of at most RetryAfterMS.
	ActionRedirect = "redirect"
	// ActionStop: do not reconnect; the credentials or the app are refused.
	ActionStop = "stop"
)

// Directive tells the client what to do next. The server sends it just
// before closing the connection with Code, so a client that misses the frame
// can still act on the close code's range.
type Directive struct {
	Action       string `json:"action"`
	Code         int    `json:"code"`
	Reason       string `json:"reason,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	URL          string `json:"url,omitempty"`
}

// RouteResult is the router's answer to GET /v1/route?app=APP: the gateway
// a client should connect to, a second choice if the first fails, and how
// long the answer may be cached. Errors are {"error": Error} with HTTP 503
// (and Retry-After) when no gateway can take the client.
type RouteResult struct {
	Primary   string `json:"primary"`
	Secondary string `json:"secondary,omitempty"`
	TTLMS     int64  `json:"ttl_ms"`
}
