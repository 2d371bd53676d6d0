package postgres

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reads of users' conversations made while the readers are busy share
// statements, and each caller still gets exactly its own user's
// conversations, in id order, up to its own limit.
func TestUserConversationsCoalesce(t *testing.T) {
	s, ctx := openCoalesceTest(t), t.Context()
	const users = 200
	// User i is in groups i%7 .. i%7+2 (of 10), and a room none reads.
	want := make([][]string, users)
	members := map[string][]string{}
	for i := range users {
		for g := i % 7; g < i%7+3; g++ {
			id := fmt.Sprintf("g%02d", g)
			members[id] = append(members[id], fmt.Sprint("u", i))
			want[i] = append(want[i], id)
		}
	}
	for id, ms := range members {
		if _, err := s.CreateConversation(ctx, store.Conversation{App: "a1", ID: id, Kind: store.KindGroup, Creator: ms[0]}, ms); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateConversation(ctx, store.Conversation{App: "a1", ID: "r1", Kind: store.KindRoom, Creator: "u0"}, nil); err != nil {
		t.Fatal(err)
	}
	baseQueued, base := s.userConvs.queued.Load()+s.userConvs.direct.Load(), s.userConvs.statements.Load()
	release := holdPool(t, s)
	got := make([][]store.ConvState, users)
	errs := make([]error, users)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			got[i], errs[i] = s.UserConversations(ctx, "a1", fmt.Sprint("u", i), 1+i%3)
		})
	}
	waitQueued(t, s.userConvs, baseQueued+users)
	release()
	wg.Wait()

	for i := range users {
		if errs[i] != nil {
			t.Fatalf("u%d: %v", i, errs[i])
		}
		var ids []string
		for _, st := range got[i] {
			if !st.Member || st.Kind != store.KindGroup {
				t.Fatalf("u%d: %+v, want a group the user is a member of", i, st)
			}
			ids = append(ids, st.ID)
		}
		if w := want[i][:1+i%3]; !slices.Equal(ids, w) {
			t.Fatalf("u%d (limit %d): %v, want %v", i, 1+i%3, ids, w)
		}
	}
	// The readers' first batches (which waited for a connection), then
	// the rest in batches: far fewer statements than reads.
	if n := s.userConvs.statements.Load() - base; n > users/4 {
		t.Fatalf("%d reads took %d statements: not coalesced", users, n)
	}
}

// Reads of conversations with their members made while the readers are
// busy share statements, and each caller gets its own conversation with
// its own limit of members in id order, or store.ErrNotFound.
func TestConversationMembersCoalesce(t *testing.T) {
	s, ctx := openCoalesceTest(t), t.Context()
	// Group gN has members u0 … uN (u10 sorts before u2 by id).
	const groups = 12
	members := make([][]string, groups)
	for g := range groups {
		for u := range g + 1 {
			members[g] = append(members[g], fmt.Sprint("u", u))
		}
		if _, err := s.CreateConversation(ctx, store.Conversation{App: "a1", ID: fmt.Sprint("g", g), Kind: store.KindGroup, Creator: "u0"}, members[g]); err != nil {
			t.Fatal(err)
		}
		slices.Sort(members[g])
	}
	baseQueued, base := s.convMembers.queued.Load()+s.convMembers.direct.Load(), s.convMembers.statements.Load()
	release := holdPool(t, s)

	const reads = 200
	type result struct {
		c   store.Conversation
		ms  []string
		err error
	}
	got := make([]result, reads)
	var wg sync.WaitGroup
	for i := range reads {
		wg.Go(func() {
			id := fmt.Sprint("g", i%(groups+1)) // g12 does not exist
			c, ms, err := s.ConversationMembers(ctx, "a1", id, 1+i%5)
			got[i] = result{c, ms, err}
		})
	}
	waitQueued(t, s.convMembers, baseQueued+reads)
	release()
	wg.Wait()

	for i, r := range got {
		g := i % (groups + 1)
		if g == groups {
			if !errors.Is(r.err, store.ErrNotFound) || r.c.ID != "" || r.ms != nil {
				t.Fatalf("read %d of a missing conversation = %+v %v, %v; want ErrNotFound", i, r.c, r.ms, r.err)
			}
			continue
		}
		if r.err != nil {
			t.Fatalf("read %d: %v", i, r.err)
		}
		want := members[g][:min(len(members[g]), 1+i%5)]
		if r.c.App != "a1" || r.c.ID != fmt.Sprint("g", g) || r.c.Kind != store.KindGroup || r.c.Creator != "u0" || !slices.Equal(r.ms, want) {
			t.Fatalf("read %d (g%d, limit %d) = %+v %v, want its members %v", i, g, 1+i%5, r.c, r.ms, want)
		}
	}
	if n := s.convMembers.statements.Load() - base; n > reads/4 {
		t.Fatalf("%d reads took %d statements: not coalesced", reads, n)
	}
}

// openCoalesceTest opens a store whose main pool has one connection per
// reader of a coalescer, with an app a1.
func openCoalesceTest(t *testing.T) *Store {
	t.Helper()
	s := openTest(t, newSchema(t), Options{MaxConns: coalesceReaders})
	if err := s.CreateApp(t.Context(), store.App{ID: "a1", Name: "one", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	return s
}

// holdPool takes every connection of s's main pool, so that the reads run
// at once and the readers of every coalescer wait with one read each, and
// the others queue. The
// returned func gives the connections back.
func holdPool(t *testing.T, s *Store) (release func()) {
	t.Helper()
	var held []*pgxpool.Conn
	for range s.pool.Config().MaxConns {
		c, err := s.pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	return func() {
		for _, c := range held {
			c.Release()
		}
	}
}

// waitQueued waits until c has taken n reads in all, queued or run at
// once.
func waitQueued[K, R any](t *testing.T, c *coalescer[K, R], n int64) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); c.queued.Load()+c.direct.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads taken, want %d", c.queued.Load()+c.direct.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
