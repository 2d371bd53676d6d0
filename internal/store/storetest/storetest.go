// Package storetest is the conformance suite for store.Store
// implementations. An engine's tests call Run (every contract), RunClocked
// (the contracts that depend on the clock, with a fake one) and, for engines
// that persist, RunPersistence.
//
// Besides what the store.Store doc comments require, the suite pins the
// conventions every engine shares where the interface leaves a choice, so
// that callers can rely on them whichever engine runs:
//
//   - Times are kept at millisecond precision; the zero time round-trips as
//     the zero time. A zero CreatedAt given to CreateApp or
//     CreateConversation means "now".
//   - A limit <= 0 returns an empty result.
//   - Every method taking a conversation id returns store.ErrNotFound when
//     that conversation does not exist in the app (Members, MemberCount,
//     MessagesAfter and MessagesBefore included); CreateConversation,
//     EnsureDirect and RevokeSessions return it when the app does not.
//   - CreateConversation accepts only groups and rooms; AddMembers and
//     RemoveMembers only groups; EnsureDirect needs two distinct users and
//     returns store.ErrConflict when the id is taken by anything but the
//     direct conversation of those two users. These misuse errors are not
//     sentinels: the suite checks only that they are errors.
//   - A member added by AddMembers has read everything before it joined:
//     ReadSeq == JoinedSeq.
//   - Results of AddMembers and RemoveMembers keep the order of the users
//     given, without repeats; ConvStates is ordered by id, without repeats.
//   - A ConvState's Member is true in every UserConversations entry, and in
//     ConvStates exactly where the user is a member.
//   - AppendMessage does not check that the sender is a member (its caller
//     does) and never makes one.
//   - RevokeSessions only moves the recorded time forward.
//   - A call whose ctx is already done returns ctx.Err() and changes
//     nothing.
//   - Close may be called again (it returns nil); every other method returns
//     store.ErrClosed after Close.
//
// The suite waits on results, never on time: its only deadlines are there to
// turn a hang into a failure.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// Run runs the conformance suite. open must return a new, empty store that
// uses the real clock; the suite closes every store it opens (open may also
// register a cleanup of its own that closes it again, which must be
// harmless). Each subtest opens its own stores.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	o := func(t *testing.T) store.Store { return opened(t, open(t)) }
	t.Run("Apps", func(t *testing.T) { testApps(t, o) })
	t.Run("Revocations", func(t *testing.T) { testRevocations(t, o) })
	t.Run("CreateConversation", func(t *testing.T) { testCreateConversation(t, o) })
	t.Run("EnsureDirect", func(t *testing.T) { testEnsureDirect(t, o) })
	t.Run("Members", func(t *testing.T) { testMembers(t, o) })
	t.Run("AddRemoveMembers", func(t *testing.T) { testAddRemoveMembers(t, o) })
	t.Run("ListConversations", func(t *testing.T) { testListConversations(t, o) })
	t.Run("UserConversations", func(t *testing.T) { testUserConversations(t, o) })
	t.Run("ConvStates", func(t *testing.T) { testConvStates(t, o) })
	t.Run("Append", func(t *testing.T) { testAppend(t, o) })
	t.Run("AppendConcurrent", func(t *testing.T) { testAppendConcurrent(t, o) })
	t.Run("AppendDedupe", func(t *testing.T) { testAppendDedupe(t, o) })
	t.Run("AppendReadCursor", func(t *testing.T) { testAppendReadCursor(t, o) })
	t.Run("AppendNotFound", func(t *testing.T) { testAppendNotFound(t, o) })
	t.Run("DoneContext", func(t *testing.T) { testDoneContext(t, o) })
	t.Run("MessagesPaging", func(t *testing.T) { testMessagesPaging(t, o) })
	t.Run("SetReadSeq", func(t *testing.T) { testSetReadSeq(t, o) })
	t.Run("TenantIsolation", func(t *testing.T) { testTenantIsolation(t, o) })
	t.Run("Ping", func(t *testing.T) { testPing(t, o) })
	t.Run("Close", func(t *testing.T) { testClose(t, o) })
	t.Run("CloseWithAppendsInFlight", func(t *testing.T) { testCloseInFlight(t, o) })
}

// opened registers the suite's Close of s.
func opened(t *testing.T, s store.Store) store.Store {
	t.Helper()
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// ctxFor returns a context for t's calls. The deadline only turns a hang
// into a failure; nothing in the suite waits for it.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// body returns a distinct JSON body for s.
func body(s string) []byte { return []byte(`{"text":` + strconv.Quote(s) + `}`) }

func createApp(t *testing.T, s store.Store, id string) store.App {
	t.Helper()
	a := store.App{ID: id, Name: "app " + id, Secret: "secret-" + id}
	if err := s.CreateApp(ctxFor(t), a); err != nil {
		t.Fatalf("CreateApp(%s): %v", id, err)
	}
	a, err := s.App(ctxFor(t), id)
	if err != nil {
		t.Fatalf("App(%s): %v", id, err)
	}
	return a
}

func createConv(t *testing.T, s store.Store, app, id, kind string, members ...string) store.Conversation {
	t.Helper()
	c, err := s.CreateConversation(ctxFor(t), store.Conversation{
		App: app, ID: id, Kind: kind, Name: app + "/" + id, Creator: "creator",
	}, members)
	if err != nil {
		t.Fatalf("CreateConversation(%s, %s): %v", app, id, err)
	}
	return c
}

func createGroup(t *testing.T, s store.Store, app, id string, members ...string) store.Conversation {
	t.Helper()
	return createConv(t, s, app, id, store.KindGroup, members...)
}

func appendMsg(t *testing.T, s store.Store, app, conv, sender, cid string) store.Appended {
	t.Helper()
	a, err := s.AppendMessage(ctxFor(t), store.NewMessage{
		App: app, Conv: conv, Sender: sender, ClientMsgID: cid,
		Body: body(app + "/" + conv + "/" + sender + "/" + cid),
	})
	if err != nil {
		t.Fatalf("AppendMessage(%s, %s, %s, %s): %v", app, conv, sender, cid, err)
	}
	return a
}

// appendN appends n messages from sender to conv and returns them.
func appendN(t *testing.T, s store.Store, app, conv, sender string, n int) []store.Appended {
	t.Helper()
	out := make([]store.Appended, n)
	for i := range out {
		out[i] = appendMsg(t, s, app, conv, sender, "")
	}
	return out
}

func getConv(t *testing.T, s store.Store, app, id string) store.Conversation {
	t.Helper()
	c, err := s.Conversation(ctxFor(t), app, id)
	if err != nil {
		t.Fatalf("Conversation(%s, %s): %v", app, id, err)
	}
	return c
}

func getMember(t *testing.T, s store.Store, app, conv, user string) store.Member {
	t.Helper()
	m, err := s.Member(ctxFor(t), app, conv, user)
	if err != nil {
		t.Fatalf("Member(%s, %s, %s): %v", app, conv, user, err)
	}
	return m
}

func messagesAfter(t *testing.T, s store.Store, app, conv string, after uint64, limit int) []store.Message {
	t.Helper()
	ms, err := s.MessagesAfter(ctxFor(t), app, conv, after, limit)
	if err != nil {
		t.Fatalf("MessagesAfter(%s, %s, %d, %d): %v", app, conv, after, limit, err)
	}
	return ms
}

func messagesBefore(t *testing.T, s store.Store, app, conv string, before uint64, limit int) []store.Message {
	t.Helper()
	ms, err := s.MessagesBefore(ctxFor(t), app, conv, before, limit)
	if err != nil {
		t.Fatalf("MessagesBefore(%s, %s, %d, %d): %v", app, conv, before, limit, err)
	}
	return ms
}

// wantErr fails t unless err is want.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

// wantMisuse fails t unless err is a non-nil error other than the
// sentinels that mean something else.
func wantMisuse(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want one", what)
		return
	}
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("%s: got %v, want store.ErrInvalid", what, err)
	}
}

// sameTime reports whether a and b are the same instant at millisecond
// precision, the precision the store keeps.
func sameTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && b.IsZero()
	}
	return a.UnixMilli() == b.UnixMilli()
}

// sameMessage compares everything but the body's allocation.
func sameMessage(a, b store.Message) bool {
	return a.App == b.App && a.Conv == b.Conv && a.Seq == b.Seq && sameTime(a.At, b.At) &&
		a.Sender == b.Sender && a.ClientMsgID == b.ClientMsgID && bytes.Equal(a.Body, b.Body)
}

func fmtMessage(m store.Message) string {
	return fmt.Sprintf("{%s/%s #%d at=%d sender=%q cid=%q body=%s}",
		m.App, m.Conv, m.Seq, m.At.UnixMilli(), m.Sender, m.ClientMsgID, m.Body)
}

// seqs returns the seqs of ms.
func seqs(ms []store.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// wantSeqs fails t unless ms has exactly the seqs want, in order.
func wantSeqs(t *testing.T, what string, ms []store.Message, want ...uint64) {
	t.Helper()
	got := seqs(ms)
	if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: got seqs %v, want %v", what, got, want)
	}
}

// span returns from, from+1, …, to.
func span(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
