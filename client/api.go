package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/floodgate/floodgate/protocol"
)

// Every call below takes a context that bounds it entirely: waiting for a
// free slot (MaxInFlight), for a connection while the client reconnects,
// and for the reply. Unless a method says otherwise, a call waits for a
// connection when there is none, and a refusal for rate (rate_limited) is
// retried after the server's retry_after_ms. Errors from the server are
// *protocol.Error; after Close they are ErrClosed, after a stop the
// *CloseError.

// NewClientMsgID returns a fresh client message id: 128 random bits in hex.
// Applications that keep an outbox generate one per message, store it with
// the message, and send with SendWithID, so that a resend after a crash is
// recognised by the server.
func NewClientMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Send sends body to conv with a fresh client message id; see SendWithID.
// body is any value encoding/json encodes; a json.RawMessage is sent as is.
func (c *Client) Send(ctx context.Context, conv string, body any) (protocol.SendResult, error) {
	return c.SendWithID(ctx, conv, NewClientMsgID(), body)
}

// SendWithID sends body to conv with the given client message id and
// returns once the message is durable. Sending is idempotent per
// (conv, clientMsgID): if the connection breaks before the reply, the SDK
// sends again with the same id on the next connection, and retries
// rate_limited and unavailable after retry_after_ms, until ctx ends; the
// server stores the message once and answers a repeat with the original
// result and Duplicate set. If ctx ends first the message may or may not
// have been stored: calling SendWithID again with the same id settles it.
// The message also arrives as an EventMessage, like everyone else's.
func (c *Client) SendWithID(ctx context.Context, conv, clientMsgID string, body any) (protocol.SendResult, error) {
	var res protocol.SendResult
	if !protocol.ValidID(conv) {
		return res, fmt.Errorf("floodgate: send: invalid conversation id %q", conv)
	}
	if !protocol.ValidID(clientMsgID) {
		return res, fmt.Errorf("floodgate: send: invalid client message id %q", clientMsgID)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return res, fmt.Errorf("floodgate: send: encoding the body: %w", err)
	}
	c.mu.Lock()
	limit := c.limits.MaxBodyBytes
	c.mu.Unlock()
	if limit > 0 && len(raw) > limit {
		// Refused locally: the server would refuse it on every retry.
		return res, &protocol.Error{Code: protocol.CodeBodyTooLarge, Message: fmt.Sprintf("body of %d bytes, over max_body_bytes %d", len(raw), limit)}
	}
	args := protocol.SendArgs{Conv: conv, ClientMsgID: clientMsgID, Body: raw}
	err = c.call(ctx, protocol.OpSend, args, &res, callOpts{idempotent: true})
	return res, err
}

// Direct opens the direct conversation with user, creating it on first
// use. It is idempotent and resent across reconnects.
func (c *Client) Direct(ctx context.Context, user string) (protocol.Conversation, error) {
	var res protocol.ConvResult
	err := c.call(ctx, protocol.OpConvDirect, protocol.DirectArgs{User: user}, &res, callOpts{idempotent: true})
	return res.Conversation, err
}

// CreateGroup creates a group named name with the caller (its owner) and
// members. It is not repeated across reconnects: if the connection breaks
// before the reply, it returns ErrConnectionLost and the group may exist
// (Conversations lists it).
func (c *Client) CreateGroup(ctx context.Context, name string, members []string) (protocol.Conversation, error) {
	var res protocol.ConvResult
	args := protocol.CreateArgs{Kind: protocol.KindGroup, Name: name, Members: members}
	err := c.call(ctx, protocol.OpConvCreate, args, &res, callOpts{})
	return res.Conversation, err
}

// CreateRoom creates a room; id may be empty for a server-generated one.
// Creating does not join it (JoinRoom does). It is not repeated across
// reconnects: a lost reply returns ErrConnectionLost; with an explicit id,
// Conversation(ctx, id) tells whether it exists.
func (c *Client) CreateRoom(ctx context.Context, id, name string) (protocol.Conversation, error) {
	var res protocol.ConvResult
	args := protocol.CreateArgs{ID: id, Kind: protocol.KindRoom, Name: name}
	err := c.call(ctx, protocol.OpConvCreate, args, &res, callOpts{})
	return res.Conversation, err
}

// Conversation returns conv and, for direct and group conversations, its
// members with their read cursors. Read-only: resent across reconnects.
func (c *Client) Conversation(ctx context.Context, conv string) (protocol.ConvGetResult, error) {
	var res protocol.ConvGetResult
	err := c.call(ctx, protocol.OpConvGet, protocol.ConvArgs{Conv: conv}, &res, callOpts{idempotent: true})
	return res, err
}

// AddMembers adds users to the group conv and returns those actually
// added. Not repeated across reconnects (a repeat would report fewer
// users): a lost reply returns ErrConnectionLost.
func (c *Client) AddMembers(ctx context.Context, conv string, users []string) ([]string, error) {
	var res protocol.UsersResult
	err := c.call(ctx, protocol.OpConvAdd, protocol.MembersArgs{Conv: conv, Users: users}, &res, callOpts{})
	return res.Users, err
}

// RemoveMembers removes users from the group conv (creator only, or
// oneself) and returns those actually removed. Not repeated across
// reconnects: a lost reply returns ErrConnectionLost. Removing oneself
// stops following conv.
func (c *Client) RemoveMembers(ctx context.Context, conv string, users []string) ([]string, error) {
	var res protocol.UsersResult
	err := c.call(ctx, protocol.OpConvRemove, protocol.MembersArgs{Conv: conv, Users: users}, &res, callOpts{})
	if err == nil {
		c.mu.Lock()
		if slices.Contains(res.Users, c.user) {
			c.forgetLocked(conv)
		}
		c.mu.Unlock()
	}
	return res.Users, err
}

// Leave leaves the group conv and stops following it. Not repeated across
// reconnects: a lost reply returns ErrConnectionLost (leaving again then
// answers forbidden if the first attempt went through).
func (c *Client) Leave(ctx context.Context, conv string) error {
	err := c.call(ctx, protocol.OpConvLeave, protocol.ConvArgs{Conv: conv}, nil, callOpts{})
	if err == nil {
		c.mu.Lock()
		c.forgetLocked(conv)
		c.mu.Unlock()
	}
	return err
}

// forgetLocked stops following a direct or group conversation; c.mu held.
func (c *Client) forgetLocked(conv string) {
	c.seq.Forget(conv, false)
	delete(c.presence, conv)
}

// Conversations lists the caller's direct and group conversations, most
// recently active first, limit (1..100, 0 for the server's default) at a
// time; pass the previous result's Next as cursor to continue ("" to
// start). Read-only: resent across reconnects.
func (c *Client) Conversations(ctx context.Context, cursor string, limit int) (protocol.ListResult, error) {
	var res protocol.ListResult
	err := c.call(ctx, protocol.OpConvList, protocol.ListArgs{Cursor: cursor, Limit: limit}, &res, callOpts{idempotent: true})
	return res, err
}

// JoinRoom joins the room conv and returns it. From then on the client
// receives the room's messages from the conversation's LastSeq on (or, for
// a room it already follows, from where it left off), and joins it again
// on every new connection until LeaveRoom. Idempotent: resent across
// reconnects. If ctx ends before the reply, the join may still take effect;
// LeaveRoom undoes it either way.
func (c *Client) JoinRoom(ctx context.Context, conv string) (protocol.Conversation, error) {
	if !protocol.ValidID(conv) {
		return protocol.Conversation{}, fmt.Errorf("floodgate: join: invalid room id %q", conv)
	}
	var res protocol.ConvResult
	err := c.call(ctx, protocol.OpRoomJoin, protocol.ConvArgs{Conv: conv}, &res,
		callOpts{idempotent: true, before: c.joining(conv), apply: c.joined(conv)})
	return res.Conversation, err
}

// joining is the before hook of room.join: from now on, live messages of
// the room wait for the join's reply to say where the room starts.
func (c *Client) joining(conv string) func() {
	return func() { c.seq.Joining(conv) }
}

// joined is the apply hook of room.join: it starts (or resumes) the room
// in order with the room's live messages, and records it for re-joins.
func (c *Client) joined(conv string) applyFunc {
	return func(result json.RawMessage, perr *protocol.Error) {
		var res protocol.ConvResult
		if perr == nil && decodeResult(result, &res) != nil {
			perr = &protocol.Error{Code: protocol.CodeInternal, Message: "undecodable room.join result"}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if perr != nil {
			c.seq.JoinFailed(conv)
			return
		}
		c.rooms[conv] = struct{}{}
		c.emitMessages(c.seq.Joined(conv, res.Conversation.LastSeq))
		c.kickSync()
	}
}

// LeaveRoom leaves the room conv: it is no longer joined on new
// connections, and its messages stop at once (late ones are dropped). It
// never waits for a connection: when disconnected, not joining again is
// leaving.
func (c *Client) LeaveRoom(ctx context.Context, conv string) error {
	c.mu.Lock()
	delete(c.rooms, conv)
	c.seq.Forget(conv, true)
	c.mu.Unlock()
	return c.bestEffort(ctx, protocol.OpRoomLeave, protocol.ConvArgs{Conv: conv})
}

// History returns up to limit (1..100, 0 for the server's default) messages
// of conv before or after seq (exclusive; direction protocol.Before or
// protocol.After; seq 0 means the newest or the oldest), in ascending seq
// order. It does not touch the event stream or cursors. Read-only: resent
// across reconnects.
func (c *Client) History(ctx context.Context, conv string, seq uint64, direction string, limit int) (protocol.HistoryResult, error) {
	var res protocol.HistoryResult
	args := protocol.HistoryArgs{Conv: conv, Seq: seq, Direction: direction, Limit: limit}
	err := c.call(ctx, protocol.OpHistory, args, &res, callOpts{idempotent: true})
	return res, err
}

// MarkRead moves the caller's read cursor of conv to seq and returns the
// cursor after the update (it never moves backwards). Idempotent: resent
// across reconnects.
func (c *Client) MarkRead(ctx context.Context, conv string, seq uint64) (uint64, error) {
	var res protocol.ReadResult
	err := c.call(ctx, protocol.OpRead, protocol.ReadArgs{Conv: conv, Seq: seq}, &res, callOpts{idempotent: true})
	return res.Seq, err
}

// Typing tells the other members of conv that the user is typing. It is
// fire-and-forget: no reply, nothing resent, and silently dropped (nil
// error) while the client is between connections.
func (c *Client) Typing(ctx context.Context, conv string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !protocol.ValidID(conv) {
		return fmt.Errorf("floodgate: typing: invalid conversation id %q", conv)
	}
	c.mu.Lock()
	err, cn := c.termErr, c.cur
	c.mu.Unlock()
	if err != nil || cn == nil {
		return err
	}
	frame, err := json.Marshal(protocol.Request{Op: protocol.OpTyping, Args: mustArgs(protocol.ConvArgs{Conv: conv})})
	if err != nil {
		return err
	}
	_ = cn.write(frame) // best effort; a failed write breaks the connection
	return nil
}

// SubscribePresence subscribes to the presence of conv's members and
// returns those online now; EventPresence then reports changes. The
// subscription is renewed on every new connection, each time followed by an
// EventOnline with the fresh list. Idempotent: resent across reconnects.
func (c *Client) SubscribePresence(ctx context.Context, conv string) ([]string, error) {
	var res protocol.PresenceResult
	apply := func(_ json.RawMessage, perr *protocol.Error) {
		if perr == nil {
			c.mu.Lock()
			// Runs on the reader of the connection that answered: c.cur
			// is that connection, or nil if it is already gone.
			c.presence[conv] = c.cur
			c.mu.Unlock()
		}
	}
	err := c.call(ctx, protocol.OpPresenceSub, protocol.ConvArgs{Conv: conv}, &res, callOpts{idempotent: true, apply: apply})
	return res.Online, err
}

// UnsubscribePresence ends the presence subscription of conv. Like
// LeaveRoom it never waits for a connection.
func (c *Client) UnsubscribePresence(ctx context.Context, conv string) error {
	c.mu.Lock()
	delete(c.presence, conv)
	c.mu.Unlock()
	return c.bestEffort(ctx, protocol.OpPresenceUnsub, protocol.ConvArgs{Conv: conv})
}

// bestEffort sends a request that only matters on the current connection
// (new connections simply do not renew the state it undoes).
func (c *Client) bestEffort(ctx context.Context, op string, args any) error {
	c.mu.Lock()
	err, cn := c.termErr, c.cur
	c.mu.Unlock()
	if err != nil || cn == nil {
		return err
	}
	r, err := c.await(ctx, c.post(cn, op, mustArgs(args), nil, nil))
	switch {
	case err != nil:
		return err
	case r.lost:
		return nil
	case r.err != nil:
		return r.err
	}
	return nil
}

// Call sends an op the SDK does not wrap and decodes its result into result
// (nil to discard it); args is encoded to JSON (nil for none). The SDK does
// not know whether op is safe to repeat, so Call treats it as not: it waits
// for a connection and retries rate_limited, but a lost reply returns
// ErrConnectionLost. Ops whose state the SDK keeps (auth, sync, room.join,
// room.leave, presence.sub, presence.unsub) are refused: use the methods.
func (c *Client) Call(ctx context.Context, op string, args, result any) error {
	switch op {
	case protocol.OpAuth, protocol.OpSync, protocol.OpRoomJoin, protocol.OpRoomLeave, protocol.OpPresenceSub, protocol.OpPresenceUnsub:
		return errors.New("floodgate: Call(" + op + "): the SDK keeps this op's state; use the Client method")
	}
	if op == "" {
		return errors.New("floodgate: Call: empty op")
	}
	return c.call(ctx, op, args, result, callOpts{})
}
