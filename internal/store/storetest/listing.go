package storetest

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/floodgate/floodgate/internal/store"
)

// listFixture gives user "u" of app "a" a mix of conversations, with traps
// that must not be listed: rooms, a group u is not in, and app "b"'s
// conversations of the same ids.
func listFixture(t *testing.T, s store.Store) (want []string) {
	createApp(t, s, "a")
	createApp(t, s, "b")
	for i := range 12 {
		id := fmt.Sprintf("g:%02d", i)
		createGroup(t, s, "a", id, "u", "other")
		createGroup(t, s, "b", id, "u")
		want = append(want, id)
	}
	for i := range 4 {
		id := fmt.Sprintf("d:%d", i)
		if _, err := s.EnsureDirect(ctxFor(t), "a", id, "u", fmt.Sprintf("v%d", i)); err != nil {
			t.Fatalf("EnsureDirect: %v", err)
		}
		want = append(want, id)
	}
	createConv(t, s, "a", "r:0", store.KindRoom, "u")
	createGroup(t, s, "a", "g:not-u", "other")
	createGroup(t, s, "b", "g:only-b", "u")
	for _, id := range []string{"r:0", "g:not-u", "g:03", "d:2", "g:07", "g:03", "g:10"} {
		appendMsg(t, s, "a", id, "other", "")
	}
	appendMsg(t, s, "a", "g:07", "u", "")
	appendMsg(t, s, "b", "g:only-b", "u", "")
	appendN(t, s, "b", "g:01", "u", 3)
	if _, err := s.SetReadSeq(ctxFor(t), "a", "g:03", "u", 1); err != nil {
		t.Fatalf("SetReadSeq: %v", err)
	}
	// Sent last, so g:05 is the most recently active.
	appendMsg(t, s, "a", "g:05", "other", "")
	sort.Strings(want)
	return want
}

func testListConversations(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	wantIDs := listFixture(t, s)

	all, err := s.ListConversations(ctx, "a", "u", store.ListCursor{}, 100)
	if err != nil {
		t.Fatalf("ListConversations: %v", err)
	}
	var ids []string
	for _, sum := range all {
		ids = append(ids, sum.Conversation.ID)
	}
	if got := slices.Sorted(slices.Values(ids)); !slices.Equal(got, wantIDs) {
		t.Fatalf("ListConversations ids = %v, want %v", got, wantIDs)
	}

	t.Run("Order", func(t *testing.T) {
		ordered := slices.IsSortedFunc(all, func(x, y store.Summary) int {
			a, b := x.Conversation, y.Conversation
			if c := b.LastAt.Compare(a.LastAt); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		if !ordered {
			for _, sum := range all {
				t.Logf("%s last_at=%d", sum.Conversation.ID, sum.Conversation.LastAt.UnixMilli())
			}
			t.Errorf("ListConversations is not ordered by LastAt desc, id asc")
		}
		newest := getConv(t, s, "a", "g:05").LastAt
		for _, sum := range all {
			if sum.Conversation.LastAt.After(newest) {
				t.Errorf("%s has LastAt %v after that of the most recently active g:05 (%v)",
					sum.Conversation.ID, sum.Conversation.LastAt, newest)
			}
		}
	})

	t.Run("Entries", func(t *testing.T) {
		for _, sum := range all {
			c := sum.Conversation
			if fresh := getConv(t, s, "a", c.ID); c.ID != fresh.ID || c.App != "a" || c.Kind != fresh.Kind ||
				c.Name != fresh.Name || c.LastSeq != fresh.LastSeq || !sameTime(c.LastAt, fresh.LastAt) || !sameTime(c.CreatedAt, fresh.CreatedAt) {
				t.Errorf("listed %+v, Conversation() says %+v", c, fresh)
			}
			if m := getMember(t, s, "a", c.ID, "u"); sum.ReadSeq != m.ReadSeq {
				t.Errorf("%s: ReadSeq %d, member's is %d", c.ID, sum.ReadSeq, m.ReadSeq)
			}
			if c.LastSeq == 0 {
				if sum.LastMessage != nil {
					t.Errorf("%s: LastMessage %s on an empty conversation", c.ID, fmtMessage(*sum.LastMessage))
				}
				if !sameTime(c.LastAt, c.CreatedAt) {
					t.Errorf("%s: LastAt %v of an empty conversation, want CreatedAt %v", c.ID, c.LastAt, c.CreatedAt)
				}
				continue
			}
			last := messagesBefore(t, s, "a", c.ID, 0, 1)
			if sum.LastMessage == nil || len(last) != 1 || !sameMessage(*sum.LastMessage, last[0]) {
				t.Errorf("%s: LastMessage %v, want %v", c.ID, sum.LastMessage, last)
				continue
			}
			if !sameTime(c.LastAt, last[0].At) || c.LastSeq != last[0].Seq {
				t.Errorf("%s: LastAt/LastSeq %v/%d, newest message's %v/%d", c.ID, c.LastAt, c.LastSeq, last[0].At, last[0].Seq)
			}
		}
		byID := map[string]store.Summary{}
		for _, sum := range all {
			byID[sum.Conversation.ID] = sum
		}
		if g := byID["g:03"]; g.ReadSeq != 1 || g.Conversation.LastSeq != 2 {
			t.Errorf("g:03: read %d of %d, want 1 of 2", g.ReadSeq, g.Conversation.LastSeq)
		}
		if g := byID["g:07"]; g.ReadSeq != 2 || g.LastMessage == nil || g.LastMessage.Sender != "u" {
			t.Errorf("g:07: read %d, last message %v; want read 2 (u sent it)", g.ReadSeq, g.LastMessage)
		}
	})

	t.Run("Paging", func(t *testing.T) {
		for _, limit := range []int{1, 3, 7, 16} {
			var paged []string
			cursor := store.ListCursor{}
			for page := 0; ; page++ {
				if page > len(all)+1 {
					t.Fatalf("limit %d: paging does not end", limit)
				}
				got, err := s.ListConversations(ctx, "a", "u", cursor, limit)
				if err != nil {
					t.Fatalf("ListConversations(limit %d, page %d): %v", limit, page, err)
				}
				if len(got) > limit {
					t.Fatalf("limit %d: got %d entries", limit, len(got))
				}
				for _, sum := range got {
					paged = append(paged, sum.Conversation.ID)
				}
				if len(got) < limit {
					break
				}
				last := got[len(got)-1].Conversation
				cursor = store.ListCursor{LastAt: last.LastAt, ID: last.ID}
			}
			if !slices.Equal(paged, ids) {
				t.Errorf("limit %d: pages give %v, want %v (no duplicates, no misses)", limit, paged, ids)
			}
		}
	})

	t.Run("Edges", func(t *testing.T) {
		if got, err := s.ListConversations(ctx, "a", "u", store.ListCursor{}, 0); err != nil || len(got) != 0 {
			t.Errorf("limit 0 = %d entries, %v; want none", len(got), err)
		}
		last := all[len(all)-1].Conversation
		if got, err := s.ListConversations(ctx, "a", "u", store.ListCursor{LastAt: last.LastAt, ID: last.ID}, 10); err != nil || len(got) != 0 {
			t.Errorf("after the last entry = %d entries, %v; want none", len(got), err)
		}
		if got, err := s.ListConversations(ctx, "a", "nobody", store.ListCursor{}, 10); err != nil || len(got) != 0 {
			t.Errorf("user with no conversations = %d entries, %v; want none", len(got), err)
		}
		b, err := s.ListConversations(ctx, "b", "u", store.ListCursor{}, 100)
		if err != nil || len(b) != 13 {
			t.Errorf("app b: %d entries, %v; want 13", len(b), err)
		}
	})
}

func testUserConversations(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	wantIDs := listFixture(t, s)
	// A member who joins late has a JoinedSeq to report.
	appendN(t, s, "a", "g:09", "other", 4)
	if _, err := s.AddMembers(ctx, "a", "g:not-u", []string{"u"}); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	wantIDs = append(wantIDs, "g:not-u")
	sort.Strings(wantIDs)

	all, err := s.UserConversations(ctx, "a", "u", 100)
	if err != nil {
		t.Fatalf("UserConversations: %v", err)
	}
	var ids []string
	for _, st := range all {
		ids = append(ids, st.ID)
		c := getConv(t, s, "a", st.ID)
		m := getMember(t, s, "a", st.ID, "u")
		want := store.ConvState{ID: c.ID, Kind: c.Kind, LastSeq: c.LastSeq, JoinedSeq: m.JoinedSeq, ReadSeq: m.ReadSeq, Member: true}
		if st != want {
			t.Errorf("state %+v, want %+v", st, want)
		}
	}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("UserConversations ids = %v, want %v (ordered by id, no rooms, no other apps)", ids, wantIDs)
	}
	byID := map[string]store.ConvState{}
	for _, st := range all {
		byID[st.ID] = st
	}
	if st := byID["g:not-u"]; st.JoinedSeq != 1 || st.ReadSeq != 1 || st.LastSeq != 1 {
		t.Errorf("late-joined g:not-u = %+v, want joined/read/last 1", st)
	}
	if st := byID["g:09"]; st.JoinedSeq != 0 || st.ReadSeq != 0 || st.LastSeq != 4 || st.Kind != store.KindGroup {
		t.Errorf("g:09 = %+v, want joined 0, read 0, last 4", st)
	}
	if st := byID["d:2"]; st.Kind != store.KindDirect || st.LastSeq != 1 {
		t.Errorf("d:2 = %+v, want direct with last 1", st)
	}

	few, err := s.UserConversations(ctx, "a", "u", 5)
	if err != nil || len(few) != 5 || !slices.Equal(all[:5], few) {
		t.Errorf("UserConversations(limit 5) = %+v, %v; want the first 5 of %+v", few, err, all)
	}
	if none, err := s.UserConversations(ctx, "a", "u", 0); err != nil || len(none) != 0 {
		t.Errorf("UserConversations(limit 0) = %+v, %v; want none", none, err)
	}
	if none, err := s.UserConversations(ctx, "a", "nobody", 10); err != nil || len(none) != 0 {
		t.Errorf("UserConversations(nobody) = %+v, %v; want none", none, err)
	}
}

func testConvStates(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createApp(t, s, "b")
	createGroup(t, s, "a", "g:1", "u", "v")
	createGroup(t, s, "a", "g:2", "v")
	createConv(t, s, "a", "r:1", store.KindRoom)
	createGroup(t, s, "b", "g:only-b", "u")
	appendN(t, s, "a", "g:1", "v", 3)
	appendN(t, s, "a", "g:2", "v", 2)
	appendN(t, s, "a", "r:1", "u", 5)
	if _, err := s.AddMembers(ctx, "a", "g:2", []string{"u"}); err != nil {
		t.Fatalf("AddMembers: %v", err)
	}
	appendMsg(t, s, "a", "g:2", "v", "")
	if _, err := s.SetReadSeq(ctx, "a", "g:1", "u", 2); err != nil {
		t.Fatalf("SetReadSeq: %v", err)
	}

	ids := []string{"r:1", "g:2", "g:missing", "g:1", "g:only-b", "g:2"}
	got, err := s.ConvStates(ctx, "a", "u", ids)
	if err != nil {
		t.Fatalf("ConvStates: %v", err)
	}
	want := []store.ConvState{
		{ID: "g:1", Kind: store.KindGroup, LastSeq: 3, JoinedSeq: 0, ReadSeq: 2, Member: true},
		{ID: "g:2", Kind: store.KindGroup, LastSeq: 3, JoinedSeq: 2, ReadSeq: 2, Member: true},
		{ID: "r:1", Kind: store.KindRoom, LastSeq: 5},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ConvStates(u) = %+v, want %+v", got, want)
	}

	got, err = s.ConvStates(ctx, "a", "stranger", ids)
	if err != nil {
		t.Fatalf("ConvStates: %v", err)
	}
	want = []store.ConvState{
		{ID: "g:1", Kind: store.KindGroup, LastSeq: 3},
		{ID: "g:2", Kind: store.KindGroup, LastSeq: 3},
		{ID: "r:1", Kind: store.KindRoom, LastSeq: 5},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ConvStates(non-member) = %+v, want %+v", got, want)
	}
	if got, err := s.ConvStates(ctx, "a", "", ids); err != nil || !slices.Equal(got, want) {
		t.Errorf("ConvStates(no user) = %+v, %v; want %+v", got, err, want)
	}
	if got, err := s.ConvStates(ctx, "a", "u", nil); err != nil || len(got) != 0 {
		t.Errorf("ConvStates(no ids) = %+v, %v; want none", got, err)
	}

	// Far more ids than a statement takes parameters in some engines.
	many := make([]string, 0, 40000)
	for i := range cap(many) {
		many = append(many, fmt.Sprintf("g:x%d", i))
	}
	many = append(many, "g:1")
	got, err = s.ConvStates(ctx, "a", "u", many)
	if err != nil || len(got) != 1 || got[0].ID != "g:1" {
		t.Errorf("ConvStates(40001 ids) = %+v, %v; want g:1 only", got, err)
	}
}
