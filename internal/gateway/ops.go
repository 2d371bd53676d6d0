package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/protocol"
)

// Caller is who asks for an operation: a user on a client connection, or an
// app's backend through the server API.
type Caller struct {
	App string
	// User is the acting user; empty when the backend acts as the system.
	User string
	// Backend is true for the app's backend, which is not bound by
	// membership.
	Backend bool
	sess    *Session
}

// maxNameBytes bounds conversation names.
const maxNameBytes = 256

func badRequest(msg string) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeBadRequest, Message: msg}
}

func forbidden(msg string) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeForbidden, Message: msg}
}

// storeError turns a store failure into the error a client sees. Load and
// outages become "unavailable" with a retry hint; anything unexpected is
// logged here, once, with the operation.
func (g *Gateway) storeError(op string, err error) *protocol.Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &protocol.Error{Code: protocol.CodeNotFound, Message: "not found"}
	case errors.Is(err, store.ErrConflict):
		return &protocol.Error{Code: protocol.CodeConflict, Message: "already exists"}
	case errors.Is(err, store.ErrInvalid):
		return badRequest(err.Error())
	case errors.Is(err, store.ErrBusy):
		g.m.LimitHits.WithLabelValues("append_queue").Inc()
		return &protocol.Error{Code: protocol.CodeUnavailable, Message: "store busy", RetryAfterMS: 200}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, store.ErrClosed):
		return &protocol.Error{Code: protocol.CodeUnavailable, Message: "store unavailable", RetryAfterMS: 1000}
	}
	g.m.StoreErrors.WithLabelValues(op).Inc()
	g.log.Error("store", "op", op, "err", err)
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "store unavailable", RetryAfterMS: 1000}
}

// conv returns a conversation's cached kind and members.
func (g *Gateway) conv(ctx context.Context, app, id string) (*convInfo, *protocol.Error) {
	if !protocol.ValidID(id) {
		return nil, badRequest("invalid conv")
	}
	ci, err := g.convs.get(ctx, app, id)
	if err != nil {
		return nil, g.storeError("conv", err)
	}
	return ci, nil
}

// access returns the conversation if c may read and write it: members of
// direct and group conversations, connections that joined a room, and the
// app's backend.
func (g *Gateway) access(ctx context.Context, c Caller, id string) (*convInfo, *protocol.Error) {
	ci, perr := g.conv(ctx, c.App, id)
	if perr != nil {
		return nil, perr
	}
	switch {
	case c.Backend:
		return ci, nil
	case ci.conv.Kind == store.KindRoom:
		if c.sess != nil && c.sess.inRoom(id) {
			return ci, nil
		}
		return nil, forbidden("join the room first")
	case ci.isMember(c.User):
		return ci, nil
	}
	// The cached member list may predate the user joining.
	g.convs.drop(c.App, id)
	if ci, perr = g.conv(ctx, c.App, id); perr != nil {
		return nil, perr
	}
	if ci.isMember(c.User) {
		return ci, nil
	}
	return nil, forbidden("not a member of " + id)
}

// Send persists a message and fans it out. The result is returned only once
// the message is durable.
func (g *Gateway) Send(ctx context.Context, c Caller, a protocol.SendArgs) (protocol.SendResult, *protocol.Error) {
	var zero protocol.SendResult
	switch {
	case a.ClientMsgID == "" && !c.Backend:
		return zero, badRequest("client_msg_id is required")
	case a.ClientMsgID != "" && !protocol.ValidID(a.ClientMsgID):
		return zero, badRequest("invalid client_msg_id")
	case len(a.Body) == 0 || string(a.Body) == "null":
		return zero, badRequest("body is required")
	case len(a.Body) > g.o.Limits.MaxBodyBytes:
		g.m.LimitHits.WithLabelValues("body").Inc()
		return zero, &protocol.Error{Code: protocol.CodeBodyTooLarge, Message: "body larger than max_body_bytes"}
	}
	ci, perr := g.access(ctx, c, a.Conv)
	if perr != nil {
		return zero, perr
	}
	if c.Backend && c.User != "" && ci.conv.Kind != store.KindRoom && !ci.isMember(c.User) {
		return zero, forbidden(c.User + " is not a member of " + a.Conv)
	}
	ap, err := g.st.AppendMessage(ctx, store.NewMessage{App: c.App, Conv: a.Conv, Sender: c.User,
		ClientMsgID: a.ClientMsgID, Body: a.Body})
	if err != nil {
		return zero, g.storeError("send", err)
	}
	if ap.Duplicate {
		g.m.Duplicates.Inc()
	} else {
		g.m.MessagesPersisted.Inc()
	}
	// A duplicate is published again: the first attempt may have been
	// committed by a node that died before publishing it.
	frame, err := protocol.EncodeEvent(protocol.EvMessage, wireMsg(ap.Message))
	if err == nil {
		g.fanout(ci, frameMsg(0, frame), "")
	}
	return protocol.SendResult{Conv: a.Conv, Seq: ap.Seq, TS: ap.At.UnixMilli(), Duplicate: ap.Duplicate}, nil
}

// fanout publishes payload to every member of ci except the user except, or
// to the room's topic.
func (g *Gateway) fanout(ci *convInfo, payload []byte, except string) {
	if ci.conv.Kind == store.KindRoom {
		g.publish(bus.Topic{Kind: bus.Room, App: ci.conv.App, ID: ci.conv.ID}, payload)
		return
	}
	for _, u := range ci.members {
		if u != except {
			g.publish(bus.Topic{Kind: bus.User, App: ci.conv.App, ID: u}, payload)
		}
	}
}

// publishTo publishes payload to each user's topic.
func (g *Gateway) publishTo(app string, users []string, payload []byte) {
	for _, u := range users {
		g.publish(bus.Topic{Kind: bus.User, App: app, ID: u}, payload)
	}
}

func (g *Gateway) publish(t bus.Topic, payload []byte) {
	if err := g.bus.Publish(t, payload); err != nil {
		// Dropped from the fast path; the clients' seq sync recovers it.
		g.m.BusPublishErrors.Inc()
	}
}

// directID is the id of the direct conversation between a and b: the same
// for both orders, and not guessable into another pair's.
func directID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return "d:" + hex.EncodeToString(h[:16])
}

// Direct opens the direct conversation between users a and b. A client may
// only open its own (a is the caller).
func (g *Gateway) Direct(ctx context.Context, c Caller, a, b string) (protocol.ConvResult, *protocol.Error) {
	var zero protocol.ConvResult
	if !protocol.ValidID(a) || !protocol.ValidID(b) {
		return zero, badRequest("invalid user")
	}
	if a == b {
		return zero, badRequest("a direct conversation needs two different users")
	}
	if !c.Backend && a != c.User {
		return zero, forbidden("not your conversation")
	}
	conv, err := g.st.EnsureDirect(ctx, c.App, directID(a, b), a, b)
	if err != nil {
		return zero, g.storeError("conv.direct", err)
	}
	return protocol.ConvResult{Conversation: wireConv(conv)}, nil
}

// CreateConversation creates a group or a room.
func (g *Gateway) CreateConversation(ctx context.Context, c Caller, a protocol.CreateArgs) (protocol.ConvResult, *protocol.Error) {
	var zero protocol.ConvResult
	if a.Kind != protocol.KindGroup && a.Kind != protocol.KindRoom {
		return zero, badRequest(`kind must be "group" or "room"`)
	}
	if len(a.Name) > maxNameBytes {
		return zero, badRequest("name too long")
	}
	id := a.ID
	if id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = a.Kind[:1] + ":" + hex.EncodeToString(b[:])
	} else if !protocol.ValidID(id) || strings.HasPrefix(id, "d:") {
		return zero, badRequest("invalid id (ids starting with d: are reserved)")
	}
	var members []string
	if a.Kind == protocol.KindGroup {
		members = append(members, a.Members...)
		if c.User != "" {
			members = append(members, c.User)
		}
		slices.Sort(members)
		members = slices.Compact(members)
		for _, u := range members {
			if !protocol.ValidID(u) {
				return zero, badRequest("invalid member " + truncate(u, 64))
			}
		}
		if len(members) > g.o.Limits.MaxGroupMembers {
			g.m.LimitHits.WithLabelValues("group_members").Inc()
			return zero, &protocol.Error{Code: protocol.CodeLimit, Message: "too many members"}
		}
	}
	conv, err := g.st.CreateConversation(ctx, store.Conversation{App: c.App, ID: id, Kind: a.Kind, Name: a.Name,
		Creator: c.User, CreatedAt: g.now()}, members)
	if err != nil {
		return zero, g.storeError("conv.create", err)
	}
	if len(members) > 0 {
		g.memberEvent(c.App, id, protocol.MemberAdded, members, c.User, members)
	}
	return protocol.ConvResult{Conversation: wireConv(conv)}, nil
}

// GetConversation returns a conversation and its members. Rooms are
// visible to every user of the app.
func (g *Gateway) GetConversation(ctx context.Context, c Caller, id string) (protocol.ConvGetResult, *protocol.Error) {
	var zero protocol.ConvGetResult
	ci, perr := g.conv(ctx, c.App, id)
	if perr != nil {
		return zero, perr
	}
	if ci.conv.Kind != store.KindRoom {
		if ci, perr = g.access(ctx, c, id); perr != nil {
			return zero, perr
		}
	}
	conv, err := g.st.Conversation(ctx, c.App, id)
	if err != nil {
		return zero, g.storeError("conv.get", err)
	}
	res := protocol.ConvGetResult{Conversation: wireConv(conv)}
	if ci.conv.Kind != store.KindRoom {
		ms, err := g.st.Members(ctx, c.App, id, g.o.Limits.MaxGroupMembers)
		if err != nil {
			return zero, g.storeError("conv.get", err)
		}
		for _, m := range ms {
			res.Members = append(res.Members, protocol.Member{User: m.User, ReadSeq: m.ReadSeq})
		}
	}
	return res, nil
}

func (g *Gateway) validUsers(users []string) *protocol.Error {
	if len(users) == 0 {
		return badRequest("users is required")
	}
	if len(users) > g.o.Limits.MaxGroupMembers {
		return &protocol.Error{Code: protocol.CodeLimit, Message: "too many users"}
	}
	for _, u := range users {
		if !protocol.ValidID(u) {
			return badRequest("invalid user " + truncate(u, 64))
		}
	}
	return nil
}

// groupAccess checks what adding and removing members share: valid users,
// access to the conversation, and that it is a group.
func (g *Gateway) groupAccess(ctx context.Context, c Caller, id string, users []string) (*convInfo, *protocol.Error) {
	if perr := g.validUsers(users); perr != nil {
		return nil, perr
	}
	ci, perr := g.access(ctx, c, id)
	if perr != nil {
		return nil, perr
	}
	if ci.conv.Kind != store.KindGroup {
		return nil, badRequest("membership changes only apply to groups")
	}
	return ci, nil
}

// AddMembers adds users to a group; any member may add.
func (g *Gateway) AddMembers(ctx context.Context, c Caller, id string, users []string) (protocol.UsersResult, *protocol.Error) {
	var zero protocol.UsersResult
	ci, perr := g.groupAccess(ctx, c, id, users)
	if perr != nil {
		return zero, perr
	}
	n, err := g.st.MemberCount(ctx, c.App, id)
	if err != nil {
		return zero, g.storeError("conv.add_members", err)
	}
	var fresh int
	for _, u := range users {
		if !ci.isMember(u) {
			fresh++
		}
	}
	if n+fresh > g.o.Limits.MaxGroupMembers {
		g.m.LimitHits.WithLabelValues("group_members").Inc()
		return zero, &protocol.Error{Code: protocol.CodeLimit, Message: "group would exceed max members"}
	}
	added, err := g.st.AddMembers(ctx, c.App, id, users)
	if err != nil {
		return zero, g.storeError("conv.add_members", err)
	}
	if len(added) > 0 {
		g.membersChanged(ctx, c, id, protocol.MemberAdded, added, nil)
	}
	return protocol.UsersResult{Users: nonNil(added)}, nil
}

// RemoveMembers removes users from a group: the creator may remove anyone,
// every member may remove itself (leave).
func (g *Gateway) RemoveMembers(ctx context.Context, c Caller, id string, users []string) (protocol.UsersResult, *protocol.Error) {
	var zero protocol.UsersResult
	ci, perr := g.groupAccess(ctx, c, id, users)
	if perr != nil {
		return zero, perr
	}
	leaving := len(users) == 1 && users[0] == c.User
	if !c.Backend && !leaving && ci.conv.Creator != c.User {
		return zero, forbidden("only the creator may remove members")
	}
	removed, err := g.st.RemoveMembers(ctx, c.App, id, users)
	if err != nil {
		return zero, g.storeError("conv.remove_members", err)
	}
	if len(removed) > 0 {
		action := protocol.MemberRemoved
		if leaving {
			action = protocol.MemberLeft
		}
		g.membersChanged(ctx, c, id, action, removed, removed)
	}
	return protocol.UsersResult{Users: nonNil(removed)}, nil
}

// membersChanged drops the conversation's cached members on every node and
// tells the members (and also, the users in alsoTell) what changed.
func (g *Gateway) membersChanged(ctx context.Context, c Caller, id, action string, users, alsoTell []string) {
	g.convs.drop(c.App, id)
	g.publish(bus.Topic{Kind: bus.App, App: c.App}, append([]byte{msgConv}, id...))
	ci, perr := g.conv(ctx, c.App, id)
	if perr != nil {
		return
	}
	g.memberEvent(c.App, id, action, users, c.User, append(slices.Clone(ci.members), alsoTell...))
}

func (g *Gateway) memberEvent(app, conv, action string, users []string, by string, to []string) {
	frame, err := protocol.EncodeEvent(protocol.EvMember, protocol.MemberEvent{Conv: conv, Action: action, Users: users, By: by})
	if err != nil {
		return
	}
	g.publishTo(app, to, frameMsg(0, frame))
}

type listCursor struct {
	At int64  `json:"t"`
	ID string `json:"id"`
}

func (g *Gateway) list(ctx context.Context, c Caller, a protocol.ListArgs) (protocol.ListResult, *protocol.Error) {
	var zero protocol.ListResult
	limit := a.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 100)
	var cur store.ListCursor
	if a.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(a.Cursor)
		var lc listCursor
		if err != nil || json.Unmarshal(raw, &lc) != nil {
			return zero, badRequest("invalid cursor")
		}
		cur = store.ListCursor{LastAt: msTime(lc.At), ID: lc.ID}
	}
	sums, err := g.st.ListConversations(ctx, c.App, c.User, cur, limit)
	if err != nil {
		return zero, g.storeError("conv.list", err)
	}
	res := protocol.ListResult{Conversations: make([]protocol.ConvSummary, 0, len(sums))}
	for _, s := range sums {
		cs := protocol.ConvSummary{Conversation: wireConv(s.Conversation), ReadSeq: s.ReadSeq}
		if s.Conversation.LastSeq > s.ReadSeq {
			cs.Unread = s.Conversation.LastSeq - s.ReadSeq
		}
		if s.LastMessage != nil {
			m := wireMsg(*s.LastMessage)
			cs.LastMessage = &m
		}
		res.Conversations = append(res.Conversations, cs)
	}
	if len(sums) == limit {
		last := sums[len(sums)-1].Conversation
		b, _ := json.Marshal(listCursor{At: last.LastAt.UnixMilli(), ID: last.ID})
		res.Next = base64.RawURLEncoding.EncodeToString(b)
	}
	return res, nil
}

func (g *Gateway) read(ctx context.Context, c Caller, a protocol.ReadArgs) (protocol.ReadResult, *protocol.Error) {
	var zero protocol.ReadResult
	ci, perr := g.access(ctx, c, a.Conv)
	if perr != nil {
		return zero, perr
	}
	if ci.conv.Kind == store.KindRoom {
		return zero, badRequest("rooms have no read cursor")
	}
	seq, err := g.st.SetReadSeq(ctx, c.App, a.Conv, c.User, a.Seq)
	if err != nil {
		return zero, g.storeError("read", err)
	}
	if frame, err := protocol.EncodeEvent(protocol.EvRead, protocol.ReadEvent{Conv: a.Conv, User: c.User, Seq: seq}); err == nil {
		g.fanout(ci, frameMsg(0, frame), "")
	}
	return protocol.ReadResult{Seq: seq}, nil
}

func (g *Gateway) typing(ctx context.Context, c Caller, conv string) *protocol.Error {
	ci, perr := g.access(ctx, c, conv)
	if perr != nil {
		return perr
	}
	frame, err := protocol.EncodeEvent(protocol.EvTyping, protocol.TypingEvent{Conv: conv, User: c.User})
	if err != nil {
		return nil
	}
	var skip uint64
	if c.sess != nil {
		skip = c.sess.id
	}
	g.fanout(ci, frameMsg(skip, frame), c.User)
	return nil
}

// DisableUser refuses the user's current tokens from now on and closes the
// user's connections on every node (4301: get a new token).
func (g *Gateway) DisableUser(ctx context.Context, app, user string) *protocol.Error {
	if !protocol.ValidID(user) {
		return badRequest("invalid user")
	}
	if err := g.st.RevokeSessions(ctx, app, user, g.now()); err != nil {
		return g.storeError("disable_user", err)
	}
	// Every node's cached "latest revocation" of the app is now stale.
	g.AppChanged(app, false)
	g.publish(bus.Topic{Kind: bus.User, App: app, ID: user},
		jsonMsg(msgKick, kick{Code: protocol.CloseTokenRevoked, Reason: "sessions disabled by the app"}))
	return nil
}

// AppChanged tells every node that an app changed in the store (secret
// rotated, disabled or enabled); a disabled app's connections are closed.
func (g *Gateway) AppChanged(app string, disabled bool) {
	g.apps.drop(app)
	g.publish(bus.Topic{Kind: bus.App, App: app}, jsonMsg(msgApp, appChange{Disabled: disabled}))
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}
