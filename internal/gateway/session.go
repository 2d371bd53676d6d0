package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/transport"
	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

// refusalsBeforeClose is how many requests in a row a client may send over
// its rate limit before it is disconnected (4102): enough for a client that
// honours retry_after_ms to never reach it.
const refusalsBeforeClose = 100

// Session is one client connection's state. The transport calls Frame
// serially, so everything below "frame handler state" is touched by one
// goroutine at a time; fan-out goroutines read only the immutable identity
// (after authed is set) and the connection.
type Session struct {
	g    *Gateway
	conn transport.Conn
	id   uint64

	authed atomic.Bool
	// unpended: s has left the gateway's pendingAuth count.
	unpended atomic.Bool
	closed   atomic.Bool
	// Identity, written once by auth before authed is set.
	app, user, device string
	issued            time.Time

	// fullSync is when the reads of the session's latest complete full
	// sync began (unix ns, 0 for none): one with all=true that listed
	// every room of the session and was not cut short by a size bound.
	fullSync atomic.Int64

	// Frame handler state.
	bucket  bucket
	rooms   map[string]struct{}
	watches map[string]*watch
}

// live reports whether the session is authenticated and open, i.e. should
// receive fan-out.
func (s *Session) live() bool { return s.authed.Load() && !s.closed.Load() }

func (s *Session) caller() Caller { return Caller{App: s.app, User: s.user, sess: s} }

// Frame implements transport.Session.
func (s *Session) Frame(data []byte) {
	g := s.g
	req, perr := protocol.ParseRequest(data)
	if perr != nil {
		g.m.Requests.WithLabelValues("invalid", perr.Code).Inc()
		s.send(protocol.EncodeError(req.ID, perr))
		return
	}
	op := req.Op
	if !knownOp(op) {
		op = "unknown" // keeps the metric's label set bounded
	}
	if ok, wait := s.bucket.take(g.now(), g.o.Limits.Rate, g.o.Limits.Burst); !ok {
		g.m.LimitHits.WithLabelValues("rate").Inc()
		g.m.Requests.WithLabelValues(op, protocol.CodeRateLimited).Inc()
		if s.bucket.refused >= refusalsBeforeClose {
			s.closeWith(protocol.CloseRateLimited, "request rate limit exceeded")
			return
		}
		if req.ID != 0 {
			s.send(protocol.EncodeError(req.ID, &protocol.Error{Code: protocol.CodeRateLimited,
				Message: "request rate limit exceeded", RetryAfterMS: max(wait.Milliseconds(), 1)}))
		}
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.o.RequestTimeout)
	defer cancel()
	var (
		res any
		err *protocol.Error
	)
	switch {
	case req.Op == protocol.OpAuth:
		res, err = s.auth(ctx, req)
	case !s.authed.Load():
		err = &protocol.Error{Code: protocol.CodeAuthRequired, Message: "authenticate first"}
	default:
		res, err = s.handle(ctx, req)
	}
	result := "ok"
	if err != nil {
		result = err.Code
	}
	g.m.Requests.WithLabelValues(op, result).Inc()
	if req.ID != 0 {
		if err != nil {
			s.send(protocol.EncodeError(req.ID, err))
		} else if b, merr := protocol.EncodeReply(req.ID, res); merr == nil {
			s.send(b)
		} else {
			g.log.Error("encode reply", "op", req.Op, "err", merr)
			s.send(protocol.EncodeError(req.ID, &protocol.Error{Code: protocol.CodeInternal, Message: "internal error"}))
		}
	}
	if err != nil && req.Op == protocol.OpAuth && err.Code != protocol.CodeAlreadyAuthed && err.Code != protocol.CodeBadRequest {
		s.closeWith(protocol.AuthCloseCode(err.Code), err.Message)
	}
}

func knownOp(op string) bool {
	switch op {
	case protocol.OpAuth, protocol.OpPing, protocol.OpConvDirect, protocol.OpConvCreate, protocol.OpConvGet,
		protocol.OpConvAdd, protocol.OpConvRemove, protocol.OpConvLeave, protocol.OpConvList,
		protocol.OpRoomJoin, protocol.OpRoomLeave, protocol.OpSend, protocol.OpSync, protocol.OpHistory,
		protocol.OpRead, protocol.OpTyping, protocol.OpPresenceSub, protocol.OpPresenceUnsub:
		return true
	}
	return false
}

// handle runs one authenticated request.
func (s *Session) handle(ctx context.Context, req protocol.Request) (any, *protocol.Error) {
	g, c := s.g, s.caller()
	switch req.Op {
	case protocol.OpPing:
		return protocol.PingResult{TS: g.now().UnixMilli()}, nil
	case protocol.OpSend:
		var a protocol.SendArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.Send(ctx, c, a)
	case protocol.OpSync:
		var a protocol.SyncArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.sync(ctx, c, a)
	case protocol.OpHistory:
		var a protocol.HistoryArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.History(ctx, c, a)
	case protocol.OpRead:
		var a protocol.ReadArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.read(ctx, c, a)
	case protocol.OpConvDirect:
		var a protocol.DirectArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.Direct(ctx, c, s.user, a.User)
	case protocol.OpConvCreate:
		var a protocol.CreateArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.CreateConversation(ctx, c, a)
	case protocol.OpConvGet:
		var a protocol.ConvArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.GetConversation(ctx, c, a.Conv)
	case protocol.OpConvAdd, protocol.OpConvRemove:
		var a protocol.MembersArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		if req.Op == protocol.OpConvAdd {
			return g.AddMembers(ctx, c, a.Conv, a.Users)
		}
		return g.RemoveMembers(ctx, c, a.Conv, a.Users)
	case protocol.OpConvLeave:
		var a protocol.ConvArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		_, err := g.RemoveMembers(ctx, c, a.Conv, []string{s.user})
		return struct{}{}, err
	case protocol.OpConvList:
		var a protocol.ListArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return g.list(ctx, c, a)
	case protocol.OpRoomJoin, protocol.OpRoomLeave:
		var a protocol.ConvArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		if req.Op == protocol.OpRoomJoin {
			return s.joinRoom(ctx, a.Conv)
		}
		return s.leaveRoom(a.Conv)
	case protocol.OpTyping:
		var a protocol.ConvArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return struct{}{}, g.typing(ctx, c, a.Conv)
	case protocol.OpPresenceSub, protocol.OpPresenceUnsub:
		var a protocol.ConvArgs
		if err := protocol.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		if req.Op == protocol.OpPresenceSub {
			return s.watchPresence(ctx, a.Conv)
		}
		s.unwatchPresence(a.Conv)
		return struct{}{}, nil
	case protocol.OpAuth:
		return nil, &protocol.Error{Code: protocol.CodeAlreadyAuthed, Message: "already authenticated"}
	}
	return nil, &protocol.Error{Code: protocol.CodeUnknownOp, Message: "unknown op " + truncate(req.Op, 64)}
}

// auth authenticates the connection. The user's bus subscription is in
// place before the reply, so anything published after the client's next
// sync reads the store reaches it live.
func (s *Session) auth(ctx context.Context, req protocol.Request) (any, *protocol.Error) {
	g := s.g
	if s.authed.Load() {
		return nil, &protocol.Error{Code: protocol.CodeAlreadyAuthed, Message: "already authenticated"}
	}
	var a protocol.AuthArgs
	if err := protocol.DecodeArgs(req.Args, &a); err != nil {
		return nil, err
	}
	if !protocol.ValidID(a.App) || a.Token == "" {
		return nil, badRequest("auth needs an app id and a token")
	}
	fail := func(code, msg string) (any, *protocol.Error) {
		g.m.AuthFailures.WithLabelValues(code).Inc()
		return nil, &protocol.Error{Code: code, Message: msg}
	}
	entry, err := g.apps.get(ctx, a.App)
	app := entry.app
	if errors.Is(err, store.ErrNotFound) {
		return fail(protocol.CodeAppNotFound, "no such app")
	} else if err != nil {
		g.log.Warn("auth: read app", "err", err)
		return fail(protocol.CodeUnavailable, "store unavailable")
	}
	if app.Disabled {
		return fail(protocol.CodeAppDisabled, "app disabled")
	}
	now := g.now()
	secrets := []string{app.Secret}
	if app.PrevSecret != "" && now.Before(app.PrevSecretUntil) {
		secrets = append(secrets, app.PrevSecret)
	}
	claims, err := token.Verify(a.Token, app.ID, now, secrets...)
	if err != nil {
		return fail(token.Code(err), err.Error())
	}
	// iat has second precision: a token issued in the second of the
	// revocation is accepted, one from an earlier second is not. Only a
	// token not newer than the app's latest revocation can be revoked, so
	// only then is the user's own revocation read.
	if !entry.revoked.IsZero() && (claims.IssuedAt.IsZero() || claims.IssuedAt.Unix() <= entry.revoked.Unix()) {
		revoked, err := g.st.RevokedBefore(ctx, app.ID, claims.User)
		if err != nil {
			g.log.Warn("auth: read revocation", "err", err)
			return fail(protocol.CodeUnavailable, "store unavailable")
		}
		if !revoked.IsZero() && (claims.IssuedAt.IsZero() || claims.IssuedAt.Unix() < revoked.Unix()) {
			return fail(protocol.CodeTokenRevoked, "token issued before the user's sessions were disabled")
		}
	}
	s.app, s.user, s.device, s.issued = app.ID, claims.User, claims.Device, claims.IssuedAt

	userTopic, appTopic := bus.Topic{Kind: bus.User, App: s.app, ID: s.user}, bus.Topic{Kind: bus.App, App: s.app}
	first, err := g.hub.follow(ctx, userTopic, s, nil)
	if err != nil {
		// Static stability: the client can still send, sync and read
		// history; the janitor retries the subscription and then resyncs.
		g.log.Warn("auth: subscribe user", "err", err)
	}
	if _, err := g.hub.follow(ctx, appTopic, s, nil); err != nil {
		g.log.Warn("auth: subscribe app", "err", err)
	}
	s.authed.Store(true)
	s.leavePending()
	g.scheduleCatchUp(s, userTopic, appTopic)
	if first {
		g.publishPresence(s.app, s.user, true)
	}
	s.conn.SetIdleTimeout(2*g.o.PingInterval, protocol.ClosePingTimeout)
	g.m.Auths.Inc()
	l := g.o.Limits
	return protocol.AuthResult{
		User: s.user, Device: s.device, Session: sessionName(s.id), Node: g.o.Node,
		PingIntervalMS: g.o.PingInterval.Milliseconds(),
		Limits: protocol.Limits{MaxFrameBytes: l.MaxFrameBytes, MaxBodyBytes: l.MaxBodyBytes, MaxRooms: l.MaxRooms,
			MaxSyncConvs: l.MaxSyncConvs, Rate: l.Rate, Burst: l.Burst},
	}, nil
}

// leavePending takes s out of the gateway's count of connections waiting
// to authenticate, once, whether it authenticates or closes first.
func (s *Session) leavePending() {
	if s.unpended.CompareAndSwap(false, true) {
		s.g.pendingAuth.Add(-1)
	}
}

// Closed implements transport.Session.
func (s *Session) Closed(code int, err error) {
	s.g.m.Closes.WithLabelValues(closeLabel(code)).Inc()
	s.closed.Store(true)
	s.g.sessions.remove(s)
	s.leavePending()
	if s.authed.Load() {
		s.unfollowAll()
	}
}

// unfollowAll removes the session from every topic; the last session of a
// user on this node announces the user offline here.
func (s *Session) unfollowAll() {
	g := s.g
	if g.hub.unfollow(bus.Topic{Kind: bus.User, App: s.app, ID: s.user}, s, nil) {
		g.publishPresence(s.app, s.user, false)
	}
	g.hub.unfollow(bus.Topic{Kind: bus.App, App: s.app}, s, nil)
	for room := range s.rooms {
		g.hub.unfollow(bus.Topic{Kind: bus.Room, App: s.app, ID: room}, s, nil)
	}
	for conv := range s.watches {
		s.unwatchPresence(conv)
	}
}

// send queues a frame for this client; a full queue closes the connection
// (the transport does that), which the client heals by resuming.
func (s *Session) send(frame []byte) {
	if err := s.conn.Send(frame); errors.Is(err, transport.ErrSlowConsumer) {
		s.g.m.LimitHits.WithLabelValues("send_queue").Inc()
	}
}

// directive tells the client what to do next, then closes with d.Code.
func (s *Session) directive(d protocol.Directive) {
	if f, err := protocol.EncodeEvent(protocol.EvDirective, d); err == nil {
		_ = s.conn.Send(f)
	}
	s.conn.Close(d.Code, d.Reason)
}

// closeWith closes the connection with code, preceded by the directive the
// code's range implies.
func (s *Session) closeWith(code int, reason string) {
	d := protocol.Directive{Code: code, Reason: reason}
	switch protocol.CloseAction(code) {
	case protocol.AfterStop, protocol.AfterRefresh:
		d.Action = protocol.ActionStop
		if protocol.CloseAction(code) == protocol.AfterRefresh {
			// The client reconnects once it has a new token.
			d.Action = protocol.ActionReconnect
		}
	case protocol.AfterRedirect:
		d.Action = protocol.ActionRedirect
	case protocol.AfterReconnect:
		d.Action = protocol.ActionReconnect
	default:
		d.Action = protocol.ActionBackoff
		d.RetryAfterMS = time.Second.Milliseconds()
	}
	s.directive(d)
}

func (s *Session) joinRoom(ctx context.Context, conv string) (any, *protocol.Error) {
	g := s.g
	if !protocol.ValidID(conv) {
		return nil, badRequest("invalid conv")
	}
	if _, ok := s.rooms[conv]; !ok && len(s.rooms) >= g.o.Limits.MaxRooms {
		g.m.LimitHits.WithLabelValues("rooms").Inc()
		return nil, &protocol.Error{Code: protocol.CodeLimit, Message: "too many rooms on this connection"}
	}
	ci, perr := g.conv(ctx, s.app, conv)
	if perr != nil {
		return nil, perr
	}
	if ci.conv.Kind != store.KindRoom {
		return nil, badRequest(conv + " is not a room")
	}
	if s.rooms == nil {
		s.rooms = make(map[string]struct{})
	}
	if _, ok := s.rooms[conv]; !ok {
		s.rooms[conv] = struct{}{}
		room := bus.Topic{Kind: bus.Room, App: s.app, ID: conv}
		if _, err := g.hub.follow(ctx, room, s, nil); err != nil {
			g.log.Warn("room join: subscribe", "err", err)
		}
		g.scheduleCatchUp(s, room)
	}
	// Read after subscribing: the returned seq is where the live stream
	// starts; anything at or below it that also arrives live is a duplicate
	// the client drops.
	c, err := g.st.Conversation(ctx, s.app, conv)
	if err != nil {
		return nil, g.storeError("room.join", err)
	}
	return protocol.ConvResult{Conversation: wireConv(c)}, nil
}

func (s *Session) leaveRoom(conv string) (any, *protocol.Error) {
	if _, ok := s.rooms[conv]; ok {
		delete(s.rooms, conv)
		s.g.hub.unfollow(bus.Topic{Kind: bus.Room, App: s.app, ID: conv}, s, nil)
	}
	return struct{}{}, nil
}

func (s *Session) inRoom(conv string) bool {
	_, ok := s.rooms[conv]
	return ok
}

// roomsListed reports whether every room of the session is in convs.
func (s *Session) roomsListed(convs map[string]uint64) bool {
	for r := range s.rooms {
		if _, ok := convs[r]; !ok {
			return false
		}
	}
	return true
}

func sessionName(id uint64) string {
	const hex = "0123456789abcdef"
	b := []byte("s_0000000000000000")
	for i := len(b) - 1; i >= 2; i-- {
		b[i] = hex[id&15]
		id >>= 4
	}
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// closeLabel is code as a metric label: the codes Floodgate and RFC 6455
// define, and "other" for the rest, which a client may send any of, so
// that the label's values stay few.
func closeLabel(code int) string {
	switch code {
	case 1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011,
		protocol.CloseShutdown, protocol.CloseReplaced,
		protocol.CloseSlowConsumer, protocol.CloseOverloaded, protocol.CloseRateLimited,
		protocol.ClosePingTimeout, protocol.CloseAuthTimeout, protocol.CloseProtocolError,
		protocol.CloseServerError, protocol.CloseDraining,
		protocol.CloseTokenExpired, protocol.CloseTokenRevoked,
		protocol.CloseTokenInvalid, protocol.CloseTokenWrongApp,
		protocol.CloseAppNotFound, protocol.CloseAppDisabled:
		return strconv.Itoa(code)
	}
	return "other"
}
