package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate/internal/store"
)

// TestConcurrentWriters runs two Stores on one schema, as two Floodgate
// nodes with their own pools and committers, each with 16 goroutines
// appending to the same three conversations. Every goroutine moves to the
// next conversation at each append, so each node's batches hold all three
// conversations, in queue orders that differ from batch to batch and node
// to node: batches of the two nodes lock overlapping sets of conversations
// at the same time. Every fourth append is one of a duplicate set: the same
// (sender, client id) sent by two goroutines of each node at once.
//
// Afterwards every conversation holds exactly seqs 1..N, N == LastSeq;
// every new message got its own seq and every duplicate the original's;
// what is stored is what was acknowledged; and read cursors are at each
// sender's last message.
func TestConcurrentWriters(t *testing.T) {
	schema := newSchema(t)
	const (
		workers   = 16
		perWorker = 24
	)
	convs := []string{"g:0", "g:1", "g:2"}

	var (
		mu      sync.Mutex
		batches [2][]int
	)
	var nodes [2]*Store
	for n := range nodes {
		nodes[n] = openTest(t, schema, Options{OnCommit: func(size int, _ time.Duration) {
			mu.Lock()
			batches[n] = append(batches[n], size)
			mu.Unlock()
		}})
	}
	ctx := t.Context()
	var senders []string
	for n := range nodes {
		for w := range workers {
			senders = append(senders, sender(n, w))
		}
	}
	for k := range workers / 2 {
		senders = append(senders, twin(k))
	}
	if err := nodes[0].CreateApp(ctx, store.App{ID: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	for i, id := range convs {
		// Created through either node: both see the same database.
		if _, err := nodes[i%2].CreateConversation(ctx, store.Conversation{App: "a", ID: id, Kind: store.KindGroup}, senders); err != nil {
			t.Fatal(err)
		}
	}

	type call struct {
		node, worker int
		in           store.NewMessage
		out          store.Appended
		err          error
	}
	results := make([][]call, 2*workers)
	var wg sync.WaitGroup
	for n, s := range nodes {
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					m := store.NewMessage{App: "a", Conv: convs[(w+i)%3], Sender: sender(n, w),
						ClientMsgID: fmt.Sprintf("%s-%d", sender(n, w), i)}
					if i%4 == 0 {
						// Workers w and w+8 of both nodes send this one.
						k := w % (workers / 2)
						m.Conv, m.Sender, m.ClientMsgID = convs[(k+i)%3], twin(k), fmt.Sprintf("dup-%d", i)
					}
					m.Body = fmt.Appendf(nil, `{"node":%d,"worker":%d,"i":%d}`, n, w, i)
					out, err := s.AppendMessage(ctx, m)
					results[n*workers+w] = append(results[n*workers+w], call{n, w, m, out, err})
				}
			})
		}
	}
	wg.Wait()

	bySeq := map[string]map[uint64]call{} // conv → seq → the append that wrote it
	byKey := map[string][]call{}          // conv/sender/client id → every append of it
	cursors := map[string]uint64{}        // conv/sender → highest new seq
	for _, calls := range results {
		last := map[string]uint64{}
		for _, c := range calls {
			if c.err != nil {
				t.Fatalf("node %d worker %d: AppendMessage(%+v): %v", c.node, c.worker, c.in, c.err)
			}
			if c.out.App != "a" || c.out.Conv != c.in.Conv || c.out.Sender != c.in.Sender || c.out.ClientMsgID != c.in.ClientMsgID {
				t.Errorf("AppendMessage(%+v) answered for another message: %+v", c.in, c.out.Message)
			}
			key := c.in.Conv + "/" + c.in.Sender + "/" + c.in.ClientMsgID
			byKey[key] = append(byKey[key], c)
			if c.out.Duplicate {
				continue // its seq is the original's, which may be older
			}
			// A goroutine waits for each ack before its next append, so the
			// seqs of its new messages in one conversation increase.
			if c.out.Seq <= last[c.in.Conv] {
				t.Errorf("node %d worker %d: %s seq %d acknowledged after seq %d", c.node, c.worker, c.in.Conv, c.out.Seq, last[c.in.Conv])
			}
			last[c.in.Conv] = c.out.Seq
			if bySeq[c.in.Conv] == nil {
				bySeq[c.in.Conv] = map[uint64]call{}
			}
			if prev, ok := bySeq[c.in.Conv][c.out.Seq]; ok {
				t.Errorf("%s seq %d given to two messages: %+v and %+v", c.in.Conv, c.out.Seq, prev.in, c.in)
			}
			bySeq[c.in.Conv][c.out.Seq] = c
			cursors[c.in.Conv+"/"+c.in.Sender] = max(cursors[c.in.Conv+"/"+c.in.Sender], c.out.Seq)
		}
	}

	dupSets := 0
	for key, calls := range byKey {
		originals := 0
		for _, c := range calls {
			if !c.out.Duplicate {
				originals++
			}
			a, b := c.out.Message, calls[0].out.Message
			if a.Seq != b.Seq || !a.At.Equal(b.At) || !bytes.Equal(a.Body, b.Body) {
				t.Errorf("%s: acknowledged as %+v and as %+v", key, a, b)
			}
		}
		if originals != 1 {
			t.Errorf("%s: sent %d times, %d of them written; want exactly 1", key, len(calls), originals)
		}
		if len(calls) > 1 {
			dupSets++
		}
	}
	if want := perWorker / 4 * workers / 2; dupSets != want {
		t.Errorf("%d client ids sent more than once, want %d", dupSets, want)
	}

	for _, id := range convs {
		n := uint64(len(bySeq[id]))
		for seq := uint64(1); seq <= n; seq++ {
			if _, ok := bySeq[id][seq]; !ok {
				t.Errorf("%s: seq %d missing among %d new messages: a gap", id, seq, n)
			}
		}
		for i, s := range nodes {
			c, err := s.Conversation(ctx, "a", id)
			if err != nil || c.LastSeq != n {
				t.Errorf("node %d: %s = %+v, %v; want LastSeq %d", i, id, c, err, n)
			}
		}
		stored, err := nodes[1].MessagesAfter(ctx, "a", id, 0, int(n)+10)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(stored)) != n {
			t.Errorf("%s: %d messages stored, want %d", id, len(stored), n)
		}
		for i, m := range stored {
			c, ok := bySeq[id][m.Seq]
			if m.Seq != uint64(i+1) || !ok {
				t.Errorf("%s: stored message #%d has seq %d", id, i, m.Seq)
				continue
			}
			if m.Sender != c.in.Sender || m.ClientMsgID != c.in.ClientMsgID || !bytes.Equal(m.Body, c.in.Body) || !m.At.Equal(c.out.At) {
				t.Errorf("%s: stored %+v, acknowledged %+v for %+v", id, m, c.out.Message, c.in)
			}
		}
		for _, u := range senders {
			m, err := nodes[0].Member(ctx, "a", id, u)
			if err != nil || m.ReadSeq != cursors[id+"/"+u] {
				t.Errorf("%s: %s's cursor = %+v, %v; want %d, the seq of its last message", id, u, m, err, cursors[id+"/"+u])
			}
		}
	}

	// Batches lock in one order and look up duplicates under their locks,
	// so nothing can make one fail and be retried: a retry here is a
	// deadlock (or a conflict) that the design should have ruled out.
	for n, s := range nodes {
		if r := s.retries.Load(); r != 0 {
			t.Errorf("node %d retried %d batches", n, r)
		}
	}
	// Not a requirement (batches form by themselves), but the log tells
	// whether the run exercised what it is meant to.
	mu.Lock()
	defer mu.Unlock()
	for n, sizes := range batches {
		big := 0
		for _, s := range sizes {
			big = max(big, s)
		}
		t.Logf("node %d: %d commits, largest batch %d", n, len(sizes), big)
	}
}

func sender(node, worker int) string { return fmt.Sprintf("n%d-w%d", node, worker) }
func twin(k int) string              { return fmt.Sprintf("twin%d", k) }

// TestBatchesLockInOneOrder makes two nodes' batches cover the same three
// conversations in opposite queue orders at the same time, which would
// deadlock if each batch locked its conversations in queue order:
//
//	node A queues g:3, g:2, g:1; node B queues g:1, g:2, g:3.
//
// An outside transaction holds g:2. A's batch starts first: locking in
// (app, id) order, it takes g:1 and waits for g:2, and has not touched
// g:3. Then B's batch starts and waits for g:1, held by A. The outside
// transaction ends; A takes g:2 and g:3 and commits; B follows. A
// queue-order committer would instead have A holding g:3 and B holding g:1
// when g:2 frees, a cycle PostgreSQL breaks by aborting one of them
// (40P01), which the committer would retry: so the test also wants no
// retry. Every wait is for an observable state (a queue length, a session
// waiting on a lock), never for time.
func TestBatchesLockInOneOrder(t *testing.T) {
	schema := newSchema(t)
	a := newGatedStore(t, schema, Options{URL: withAppName(t, "fg-test-node-a")})
	b := newGatedStore(t, schema, Options{URL: withAppName(t, "fg-test-node-b")})
	a.hold(t)
	b.hold(t)
	msgs := func(node string, convs ...string) []store.NewMessage {
		var out []store.NewMessage
		for _, c := range convs {
			out = append(out, store.NewMessage{App: "a", Conv: c, Sender: "alice", ClientMsgID: node + c, Body: []byte(`"` + node + `"`)})
		}
		return out
	}
	waitA := appendInOrder(t, a, msgs("A", "g:3", "g:2", "g:1"))
	waitB := appendInOrder(t, b, msgs("B", "g:1", "g:2", "g:3"))

	raw := rawPool(t, schema)
	blocker, err := raw.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(t.Context())
	if _, err := blocker.Exec(t.Context(), `SELECT 1 FROM conversations WHERE app_id = 'a' AND id = 'g:2' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	a.open()
	waitForLockWait(t, raw, "fg-test-node-a")
	if !rowLocked(t, raw, "g:1") {
		t.Error("node A waits for g:2 without holding g:1: conversations are not locked in id order")
	}
	if rowLocked(t, raw, "g:3") {
		t.Error("node A holds g:3 while waiting for g:2: conversations are not locked in id order")
	}
	b.open()
	waitForLockWait(t, raw, "fg-test-node-b")
	if err := blocker.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}

	seqs := map[string][]uint64{}
	for _, r := range append(waitA(), waitB()...) {
		if r.err != nil {
			t.Errorf("append %+v: %v", r.m, r.err)
			continue
		}
		seqs[r.m.Conv] = append(seqs[r.m.Conv], r.a.Seq)
	}
	for _, c := range []string{"g:1", "g:2", "g:3"} {
		// A's batch committed first: it got seq 1 everywhere.
		if got := seqs[c]; len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Errorf("%s: nodes A and B got seqs %v, want [1 2]", c, got)
		}
	}
	if n := a.retries.Load() + b.retries.Load(); n != 0 {
		t.Errorf("%d batch retries: the batches conflicted (a deadlock?)", n)
	}
}

// waitForLockWait waits until a session of application appName waits for
// a lock.
func waitForLockWait(t *testing.T, raw *pgxpool.Pool, appName string) {
	t.Helper()
	for {
		var n int
		if err := raw.QueryRow(t.Context(), `SELECT COUNT(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, appName).Scan(&n); err != nil {
			t.Fatalf("waiting for %s to wait for a lock: %v", appName, err)
		}
		if n > 0 {
			return
		}
	}
}

// rowLocked reports whether another transaction holds a lock on
// conversation a/id, by trying to take it without waiting (and letting it
// go at once if it could).
func rowLocked(t *testing.T, raw *pgxpool.Pool, id string) bool {
	t.Helper()
	tx, err := raw.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	_, err = tx.Exec(t.Context(), `SELECT 1 FROM conversations WHERE app_id = 'a' AND id = $1 FOR UPDATE NOWAIT`, id)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe) && pe.Code == "55P03": // lock_not_available
		return true
	}
	t.Fatalf("probing the lock on %s: %v", id, err)
	return false
}
