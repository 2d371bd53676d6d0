package postgres

import (
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
	s := openTest(t, newSchema(t), Options{MaxConns: userConvReaders})
	ctx := t.Context()
	if err := s.CreateApp(ctx, store.App{ID: "a1", Name: "one", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
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
	baseQueued, base := s.userConvQueued.Load(), s.userConvStatements.Load()

	// Hold every connection, so that the readers wait with one read each
	// and the others queue.
	var held []*pgxpool.Conn
	for range userConvReaders {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	got := make([][]store.ConvState, users)
	errs := make([]error, users)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			got[i], errs[i] = s.UserConversations(ctx, "a1", fmt.Sprint("u", i), 1+i%3)
		})
	}
	for deadline := time.Now().Add(time.Minute); s.userConvQueued.Load()-baseQueued < users; {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads queued, want %d", s.userConvQueued.Load()-baseQueued, users)
		}
		time.Sleep(time.Millisecond)
	}
	for _, c := range held {
		c.Release()
	}
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
	if n := s.userConvStatements.Load() - base; n > users/4 {
		t.Fatalf("%d reads took %d statements: not coalesced", users, n)
	}
}
