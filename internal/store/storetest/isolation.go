package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// snapshot is everything the read methods show of one app, for the ids and
// users it was taken with. Times are kept as Unix milliseconds so two
// snapshots compare equal when the store holds the same data.
type snapshot struct {
	App       string
	Convs     map[string]string
	Members   map[string]string
	Counts    map[string]int
	Messages  map[string][]string
	Lists     map[string][]string
	UserConvs map[string][]store.ConvState
	States    map[string][]store.ConvState
	Revoked   map[string]int64
}

func fmtApp(a store.App) string {
	return fmt.Sprintf("%s name=%q secret=%q disabled=%v created=%d prev=%q until=%d",
		a.ID, a.Name, a.Secret, a.Disabled, a.CreatedAt.UnixMilli(), a.PrevSecret, a.PrevSecretUntil.UnixMilli())
}

func fmtConv(c store.Conversation) string {
	return fmt.Sprintf("%s/%s kind=%s name=%q creator=%q created=%d last=%d@%d",
		c.App, c.ID, c.Kind, c.Name, c.Creator, c.CreatedAt.UnixMilli(), c.LastSeq, c.LastAt.UnixMilli())
}

// takeSnapshot reads app's data for convs and users through every read
// method, failing t on any error but store.ErrNotFound.
func takeSnapshot(t *testing.T, s store.Store, app string, convs, users []string) snapshot {
	t.Helper()
	ctx := ctxFor(t)
	sn := snapshot{
		Convs: map[string]string{}, Members: map[string]string{}, Counts: map[string]int{},
		Messages: map[string][]string{}, Lists: map[string][]string{},
		UserConvs: map[string][]store.ConvState{}, States: map[string][]store.ConvState{},
		Revoked: map[string]int64{},
	}
	check := func(what string, err error) bool {
		t.Helper()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("snapshot of %s: %s: %v", app, what, err)
		}
		return err == nil
	}
	if a, err := s.App(ctx, app); check("App", err) {
		sn.App = fmtApp(a)
	}
	for _, id := range convs {
		c, err := s.Conversation(ctx, app, id)
		if !check("Conversation", err) {
			continue
		}
		sn.Convs[id] = fmtConv(c)
		ms, err := s.Members(ctx, app, id, 1000)
		check("Members", err)
		sn.Members[id] = fmt.Sprint(ms)
		for _, u := range users {
			if m, err := s.Member(ctx, app, id, u); check("Member", err) && !slices.Contains(ms, m) {
				t.Errorf("snapshot of %s: Member(%s, %s) = %+v is not in Members %+v", app, id, u, m, ms)
			}
		}
		n, err := s.MemberCount(ctx, app, id)
		check("MemberCount", err)
		sn.Counts[id] = n
		msgs, err := s.MessagesAfter(ctx, app, id, 0, 1000)
		check("MessagesAfter", err)
		for _, m := range msgs {
			sn.Messages[id] = append(sn.Messages[id], fmtMessage(m))
		}
	}
	for _, u := range users {
		list, err := s.ListConversations(ctx, app, u, store.ListCursor{}, 1000)
		check("ListConversations", err)
		for _, sum := range list {
			last := "none"
			if sum.LastMessage != nil {
				last = fmtMessage(*sum.LastMessage)
			}
			sn.Lists[u] = append(sn.Lists[u], fmt.Sprintf("%s read=%d last=%s", fmtConv(sum.Conversation), sum.ReadSeq, last))
		}
		sn.UserConvs[u], err = s.UserConversations(ctx, app, u, 1000)
		check("UserConversations", err)
		sn.States[u], err = s.ConvStates(ctx, app, u, convs)
		check("ConvStates", err)
		r, err := s.RevokedBefore(ctx, app, u)
		check("RevokedBefore", err)
		if !r.IsZero() {
			sn.Revoked[u] = r.UnixMilli()
		}
	}
	return sn
}

// diff describes how b differs from a, or returns "".
func (a snapshot) diff(b snapshot) string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		x, y := va.Field(i).Interface(), vb.Field(i).Interface()
		if !reflect.DeepEqual(x, y) && !(va.Field(i).Len() == 0 && vb.Field(i).Len() == 0) {
			out = append(out, fmt.Sprintf("%s:\n  was %v\n  now %v", va.Type().Field(i).Name, x, y))
		}
	}
	return strings.Join(out, "\n")
}

// testTenantIsolation fills apps A and B with the same ids (conversations,
// users, client message ids) and different contents, then checks that
// every method called for A sees only A's rows and leaves B's as they were.
func testTenantIsolation(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	convs := []string{"g:1", "r:1", "d:ab", "g:only-b", "g:only-a"}
	users := []string{"alice", "bob", "carol", "dave"}
	revokedB := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

	for _, app := range []string{"A", "B"} {
		createApp(t, s, app)
		createGroup(t, s, app, "g:1", "alice", "bob")
		createConv(t, s, app, "r:1", store.KindRoom)
		if _, err := s.EnsureDirect(ctx, app, "d:ab", "alice", "bob"); err != nil {
			t.Fatalf("EnsureDirect: %v", err)
		}
	}
	createGroup(t, s, "B", "g:only-b", "alice", "carol")
	createGroup(t, s, "A", "g:only-a", "alice")
	// B gets more of everything, so a leak shows in counts.
	if _, err := s.AddMembers(ctx, "B", "g:1", []string{"carol", "dave"}); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	for i := range 5 {
		appendMsg(t, s, "B", "g:1", "alice", fmt.Sprint(i))
		appendMsg(t, s, "B", "r:1", "carol", fmt.Sprint(i))
		appendMsg(t, s, "B", "d:ab", "bob", fmt.Sprint(i))
	}
	appendMsg(t, s, "B", "g:only-b", "carol", "0")
	if _, err := s.SetReadSeq(ctx, "B", "g:1", "bob", 4); err != nil {
		t.Fatalf("SetReadSeq: %v", err)
	}
	if err := s.RevokeSessions(ctx, "B", "alice", revokedB); err != nil {
		t.Fatalf("RevokeSessions: %v", err)
	}
	beforeB := takeSnapshot(t, s, "B", convs, users)

	t.Run("Reads", func(t *testing.T) {
		if c := getConv(t, s, "A", "g:1"); c.LastSeq != 0 || c.Name != "A/g:1" {
			t.Errorf("A's g:1 = %s", fmtConv(c))
		}
		if n, _ := s.MemberCount(ctx, "A", "g:1"); n != 2 {
			t.Errorf("A's g:1 MemberCount = %d, want 2", n)
		}
		if ms, _ := s.Members(ctx, "A", "g:1", 10); len(ms) != 2 || ms[0] != (store.Member{User: "alice"}) {
			t.Errorf("A's g:1 Members = %+v", ms)
		}
		_, err := s.Member(ctx, "A", "g:1", "carol")
		wantErr(t, "Member(A, g:1, carol)", err, store.ErrNotFound)
		for _, id := range []string{"g:1", "r:1", "d:ab"} {
			if ms := messagesAfter(t, s, "A", id, 0, 100); len(ms) != 0 {
				t.Errorf("A's %s has messages: %v", id, ms)
			}
			if ms := messagesBefore(t, s, "A", id, 0, 100); len(ms) != 0 {
				t.Errorf("A's %s has messages: %v", id, ms)
			}
		}
		_, err = s.Conversation(ctx, "A", "g:only-b")
		wantErr(t, "Conversation(A, g:only-b)", err, store.ErrNotFound)
		_, err = s.MessagesAfter(ctx, "A", "g:only-b", 0, 10)
		wantErr(t, "MessagesAfter(A, g:only-b)", err, store.ErrNotFound)
		_, err = s.Members(ctx, "A", "g:only-b", 10)
		wantErr(t, "Members(A, g:only-b)", err, store.ErrNotFound)

		list, err := s.ListConversations(ctx, "A", "alice", store.ListCursor{}, 100)
		if err != nil {
			t.Fatalf("ListConversations: %v", err)
		}
		var ids []string
		for _, sum := range list {
			ids = append(ids, sum.Conversation.ID)
			if sum.Conversation.App != "A" || sum.LastMessage != nil || sum.ReadSeq != 0 || sum.Conversation.LastSeq != 0 {
				t.Errorf("A's listing holds %s read=%d last=%v", fmtConv(sum.Conversation), sum.ReadSeq, sum.LastMessage)
			}
		}
		slices.Sort(ids)
		if want := []string{"d:ab", "g:1", "g:only-a"}; !slices.Equal(ids, want) {
			t.Errorf("A's ListConversations(alice) = %v, want %v", ids, want)
		}
		states, _ := s.UserConversations(ctx, "A", "carol", 100)
		if len(states) != 0 {
			t.Errorf("A's UserConversations(carol) = %+v, want none", states)
		}
		states, _ = s.ConvStates(ctx, "A", "bob", convs)
		for _, st := range states {
			member := st.ID == "g:1" || st.ID == "d:ab"
			if st.LastSeq != 0 || st.ReadSeq != 0 || st.ID == "g:only-b" || st.Member != member {
				t.Errorf("A's ConvStates holds %+v", st)
			}
		}
		if len(states) != 4 {
			t.Errorf("A's ConvStates = %+v, want 4 entries", states)
		}
		if r, _ := s.RevokedBefore(ctx, "A", "alice"); !r.IsZero() {
			t.Errorf("A's RevokedBefore(alice) = %v, want zero", r)
		}
	})

	t.Run("Writes", func(t *testing.T) {
		// Same ids, same client message ids: A's appends are new messages.
		for i := range 2 {
			if a := appendMsg(t, s, "A", "g:1", "alice", fmt.Sprint(i)); a.Duplicate || a.Seq != uint64(i+1) {
				t.Errorf("A's append %d = seq %d dup %v, want seq %d, new", i, a.Seq, a.Duplicate, i+1)
			}
		}
		appendMsg(t, s, "A", "r:1", "carol", "0")
		appendMsg(t, s, "A", "d:ab", "bob", "0")
		_, err := s.AppendMessage(ctx, store.NewMessage{App: "A", Conv: "g:only-b", Sender: "carol", Body: body("x")})
		wantErr(t, "AppendMessage(A, g:only-b)", err, store.ErrNotFound)
		if _, err := s.SetReadSeq(ctx, "A", "g:1", "bob", 100); err != nil {
			t.Errorf("SetReadSeq: %v", err)
		}
		_, err = s.SetReadSeq(ctx, "A", "g:1", "carol", 1)
		wantErr(t, "SetReadSeq(A, g:1, carol)", err, store.ErrNotFound)
		_, err = s.SetReadSeq(ctx, "A", "g:only-b", "carol", 1)
		wantErr(t, "SetReadSeq(A, g:only-b)", err, store.ErrNotFound)
		if added, err := s.AddMembers(ctx, "A", "g:1", []string{"carol", "dave"}); err != nil || len(added) != 2 {
			t.Errorf("AddMembers(A) = %v, %v; want both added (they are B's members only)", added, err)
		}
		if removed, err := s.RemoveMembers(ctx, "A", "g:1", []string{"alice", "carol"}); err != nil || len(removed) != 2 {
			t.Errorf("RemoveMembers(A) = %v, %v", removed, err)
		}
		_, err = s.AddMembers(ctx, "A", "g:only-b", []string{"bob"})
		wantErr(t, "AddMembers(A, g:only-b)", err, store.ErrNotFound)
		_, err = s.RemoveMembers(ctx, "A", "g:only-b", []string{"carol"})
		wantErr(t, "RemoveMembers(A, g:only-b)", err, store.ErrNotFound)
		if _, err := s.EnsureDirect(ctx, "A", "d:cd", "carol", "dave"); err != nil {
			t.Errorf("EnsureDirect(A): %v", err)
		}
		if _, err := s.CreateConversation(ctx, store.Conversation{App: "A", ID: "g:only-b", Kind: store.KindGroup}, []string{"dave"}); err != nil {
			t.Errorf("CreateConversation(A, id B uses): %v", err)
		}
		if _, err := s.RotateAppSecret(ctx, "A", "new", time.Now()); err != nil {
			t.Errorf("RotateAppSecret: %v", err)
		}
		if err := s.SetAppDisabled(ctx, "A", true); err != nil {
			t.Errorf("SetAppDisabled: %v", err)
		}
		if err := s.RevokeSessions(ctx, "A", "bob", time.Now()); err != nil {
			t.Errorf("RevokeSessions: %v", err)
		}
		if err := s.RevokeSessions(ctx, "A", "alice", revokedB.Add(time.Hour)); err != nil {
			t.Errorf("RevokeSessions: %v", err)
		}

		if c := getConv(t, s, "A", "g:1"); c.LastSeq != 2 {
			t.Errorf("A's g:1 LastSeq = %d, want 2", c.LastSeq)
		}
		if m := getMember(t, s, "A", "g:1", "bob"); m.ReadSeq != 2 {
			t.Errorf("A's bob ReadSeq = %d, want 2 (capped at A's LastSeq)", m.ReadSeq)
		}
		afterB := takeSnapshot(t, s, "B", append(convs, "d:cd"), users)
		if diff := beforeB.diff(afterB); diff != "" {
			t.Errorf("calls for app A changed app B:\n%s", diff)
		}
	})

	t.Run("SameMessageBothApps", func(t *testing.T) {
		// The message bodies carry the app, so a read of the wrong tenant's
		// row cannot pass for the right one.
		for _, app := range []string{"A", "B"} {
			for _, m := range messagesAfter(t, s, app, "g:1", 0, 100) {
				if m.App != app || !bytes.HasPrefix(m.Body, []byte(`{"text":"`+app+"/")) {
					t.Errorf("%s's g:1 holds %s", app, fmtMessage(m))
				}
			}
		}
	})
}
