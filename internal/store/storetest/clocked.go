package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// fakeClock is a settable clock for RunClocked's stores, safe for concurrent
// use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the time last set.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set makes Now return t.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// RunClocked runs the tests that control time: open must return a new,
// empty store that reads the time only from now (for message times and
// default creation times). The suite closes every store it opens.
func RunClocked(t *testing.T, open func(t *testing.T, now func() time.Time) store.Store) {
	// The fraction of a millisecond checks that the store truncates.
	base := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	o := func(t *testing.T) (store.Store, *fakeClock) {
		c := &fakeClock{now: base}
		return opened(t, open(t, c.Now)), c
	}
	t.Run("Times", func(t *testing.T) { testClockTimes(t, o, base) })
	t.Run("ListOrder", func(t *testing.T) { testClockListOrder(t, o, base) })
	t.Run("SameMillisecond", func(t *testing.T) { testClockSameMillisecond(t, o) })
}

func testClockTimes(t *testing.T, open func(*testing.T) (store.Store, *fakeClock), base time.Time) {
	s, clock := open(t)
	ctx := ctxFor(t)
	want := base.Truncate(time.Millisecond)

	if a := createApp(t, s, "a"); !a.CreatedAt.Equal(want) {
		t.Errorf("app CreatedAt = %v, want now %v", a.CreatedAt, want)
	}
	if c := createGroup(t, s, "a", "g:1", "alice"); !c.CreatedAt.Equal(want) || !c.LastAt.Equal(want) {
		t.Errorf("group CreatedAt/LastAt = %v/%v, want now %v", c.CreatedAt, c.LastAt, want)
	}
	explicit := base.Add(-48 * time.Hour)
	c, err := s.CreateConversation(ctx, store.Conversation{App: "a", ID: "g:old", Kind: store.KindGroup, CreatedAt: explicit}, nil)
	if err != nil || !c.CreatedAt.Equal(explicit.Truncate(time.Millisecond)) {
		t.Errorf("CreateConversation(explicit CreatedAt) = %v, %v; want %v", c.CreatedAt, err, explicit)
	}

	later := base.Add(90 * time.Second)
	clock.Set(later)
	d, err := s.EnsureDirect(ctx, "a", "d:ab", "alice", "bob")
	if err != nil || !d.CreatedAt.Equal(later.Truncate(time.Millisecond)) || !d.LastAt.Equal(d.CreatedAt) {
		t.Errorf("EnsureDirect = %+v, %v; want created now %v", d, err, later)
	}
	a := appendMsg(t, s, "a", "g:1", "alice", "")
	if !a.At.Equal(later.Truncate(time.Millisecond)) {
		t.Errorf("At = %v, want now %v", a.At, later)
	}
	if c := getConv(t, s, "a", "g:1"); !c.LastAt.Equal(a.At) || !c.CreatedAt.Equal(want) {
		t.Errorf("after append: CreatedAt/LastAt %v/%v, want %v/%v", c.CreatedAt, c.LastAt, want, a.At)
	}
	stored := messagesAfter(t, s, "a", "g:1", 0, 1)
	if len(stored) != 1 || !stored[0].At.Equal(a.At) {
		t.Errorf("stored At %v, want %v", stored, a.At)
	}
	// A duplicate reports the original time, not now.
	clock.Set(later.Add(time.Hour))
	first := appendMsg(t, s, "a", "g:1", "alice", "x")
	clock.Set(later.Add(2 * time.Hour))
	if dup := appendMsg(t, s, "a", "g:1", "alice", "x"); !dup.Duplicate || !dup.At.Equal(first.At) {
		t.Errorf("duplicate At = %v, want the original's %v", dup.At, first.At)
	}
}

func testClockListOrder(t *testing.T, open func(*testing.T) (store.Store, *fakeClock), base time.Time) {
	s, clock := open(t)
	createApp(t, s, "a")
	for _, id := range []string{"c1", "c2", "c3", "c4", "c5"} {
		createGroup(t, s, "a", id, "u")
	}
	for i, id := range []string{"c3", "c1", "c5"} {
		clock.Set(base.Add(time.Duration(i+1) * time.Minute))
		appendMsg(t, s, "a", id, "u", "")
	}
	pages := func(limit int) [][]string {
		var out [][]string
		cursor := store.ListCursor{}
		for range 10 {
			got, err := s.ListConversations(ctxFor(t), "a", "u", cursor, limit)
			if err != nil {
				t.Fatalf("ListConversations: %v", err)
			}
			if len(got) == 0 {
				break
			}
			var ids []string
			for _, sum := range got {
				ids = append(ids, sum.Conversation.ID)
			}
			out = append(out, ids)
			last := got[len(got)-1].Conversation
			cursor = store.ListCursor{LastAt: last.LastAt, ID: last.ID}
		}
		return out
	}
	// c2 and c4 share LastAt (their creation): id breaks the tie.
	if got, want := pages(2), [][]string{{"c5", "c1"}, {"c3", "c2"}, {"c4"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	clock.Set(base.Add(time.Hour))
	appendMsg(t, s, "a", "c4", "u", "")
	if got, want := pages(10), [][]string{{"c4", "c5", "c1", "c3", "c2"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after c4 got a message: %v, want %v", got, want)
	}
	if got, want := pages(1), [][]string{{"c4"}, {"c5"}, {"c1"}, {"c3"}, {"c2"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("one per page: %v, want %v", got, want)
	}
}

func testClockSameMillisecond(t *testing.T, open func(*testing.T) (store.Store, *fakeClock)) {
	s, _ := open(t)
	createApp(t, s, "a")
	var want []string
	for i := range 10 {
		id := fmt.Sprintf("g:%d", 9-i)
		createGroup(t, s, "a", id, "u")
		appendMsg(t, s, "a", id, "u", "")
		want = append(want, id)
	}
	slices.Sort(want)
	var got []string
	cursor := store.ListCursor{}
	for range 10 {
		page, err := s.ListConversations(ctxFor(t), "a", "u", cursor, 3)
		if err != nil {
			t.Fatalf("ListConversations: %v", err)
		}
		for _, sum := range page {
			got = append(got, sum.Conversation.ID)
		}
		if len(page) < 3 {
			break
		}
		last := page[len(page)-1].Conversation
		cursor = store.ListCursor{LastAt: last.LastAt, ID: last.ID}
	}
	if !slices.Equal(got, want) {
		t.Errorf("conversations active in the same millisecond: %v, want %v (by id)", got, want)
	}
}
