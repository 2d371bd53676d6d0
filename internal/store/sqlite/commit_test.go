package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// gatedStore is a store whose committer can be held: the first OnCommit
// call blocks until release, so appends made meanwhile pile up in the queue
// and the test decides what the next batch holds. No timing is involved:
// the test waits for the queue to reach a length, then releases.
type gatedStore struct {
	*Store
	path    string
	entered chan struct{}
	release chan struct{}

	mu      sync.Mutex
	batches []int
}

func newGatedStore(t *testing.T, o Options) *gatedStore {
	t.Helper()
	g := &gatedStore{
		path:    filepath.Join(t.TempDir(), "db"),
		entered: make(chan struct{}),
		release: make(chan struct{}),
	}
	var once sync.Once
	o.OnCommit = func(n int, _ time.Duration) {
		g.mu.Lock()
		g.batches = append(g.batches, n)
		g.mu.Unlock()
		once.Do(func() {
			close(g.entered)
			<-g.release
		})
	}
	if o.Sync == "" {
		o.Sync = "normal"
	}
	g.Store = openTest(t, g.path, o)
	// Released at the end at the latest, so Close never waits on the gate.
	t.Cleanup(g.open)
	ctx := t.Context()
	if err := g.CreateApp(ctx, store.App{ID: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := g.CreateConversation(ctx, store.Conversation{App: "a", ID: fmt.Sprintf("g:%d", i), Kind: store.KindGroup}, []string{"alice"}); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// hold makes one append and returns once the committer is blocked after
// committing it.
func (g *gatedStore) hold(t *testing.T) {
	t.Helper()
	if _, err := g.AppendMessage(t.Context(), store.NewMessage{App: "a", Conv: "g:0", Body: []byte(`"hold"`)}); err != nil {
		t.Fatalf("AppendMessage: %v", err)
	}
	select {
	case <-g.entered:
	case <-t.Context().Done():
		t.Fatal("committer never called OnCommit")
	}
}

// open releases the committer; it may be called more than once.
func (g *gatedStore) open() {
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

// waitQueued waits until n appends are queued behind the held committer.
func (g *gatedStore) waitQueued(t *testing.T, n int) {
	t.Helper()
	for len(g.queue) < n {
		if t.Context().Err() != nil {
			t.Fatalf("only %d of %d appends queued", len(g.queue), n)
		}
		runtime.Gosched()
	}
}

// sizes returns the batch sizes OnCommit saw. It closes the store first:
// waiters are answered before OnCommit runs, so only a stopped committer
// has reported every batch.
func (g *gatedStore) sizes(t *testing.T) []int {
	t.Helper()
	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches)
}

type result struct {
	m   store.NewMessage
	a   store.Appended
	err error
}

// appendAll starts one goroutine per message and returns a function that
// waits for them and returns their results in the order of msgs.
func appendAll(ctx context.Context, s store.Store, msgs []store.NewMessage) func() []result {
	out := make([]result, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() {
			a, err := s.AppendMessage(ctx, m)
			out[i] = result{m, a, err}
		})
	}
	return func() []result { wg.Wait(); return out }
}

func TestGroupCommitBatches(t *testing.T) {
	g := newGatedStore(t, Options{})
	g.hold(t)

	// 64 appends: most to four conversations, some to a missing one, and
	// pairs sharing a client id, so one batch must handle all three cases.
	var msgs []store.NewMessage
	for i := range 64 {
		m := store.NewMessage{App: "a", Conv: fmt.Sprintf("g:%d", i%4), Sender: fmt.Sprintf("u%d", i%8), Body: []byte(fmt.Sprint(i))}
		switch {
		case i%16 == 15:
			m.Conv = "g:missing"
		case i%8 < 2:
			m.Sender, m.ClientMsgID = "twin", fmt.Sprintf("c%d", i/8)
			m.Conv = "g:1"
		}
		msgs = append(msgs, m)
	}
	wait := appendAll(t.Context(), g, msgs)
	g.waitQueued(t, len(msgs))
	g.open()
	results := wait()

	if got, want := g.sizes(t), []int{1, 64}; !slices.Equal(got, want) {
		t.Fatalf("OnCommit saw batches %v, want %v: the 64 queued appends were not committed together", got, want)
	}
	perConv := map[string][]uint64{}
	dups := map[string]int{}
	for _, r := range results {
		switch {
		case r.m.Conv == "g:missing":
			if !errors.Is(r.err, store.ErrNotFound) {
				t.Errorf("append to a missing conversation: %v, want ErrNotFound", r.err)
			}
		case r.err != nil:
			t.Errorf("append: %v", r.err)
		case r.a.Duplicate:
			dups[r.m.ClientMsgID]++
		default:
			perConv[r.m.Conv] = append(perConv[r.m.Conv], r.a.Seq)
		}
	}
	if len(dups) != 8 {
		t.Errorf("duplicates within the batch: %v, want one for each of 8 client ids", dups)
	}
	for conv, seqs := range perConv {
		slices.Sort(seqs)
		first := uint64(1)
		if conv == "g:0" {
			first = 2 // after the append that held the committer
		}
		for i, seq := range seqs {
			if seq != first+uint64(i) {
				t.Errorf("%s: seqs %v, want %d, %d, … with no gap", conv, seqs, first, first+1)
				break
			}
		}
	}
}

// TestBatchWithStoredDuplicate queues, behind the held committer, one
// batch where an append repeats a client id stored by an earlier batch,
// between new messages of its conversation, next to an in-batch duplicate,
// a missing conversation and 40 appends to one conversation. The stored
// duplicate must be answered from the store and leave no gap in the seqs,
// the counter or the sender's read cursor.
func TestBatchWithStoredDuplicate(t *testing.T) {
	g := newGatedStore(t, Options{})
	ctx := t.Context()
	// The stored message's commit is the one that holds the committer.
	stored, err := g.AppendMessage(ctx, store.NewMessage{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c1", Body: []byte(`"one"`)})
	if err != nil {
		t.Fatal(err)
	}
	<-g.entered

	msgs := []store.NewMessage{
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c2", Body: []byte(`"two"`)},
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c1", Body: []byte(`"one again"`)},
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c3", Body: []byte(`"three"`)},
		{App: "a", Conv: "g:2", Sender: "alice", ClientMsgID: "c1", Body: []byte(`"other conv"`)},
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c2", Body: []byte(`"two again"`)},
		{App: "a", Conv: "g:missing", Sender: "alice", Body: []byte(`"lost"`)},
	}
	for i := range 40 {
		msgs = append(msgs, store.NewMessage{App: "a", Conv: "g:3", Body: []byte(fmt.Sprint(i))})
	}
	// One at a time, so the queue holds them in this order.
	waits := make([]func() []result, len(msgs))
	for i, m := range msgs {
		waits[i] = appendAll(ctx, g, []store.NewMessage{m})
		g.waitQueued(t, i+1)
	}
	g.open()
	var got []result
	for _, w := range waits {
		got = append(got, w()...)
	}

	want := []struct {
		seq  uint64
		dup  bool
		body string
	}{{2, false, `"two"`}, {1, true, `"one"`}, {3, false, `"three"`}, {1, false, `"other conv"`}, {2, true, `"two"`}}
	for i, w := range want {
		r := got[i]
		if r.err != nil || r.a.Seq != w.seq || r.a.Duplicate != w.dup || string(r.a.Body) != w.body {
			t.Errorf("append %d (%s %s) = seq %d dup %v body %s, %v; want seq %d dup %v body %s",
				i, r.m.Conv, r.m.ClientMsgID, r.a.Seq, r.a.Duplicate, r.a.Body, r.err, w.seq, w.dup, w.body)
		}
	}
	if got[1].a.Duplicate && !got[1].a.At.Equal(stored.At) {
		t.Errorf("stored duplicate answered with time %v, want the stored %v", got[1].a.At, stored.At)
	}
	if !errors.Is(got[5].err, store.ErrNotFound) {
		t.Errorf("append to a missing conversation: %v, want ErrNotFound", got[5].err)
	}
	for i, r := range got[6:] {
		if r.err != nil || r.a.Seq != uint64(i+1) {
			t.Fatalf("g:3 append %d = seq %d, %v; want seq %d", i, r.a.Seq, r.err, i+1)
		}
	}

	// What is stored agrees: g:1 holds 1, 2, 3 and no gap, its counter and
	// alice's read cursor are at 3, g:3 holds 40 in queue order.
	page, err := g.MessagesAfter(ctx, "a", "g:1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, m := range page {
		bodies = append(bodies, fmt.Sprintf("%d:%s", m.Seq, m.Body))
	}
	if w := []string{`1:"one"`, `2:"two"`, `3:"three"`}; !slices.Equal(bodies, w) {
		t.Errorf("g:1 holds %v, want %v", bodies, w)
	}
	if c, err := g.Conversation(ctx, "a", "g:1"); err != nil || c.LastSeq != 3 {
		t.Errorf("g:1 last seq %d, %v; want 3", c.LastSeq, err)
	}
	if m, err := g.Member(ctx, "a", "g:1", "alice"); err != nil || m.ReadSeq != 3 {
		t.Errorf("alice's read cursor in g:1 = %d, %v; want 3", m.ReadSeq, err)
	}
	page, err = g.MessagesAfter(ctx, "a", "g:3", 0, 100)
	if err != nil || len(page) != 40 {
		t.Fatalf("g:3 holds %d messages, %v; want 40", len(page), err)
	}
	for i, m := range page {
		if string(m.Body) != fmt.Sprint(i) {
			t.Fatalf("g:3 seq %d holds %s, want %d", m.Seq, m.Body, i)
		}
	}
	if sizes := g.sizes(t); !slices.Equal(sizes, []int{1, len(msgs)}) {
		t.Errorf("OnCommit saw batches %v, want [1 %d]: the queued appends were not one batch", sizes, len(msgs))
	}
}

func TestGroupCommitMaxBatch(t *testing.T) {
	g := newGatedStore(t, Options{MaxBatch: 10})
	g.hold(t)
	var msgs []store.NewMessage
	for i := range 25 {
		msgs = append(msgs, store.NewMessage{App: "a", Conv: "g:1", Sender: "alice", Body: []byte(fmt.Sprint(i))})
	}
	wait := appendAll(t.Context(), g, msgs)
	g.waitQueued(t, len(msgs))
	g.open()
	for _, r := range wait() {
		if r.err != nil {
			t.Errorf("append: %v", r.err)
		}
	}
	if got, want := g.sizes(t), []int{1, 10, 10, 5}; !slices.Equal(got, want) {
		t.Errorf("batches %v, want %v", got, want)
	}
}

func TestQueueFull(t *testing.T) {
	g := newGatedStore(t, Options{QueueSize: 4})
	g.hold(t)
	var msgs []store.NewMessage
	for i := range 4 {
		msgs = append(msgs, store.NewMessage{App: "a", Conv: "g:1", Body: []byte(fmt.Sprint(i))})
	}
	wait := appendAll(t.Context(), g, msgs)
	g.waitQueued(t, 4)
	_, err := g.AppendMessage(t.Context(), store.NewMessage{App: "a", Conv: "g:1", Body: []byte(`"over"`)})
	if !errors.Is(err, store.ErrBusy) {
		t.Errorf("append to a full queue: %v, want ErrBusy", err)
	}
	g.open()
	for _, r := range wait() {
		if r.err != nil {
			t.Errorf("queued append: %v", r.err)
		}
	}
	if c, _ := g.Conversation(t.Context(), "a", "g:1"); c.LastSeq != 4 {
		t.Errorf("LastSeq = %d, want 4: the refused append must write nothing", c.LastSeq)
	}
}

func TestCanceledWhileQueued(t *testing.T) {
	g := newGatedStore(t, Options{})
	g.hold(t)
	ctx, cancel := context.WithCancel(t.Context())
	wait := appendAll(ctx, g, []store.NewMessage{{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c", Body: []byte(`"late"`)}})
	g.waitQueued(t, 1)
	cancel()
	if r := wait()[0]; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("append whose ctx ended while queued: %v, want context.Canceled", r.err)
	}
	g.open()
	// A later append goes through the committer after the canceled one, so
	// once it is acknowledged the canceled one has been dealt with.
	a, err := g.AppendMessage(t.Context(), store.NewMessage{App: "a", Conv: "g:1", Sender: "bob", Body: []byte(`"next"`)})
	if err != nil || a.Seq != 1 {
		t.Errorf("next append = seq %d, %v; want seq 1: the canceled append was written", a.Seq, err)
	}
}

func TestCommitFailureFailsBatch(t *testing.T) {
	g := newGatedStore(t, Options{})
	if _, err := g.w.ExecContext(t.Context(), `CREATE TRIGGER boom BEFORE INSERT ON messages
		WHEN NEW.sender = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	g.hold(t)
	var msgs []store.NewMessage
	for i := range 10 {
		sender := "alice"
		if i == 7 {
			sender = "boom"
		}
		msgs = append(msgs, store.NewMessage{App: "a", Conv: fmt.Sprintf("g:%d", 1+i%3), Sender: sender, ClientMsgID: fmt.Sprint(i), Body: []byte(`1`)})
	}
	wait := appendAll(t.Context(), g, msgs)
	g.waitQueued(t, len(msgs))
	g.open()
	for _, r := range wait() {
		if r.err == nil || errors.Is(r.err, store.ErrNotFound) {
			t.Errorf("append in a failed batch: %v, want the commit's error", r.err)
		}
	}
	for i := 1; i <= 3; i++ {
		if c, _ := g.Conversation(t.Context(), "a", fmt.Sprintf("g:%d", i)); c.LastSeq != 0 {
			t.Errorf("g:%d LastSeq = %d after a failed batch, want 0", i, c.LastSeq)
		}
	}
	if _, err := g.w.ExecContext(t.Context(), `DROP TRIGGER boom`); err != nil {
		t.Fatal(err)
	}
	// The client's resend succeeds, with no gap left by the failed batch.
	a, err := g.AppendMessage(t.Context(), msgs[1])
	if err != nil || a.Seq != 1 || a.Duplicate {
		t.Errorf("resend after the failure = %+v, %v; want seq 1, new", a, err)
	}
	if got := g.sizes(t); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("OnCommit saw %v, want [1 1]: a failed batch is not a commit", got)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	g := newGatedStore(t, Options{Sync: "full"})
	g.hold(t)
	var msgs []store.NewMessage
	for i := range 20 {
		msgs = append(msgs, store.NewMessage{App: "a", Conv: "g:2", Sender: "alice", Body: []byte(fmt.Sprint(i))})
	}
	wait := appendAll(t.Context(), g, msgs)
	g.waitQueued(t, len(msgs))
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	for !g.closed.Load() {
		runtime.Gosched()
	}
	if _, err := g.AppendMessage(t.Context(), msgs[0]); !errors.Is(err, store.ErrClosed) {
		t.Errorf("append while closing: %v, want ErrClosed", err)
	}
	g.open()
	for _, r := range wait() {
		if r.err != nil {
			t.Errorf("append queued before Close: %v, want it written", r.err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}

	s := openTest(t, g.path, Options{})
	if c, err := s.Conversation(t.Context(), "a", "g:2"); err != nil || c.LastSeq != 20 {
		t.Errorf("after reopening: %+v, %v; want LastSeq 20", c, err)
	}
}

// With a commit window, appends that arrive after the committer took the
// first one still join its batch; the batch commits as soon as it is full,
// without waiting for the rest of the window.
func TestCommitWindowGathersABatch(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	s := openTest(t, filepath.Join(t.TempDir(), "db"), Options{Sync: "normal", MaxBatch: 5, CommitWindow: time.Minute,
		OnCommit: func(n int, _ time.Duration) {
			mu.Lock()
			batches = append(batches, n)
			mu.Unlock()
		}})
	ctx := t.Context()
	if err := s.CreateApp(ctx, store.App{ID: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConversation(ctx, store.Conversation{App: "a", ID: "g", Kind: store.KindGroup}, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	first := appendAll(ctx, s, []store.NewMessage{{App: "a", Conv: "g", Sender: "alice", Body: []byte(`0`)}})
	// Give the committer time to take the first append: without a window
	// it would commit it alone, and the test would see batches [1 4]. (The
	// pause only makes a missing window show; with one, the result is the
	// same whatever the timing.)
	time.Sleep(50 * time.Millisecond)
	for len(s.queue) > 0 {
		time.Sleep(time.Millisecond)
	}
	var rest []store.NewMessage
	for i := 1; i < 5; i++ {
		rest = append(rest, store.NewMessage{App: "a", Conv: "g", Sender: "alice", Body: []byte(fmt.Sprint(i))})
	}
	others := appendAll(ctx, s, rest)
	results := append(first(), others()...)
	for _, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	// Waiters are answered before OnCommit runs: only a stopped committer
	// has reported every batch.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(batches, []int{5}) {
		t.Fatalf("batches %v, want one of 5", batches)
	}
}
