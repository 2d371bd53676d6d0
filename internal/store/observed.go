package store

import (
	"context"
	"errors"
	"time"
)

// Observer is told the outcome of every call made through Observed.
type Observer func(method string, took time.Duration, err error)

// Observed returns a Store that reports the duration and error of every
// call to obs before returning it, for latency metrics. It adds no other
// behaviour. ErrNotFound, ErrConflict and ErrInvalid are answers, not
// failures, and are reported as nil.
func Observed(s Store, obs Observer) Store { return observed{s, obs} }

type observed struct {
	s   Store
	obs Observer
}

func (o observed) done(method string, start time.Time, err error) {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) {
		err = nil
	}
	o.obs(method, time.Since(start), err)
}

func (o observed) CreateApp(ctx context.Context, a App) (err error) {
	defer func(t time.Time) { o.done("CreateApp", t, err) }(time.Now())
	return o.s.CreateApp(ctx, a)
}

func (o observed) App(ctx context.Context, id string) (a App, err error) {
	defer func(t time.Time) { o.done("App", t, err) }(time.Now())
	return o.s.App(ctx, id)
}

func (o observed) Apps(ctx context.Context) (as []App, err error) {
	defer func(t time.Time) { o.done("Apps", t, err) }(time.Now())
	return o.s.Apps(ctx)
}

func (o observed) RotateAppSecret(ctx context.Context, id, secret string, prevUntil time.Time) (a App, err error) {
	defer func(t time.Time) { o.done("RotateAppSecret", t, err) }(time.Now())
	return o.s.RotateAppSecret(ctx, id, secret, prevUntil)
}

func (o observed) SetAppDisabled(ctx context.Context, id string, disabled bool) (err error) {
	defer func(t time.Time) { o.done("SetAppDisabled", t, err) }(time.Now())
	return o.s.SetAppDisabled(ctx, id, disabled)
}

func (o observed) CreateConversation(ctx context.Context, c Conversation, members []string) (r Conversation, err error) {
	defer func(t time.Time) { o.done("CreateConversation", t, err) }(time.Now())
	return o.s.CreateConversation(ctx, c, members)
}

func (o observed) EnsureDirect(ctx context.Context, app, id, a, b string) (r Conversation, err error) {
	defer func(t time.Time) { o.done("EnsureDirect", t, err) }(time.Now())
	return o.s.EnsureDirect(ctx, app, id, a, b)
}

func (o observed) Conversation(ctx context.Context, app, id string) (r Conversation, err error) {
	defer func(t time.Time) { o.done("Conversation", t, err) }(time.Now())
	return o.s.Conversation(ctx, app, id)
}

func (o observed) Member(ctx context.Context, app, conv, user string) (r Member, err error) {
	defer func(t time.Time) { o.done("Member", t, err) }(time.Now())
	return o.s.Member(ctx, app, conv, user)
}

func (o observed) Members(ctx context.Context, app, conv string, limit int) (r []Member, err error) {
	defer func(t time.Time) { o.done("Members", t, err) }(time.Now())
	return o.s.Members(ctx, app, conv, limit)
}

func (o observed) ConversationMembers(ctx context.Context, app, id string, limit int) (c Conversation, ms []string, err error) {
	defer func(t time.Time) { o.done("ConversationMembers", t, err) }(time.Now())
	return o.s.ConversationMembers(ctx, app, id, limit)
}

func (o observed) MemberCount(ctx context.Context, app, conv string) (n int, err error) {
	defer func(t time.Time) { o.done("MemberCount", t, err) }(time.Now())
	return o.s.MemberCount(ctx, app, conv)
}

func (o observed) AddMembers(ctx context.Context, app, conv string, users []string) (r []string, err error) {
	defer func(t time.Time) { o.done("AddMembers", t, err) }(time.Now())
	return o.s.AddMembers(ctx, app, conv, users)
}

func (o observed) RemoveMembers(ctx context.Context, app, conv string, users []string) (r []string, err error) {
	defer func(t time.Time) { o.done("RemoveMembers", t, err) }(time.Now())
	return o.s.RemoveMembers(ctx, app, conv, users)
}

func (o observed) ListConversations(ctx context.Context, app, user string, cursor ListCursor, limit int) (r []Summary, err error) {
	defer func(t time.Time) { o.done("ListConversations", t, err) }(time.Now())
	return o.s.ListConversations(ctx, app, user, cursor, limit)
}

func (o observed) UserConversations(ctx context.Context, app, user string, limit int) (r []ConvState, err error) {
	defer func(t time.Time) { o.done("UserConversations", t, err) }(time.Now())
	return o.s.UserConversations(ctx, app, user, limit)
}

func (o observed) ConvStates(ctx context.Context, app, user string, ids []string) (r []ConvState, err error) {
	defer func(t time.Time) { o.done("ConvStates", t, err) }(time.Now())
	return o.s.ConvStates(ctx, app, user, ids)
}

func (o observed) AppendMessage(ctx context.Context, m NewMessage) (r Appended, err error) {
	defer func(t time.Time) { o.done("AppendMessage", t, err) }(time.Now())
	return o.s.AppendMessage(ctx, m)
}

func (o observed) MessagesAfter(ctx context.Context, app, conv string, after uint64, limit int) (r []Message, err error) {
	defer func(t time.Time) { o.done("MessagesAfter", t, err) }(time.Now())
	return o.s.MessagesAfter(ctx, app, conv, after, limit)
}

func (o observed) MessagesBefore(ctx context.Context, app, conv string, before uint64, limit int) (r []Message, err error) {
	defer func(t time.Time) { o.done("MessagesBefore", t, err) }(time.Now())
	return o.s.MessagesBefore(ctx, app, conv, before, limit)
}

func (o observed) SetReadSeq(ctx context.Context, app, conv, user string, seq uint64) (r uint64, err error) {
	defer func(t time.Time) { o.done("SetReadSeq", t, err) }(time.Now())
	return o.s.SetReadSeq(ctx, app, conv, user, seq)
}

func (o observed) RevokeSessions(ctx context.Context, app, user string, at time.Time) (err error) {
	defer func(t time.Time) { o.done("RevokeSessions", t, err) }(time.Now())
	return o.s.RevokeSessions(ctx, app, user, at)
}

func (o observed) RevokedBefore(ctx context.Context, app, user string) (r time.Time, err error) {
	defer func(t time.Time) { o.done("RevokedBefore", t, err) }(time.Now())
	return o.s.RevokedBefore(ctx, app, user)
}

func (o observed) LatestRevocation(ctx context.Context, app string) (r time.Time, err error) {
	defer func(t time.Time) { o.done("LatestRevocation", t, err) }(time.Now())
	return o.s.LatestRevocation(ctx, app)
}

func (o observed) Ping(ctx context.Context) (err error) {
	defer func(t time.Time) { o.done("Ping", t, err) }(time.Now())
	return o.s.Ping(ctx)
}

func (o observed) Close() error { return o.s.Close() }
