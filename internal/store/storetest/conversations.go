package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

func testCreateConversation(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createApp(t, s, "b")
	created := time.Date(2024, 1, 2, 3, 4, 5, 678900000, time.UTC)

	t.Run("Group", func(t *testing.T) {
		in := store.Conversation{App: "a", ID: "g:1", Kind: store.KindGroup, Name: "Climbing", Creator: "alice", CreatedAt: created}
		c, err := s.CreateConversation(ctx, in, []string{"carol", "alice", "bob", "alice"})
		if err != nil {
			t.Fatalf("CreateConversation: %v", err)
		}
		check := func(what string, c store.Conversation) {
			t.Helper()
			if c.App != "a" || c.ID != "g:1" || c.Kind != store.KindGroup || c.Name != "Climbing" ||
				c.Creator != "alice" || !sameTime(c.CreatedAt, created) || c.LastSeq != 0 || !sameTime(c.LastAt, created) {
				t.Errorf("%s = %+v, want %+v with LastAt = CreatedAt", what, c, in)
			}
		}
		check("returned", c)
		check("stored", getConv(t, s, "a", "g:1"))
		if n, err := s.MemberCount(ctx, "a", "g:1"); err != nil || n != 3 {
			t.Errorf("MemberCount = %d, %v; want 3 (duplicates stored once)", n, err)
		}
		for _, u := range []string{"alice", "bob", "carol"} {
			if m := getMember(t, s, "a", "g:1", u); m != (store.Member{User: u}) {
				t.Errorf("Member(%s) = %+v, want joined and read at 0", u, m)
			}
		}
	})

	t.Run("Room", func(t *testing.T) {
		c, err := s.CreateConversation(ctx, store.Conversation{App: "a", ID: "r:1", Kind: store.KindRoom, Name: "Lobby"}, []string{"alice", "bob"})
		if err != nil {
			t.Fatalf("CreateConversation(room): %v", err)
		}
		if c.Kind != store.KindRoom || c.Name != "Lobby" || c.CreatedAt.IsZero() || !sameTime(c.LastAt, c.CreatedAt) {
			t.Errorf("room = %+v", c)
		}
		if n, err := s.MemberCount(ctx, "a", "r:1"); err != nil || n != 0 {
			t.Errorf("room MemberCount = %d, %v; want 0: members are ignored for rooms", n, err)
		}
		_, err = s.Member(ctx, "a", "r:1", "alice")
		wantErr(t, "Member(room)", err, store.ErrNotFound)
	})

	t.Run("Conflict", func(t *testing.T) {
		_, err := s.CreateConversation(ctx, store.Conversation{App: "a", ID: "g:1", Kind: store.KindGroup, Name: "other"}, []string{"dave"})
		wantErr(t, "CreateConversation(existing id)", err, store.ErrConflict)
		_, err = s.CreateConversation(ctx, store.Conversation{App: "a", ID: "r:1", Kind: store.KindGroup}, nil)
		wantErr(t, "CreateConversation(id of a room)", err, store.ErrConflict)
		if c := getConv(t, s, "a", "g:1"); c.Name != "Climbing" {
			t.Errorf("a conflicting create changed the conversation: %+v", c)
		}
		if _, err := s.Member(ctx, "a", "g:1", "dave"); err == nil {
			t.Errorf("a conflicting create added its members")
		}
	})

	t.Run("SameIDInOtherApp", func(t *testing.T) {
		c, err := s.CreateConversation(ctx, store.Conversation{App: "b", ID: "g:1", Kind: store.KindGroup, Name: "B's"}, []string{"dave"})
		if err != nil {
			t.Fatalf("CreateConversation(same id, other app): %v", err)
		}
		if c.App != "b" || c.Name != "B's" {
			t.Errorf("got %+v", c)
		}
		if a := getConv(t, s, "a", "g:1"); a.Name != "Climbing" {
			t.Errorf("app a's conversation changed: %+v", a)
		}
	})

	t.Run("MissingApp", func(t *testing.T) {
		_, err := s.CreateConversation(ctx, store.Conversation{App: "nope", ID: "g:1", Kind: store.KindGroup}, []string{"alice"})
		wantErr(t, "CreateConversation(missing app)", err, store.ErrNotFound)
	})

	t.Run("BadKind", func(t *testing.T) {
		for _, kind := range []string{store.KindDirect, "", "channel"} {
			_, err := s.CreateConversation(ctx, store.Conversation{App: "a", ID: "x:" + kind, Kind: kind}, []string{"alice", "bob"})
			wantMisuse(t, fmt.Sprintf("CreateConversation(kind %q)", kind), err)
			_, err = s.Conversation(ctx, "a", "x:"+kind)
			wantErr(t, "Conversation(rejected)", err, store.ErrNotFound)
		}
	})

	t.Run("ConversationNotFound", func(t *testing.T) {
		_, err := s.Conversation(ctx, "a", "g:missing")
		wantErr(t, "Conversation(missing)", err, store.ErrNotFound)
		_, err = s.Conversation(ctx, "nope", "g:1")
		wantErr(t, "Conversation(missing app)", err, store.ErrNotFound)
	})
}

func testEnsureDirect(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")

	t.Run("CreateThenReturn", func(t *testing.T) {
		c, err := s.EnsureDirect(ctx, "a", "d:ab", "alice", "bob")
		if err != nil {
			t.Fatalf("EnsureDirect: %v", err)
		}
		if c.App != "a" || c.ID != "d:ab" || c.Kind != store.KindDirect || c.LastSeq != 0 ||
			c.CreatedAt.IsZero() || !sameTime(c.LastAt, c.CreatedAt) {
			t.Errorf("EnsureDirect = %+v", c)
		}
		appendMsg(t, s, "a", "d:ab", "alice", "")
		// Either user may ask, in either order.
		for _, pair := range [][2]string{{"alice", "bob"}, {"bob", "alice"}} {
			again, err := s.EnsureDirect(ctx, "a", "d:ab", pair[0], pair[1])
			if err != nil {
				t.Fatalf("EnsureDirect again: %v", err)
			}
			if again.ID != c.ID || again.Kind != store.KindDirect || !sameTime(again.CreatedAt, c.CreatedAt) || again.LastSeq != 1 {
				t.Errorf("EnsureDirect(%v) again = %+v, want the existing conversation with LastSeq 1", pair, again)
			}
		}
		members, err := s.Members(ctx, "a", "d:ab", 10)
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		want := []store.Member{{User: "alice", ReadSeq: 1}, {User: "bob"}}
		if !slices.Equal(members, want) {
			t.Errorf("Members = %+v, want %+v", members, want)
		}
	})

	t.Run("Race", func(t *testing.T) {
		const n = 32
		var wg sync.WaitGroup
		results := make([]store.Conversation, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				a, b := "carol", "dave"
				if i%2 == 1 {
					a, b = b, a
				}
				results[i], errs[i] = s.EnsureDirect(ctx, "a", "d:cd", a, b)
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("EnsureDirect #%d: %v", i, errs[i])
			}
			if results[i].ID != "d:cd" || !sameTime(results[i].CreatedAt, results[0].CreatedAt) {
				t.Errorf("EnsureDirect #%d = %+v, want the same conversation as #0 %+v", i, results[i], results[0])
			}
		}
		members, err := s.Members(ctx, "a", "d:cd", 10)
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		if want := []store.Member{{User: "carol"}, {User: "dave"}}; !slices.Equal(members, want) {
			t.Errorf("Members after the race = %+v, want %+v", members, want)
		}
		for _, u := range []string{"carol", "dave"} {
			states, err := s.UserConversations(ctx, "a", u, 10)
			if err != nil || len(states) != 1 || states[0].ID != "d:cd" {
				t.Errorf("UserConversations(%s) = %+v, %v; want exactly d:cd", u, states, err)
			}
		}
	})

	t.Run("IDTaken", func(t *testing.T) {
		createGroup(t, s, "a", "d:group", "alice", "bob")
		_, err := s.EnsureDirect(ctx, "a", "d:group", "alice", "bob")
		wantErr(t, "EnsureDirect(id of a group)", err, store.ErrConflict)
		_, err = s.EnsureDirect(ctx, "a", "d:ab", "alice", "carol")
		wantErr(t, "EnsureDirect(id of another pair)", err, store.ErrConflict)
	})

	t.Run("Misuse", func(t *testing.T) {
		_, err := s.EnsureDirect(ctx, "nope", "d:ab", "alice", "bob")
		wantErr(t, "EnsureDirect(missing app)", err, store.ErrNotFound)
		_, err = s.EnsureDirect(ctx, "a", "d:aa", "alice", "alice")
		wantMisuse(t, "EnsureDirect(a == b)", err)
		_, err = s.Conversation(ctx, "a", "d:aa")
		wantErr(t, "Conversation(rejected direct)", err, store.ErrNotFound)
	})
}

func testMembers(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	users := []string{"u5", "u3", "u1", "u4", "u2"}
	createGroup(t, s, "a", "g:1", users...)
	createConv(t, s, "a", "r:1", store.KindRoom)

	all, err := s.Members(ctx, "a", "g:1", 100)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	var got []string
	for _, m := range all {
		got = append(got, m.User)
	}
	if want := []string{"u1", "u2", "u3", "u4", "u5"}; !slices.Equal(got, want) {
		t.Errorf("Members = %v, want %v (ordered by user id)", got, want)
	}
	if few, err := s.Members(ctx, "a", "g:1", 2); err != nil || len(few) != 2 || few[0].User != "u1" || few[1].User != "u2" {
		t.Errorf("Members(limit 2) = %+v, %v; want u1, u2", few, err)
	}
	if none, err := s.Members(ctx, "a", "g:1", 0); err != nil || len(none) != 0 {
		t.Errorf("Members(limit 0) = %+v, %v; want none", none, err)
	}
	if n, err := s.MemberCount(ctx, "a", "g:1"); err != nil || n != 5 {
		t.Errorf("MemberCount = %d, %v; want 5", n, err)
	}
	if m, err := s.Members(ctx, "a", "r:1", 10); err != nil || len(m) != 0 {
		t.Errorf("Members(room) = %+v, %v; want none", m, err)
	}

	_, err = s.Member(ctx, "a", "g:1", "stranger")
	wantErr(t, "Member(non-member)", err, store.ErrNotFound)
	_, err = s.Member(ctx, "a", "g:missing", "u1")
	wantErr(t, "Member(missing conversation)", err, store.ErrNotFound)
	_, err = s.Members(ctx, "a", "g:missing", 10)
	wantErr(t, "Members(missing conversation)", err, store.ErrNotFound)
	_, err = s.MemberCount(ctx, "a", "g:missing")
	wantErr(t, "MemberCount(missing conversation)", err, store.ErrNotFound)

	c, ids, err := s.ConversationMembers(ctx, "a", "g:1", 100)
	if err != nil || c.ID != "g:1" || c.Kind != store.KindGroup || !slices.Equal(ids, []string{"u1", "u2", "u3", "u4", "u5"}) {
		t.Errorf("ConversationMembers = %+v, %v, %v; want g:1 with u1..u5 in order", c, ids, err)
	}
	if want, err := s.Conversation(ctx, "a", "g:1"); err != nil || !c.CreatedAt.Equal(want.CreatedAt) || c.LastSeq != want.LastSeq {
		t.Errorf("ConversationMembers' conversation %+v differs from Conversation's %+v (%v)", c, want, err)
	}
	if _, ids, err := s.ConversationMembers(ctx, "a", "g:1", 2); err != nil || !slices.Equal(ids, []string{"u1", "u2"}) {
		t.Errorf("ConversationMembers(limit 2) = %v, %v; want u1, u2", ids, err)
	}
	if c, ids, err := s.ConversationMembers(ctx, "a", "r:1", 10); err != nil || c.Kind != store.KindRoom || len(ids) != 0 {
		t.Errorf("ConversationMembers(room) = %+v, %v, %v; want the room, no members", c, ids, err)
	}
	_, _, err = s.ConversationMembers(ctx, "a", "g:missing", 10)
	wantErr(t, "ConversationMembers(missing conversation)", err, store.ErrNotFound)
	_, _, err = s.ConversationMembers(ctx, "b", "g:1", 10)
	wantErr(t, "ConversationMembers(another app)", err, store.ErrNotFound)
}

func testAddRemoveMembers(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice", "bob")
	appendN(t, s, "a", "g:1", "alice", 3)

	added, err := s.AddMembers(ctx, "a", "g:1", []string{"carol", "alice", "dave", "carol"})
	if err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	if want := []string{"carol", "dave"}; !slices.Equal(added, want) {
		t.Errorf("AddMembers = %v, want %v (existing members skipped, repeats once)", added, want)
	}
	for _, u := range []string{"carol", "dave"} {
		if m := getMember(t, s, "a", "g:1", u); m != (store.Member{User: u, JoinedSeq: 3, ReadSeq: 3}) {
			t.Errorf("new member %s = %+v, want joined and read at 3", u, m)
		}
	}
	if m := getMember(t, s, "a", "g:1", "alice"); m != (store.Member{User: "alice", JoinedSeq: 0, ReadSeq: 3}) {
		t.Errorf("existing member alice = %+v, want unchanged (joined 0, read 3)", m)
	}
	if n, _ := s.MemberCount(ctx, "a", "g:1"); n != 4 {
		t.Errorf("MemberCount = %d, want 4", n)
	}
	if again, err := s.AddMembers(ctx, "a", "g:1", []string{"alice", "carol"}); err != nil || len(again) != 0 {
		t.Errorf("AddMembers(all existing) = %v, %v; want none added", again, err)
	}

	removed, err := s.RemoveMembers(ctx, "a", "g:1", []string{"bob", "stranger", "bob", "carol"})
	if err != nil {
		t.Fatalf("RemoveMembers: %v", err)
	}
	if want := []string{"bob", "carol"}; !slices.Equal(removed, want) {
		t.Errorf("RemoveMembers = %v, want %v (only those actually removed)", removed, want)
	}
	for _, u := range []string{"bob", "carol"} {
		_, err := s.Member(ctx, "a", "g:1", u)
		wantErr(t, "Member(removed "+u+")", err, store.ErrNotFound)
		if states, _ := s.UserConversations(ctx, "a", u, 10); len(states) != 0 {
			t.Errorf("UserConversations(removed %s) = %+v, want none", u, states)
		}
	}
	if n, _ := s.MemberCount(ctx, "a", "g:1"); n != 2 {
		t.Errorf("MemberCount after removal = %d, want 2", n)
	}

	// Rejoining starts from the current seq again.
	appendN(t, s, "a", "g:1", "alice", 2)
	if added, err := s.AddMembers(ctx, "a", "g:1", []string{"bob"}); err != nil || !slices.Equal(added, []string{"bob"}) {
		t.Fatalf("AddMembers(bob again) = %v, %v", added, err)
	}
	if m := getMember(t, s, "a", "g:1", "bob"); m.JoinedSeq != 5 || m.ReadSeq != 5 {
		t.Errorf("rejoined bob = %+v, want joined and read at 5", m)
	}

	t.Run("NotAGroup", func(t *testing.T) {
		createConv(t, s, "a", "r:1", store.KindRoom)
		if _, err := s.EnsureDirect(ctx, "a", "d:ab", "alice", "bob"); err != nil {
			t.Fatalf("EnsureDirect: %v", err)
		}
		for _, id := range []string{"r:1", "d:ab"} {
			_, err := s.AddMembers(ctx, "a", id, []string{"zed"})
			wantMisuse(t, "AddMembers("+id+")", err)
			_, err = s.RemoveMembers(ctx, "a", id, []string{"alice"})
			wantMisuse(t, "RemoveMembers("+id+")", err)
		}
		if n, _ := s.MemberCount(ctx, "a", "d:ab"); n != 2 {
			t.Errorf("direct MemberCount = %d, want 2", n)
		}
		if n, _ := s.MemberCount(ctx, "a", "r:1"); n != 0 {
			t.Errorf("room MemberCount = %d, want 0", n)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		_, err := s.AddMembers(ctx, "a", "g:missing", []string{"zed"})
		wantErr(t, "AddMembers(missing)", err, store.ErrNotFound)
		_, err = s.RemoveMembers(ctx, "a", "g:missing", []string{"zed"})
		wantErr(t, "RemoveMembers(missing)", err, store.ErrNotFound)
	})
}
