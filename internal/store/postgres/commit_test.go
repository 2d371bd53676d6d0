package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate/internal/store"
)

// gatedStore is a store whose committer can be held: the first OnCommit
// call blocks until release, so appends made meanwhile pile up in the queue
// and the test decides what the next batch holds. No timing is involved:
// the test waits for the queue to reach a length, then releases.
type gatedStore struct {
	*Store
	schema  string
	entered chan struct{}
	release chan struct{}

	mu      sync.Mutex
	batches []int
}

// newGatedStore opens a gated store on schema (a new one if empty) and
// makes sure app "a" and groups g:0 … g:3, with member alice, exist.
func newGatedStore(t *testing.T, schema string, o Options) *gatedStore {
	t.Helper()
	if schema == "" {
		schema = newSchema(t)
	}
	g := &gatedStore{
		schema:  schema,
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
	g.Store = openTest(t, schema, o)
	// Released at the end at the latest, so Close never waits on the gate.
	t.Cleanup(g.open)
	ctx := t.Context()
	if err := g.CreateApp(ctx, store.App{ID: "a", Secret: "s"}); err != nil && !errors.Is(err, store.ErrConflict) {
		t.Fatal(err)
	}
	for i := range 4 {
		_, err := g.CreateConversation(ctx, store.Conversation{App: "a", ID: fmt.Sprintf("g:%d", i), Kind: store.KindGroup}, []string{"alice"})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			t.Fatal(err)
		}
	}
	return g
}

// hold makes one append (to g:0) and returns once the committer is blocked
// after committing it.
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

// raw returns a pool on g's schema that bypasses the store.
func (g *gatedStore) raw(t *testing.T) *pgxpool.Pool { return rawPool(t, g.schema) }

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

// appendInOrder queues msgs behind g's held committer in exactly this
// order, each once the previous one is queued, and returns a function
// that waits for their results.
func appendInOrder(t *testing.T, g *gatedStore, msgs []store.NewMessage) func() []result {
	t.Helper()
	base := len(g.queue)
	waits := make([]func() []result, len(msgs))
	for i, m := range msgs {
		waits[i] = appendAll(t.Context(), g, []store.NewMessage{m})
		g.waitQueued(t, base+i+1)
	}
	return func() []result {
		var out []result
		for _, w := range waits {
			out = append(out, w()...)
		}
		return out
	}
}

func TestGroupCommitBatches(t *testing.T) {
	g := newGatedStore(t, "", Options{})
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
	originals := map[string]store.Message{}
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
			if r.m.ClientMsgID != "" {
				originals[r.m.ClientMsgID] = r.a.Message
			}
		}
	}
	if len(dups) != 8 {
		t.Errorf("duplicates within the batch: %v, want one for each of 8 client ids", dups)
	}
	for _, r := range results {
		if o, ok := originals[r.m.ClientMsgID]; ok && r.a.Duplicate &&
			(r.a.Seq != o.Seq || string(r.a.Body) != string(o.Body) || !r.a.At.Equal(o.At)) {
			t.Errorf("duplicate %s answered with %+v, want the original %+v", r.m.ClientMsgID, r.a.Message, o)
		}
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
	// One cursor move per sender and conversation, to its highest seq.
	rows, err := g.raw(t).Query(t.Context(), `SELECT conv_id, read_seq FROM members WHERE user_id = 'alice'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		var seq uint64
		if err := rows.Scan(&conv, &seq); err != nil {
			t.Fatal(err)
		}
		if seq != 0 {
			t.Errorf("alice's cursor in %s moved to %d: she sent nothing", conv, seq)
		}
	}
}

func TestGroupCommitReadCursors(t *testing.T) {
	g := newGatedStore(t, "", Options{})
	g.hold(t)
	// alice sends three times to g:1 and once to g:2 in one batch; a
	// duplicate of her last g:1 message follows.
	msgs := []store.NewMessage{
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "1"},
		{App: "a", Conv: "g:2", Sender: "alice", ClientMsgID: "2"},
		{App: "a", Conv: "g:1", Sender: "bob"},
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "3"},
		{App: "a", Conv: "g:1", Sender: ""},
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "3"},
	}
	wait := appendInOrder(t, g, msgs)
	g.open()
	for i, r := range wait() {
		if r.err != nil {
			t.Fatalf("append #%d: %v", i, r.err)
		}
		if want := []uint64{1, 1, 2, 3, 4, 3}[i]; r.a.Seq != want {
			t.Errorf("append #%d: seq %d, want %d (queue order within a conversation)", i, r.a.Seq, want)
		}
	}
	for conv, want := range map[string]uint64{"g:1": 3, "g:2": 1} {
		m, err := g.Member(t.Context(), "a", conv, "alice")
		if err != nil || m.ReadSeq != want {
			t.Errorf("alice's cursor in %s = %+v, %v; want %d", conv, m, err, want)
		}
	}
}

func TestGroupCommitMaxBatch(t *testing.T) {
	g := newGatedStore(t, "", Options{MaxBatch: 10})
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
	g := newGatedStore(t, "", Options{QueueSize: 4})
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
	g := newGatedStore(t, "", Options{})
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
	g := newGatedStore(t, "", Options{})
	raw := g.raw(t)
	if _, err := raw.Exec(t.Context(), `
		CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.sender = 'boom' THEN RAISE EXCEPTION 'boom'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER boom BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION boom();`); err != nil {
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
	if g.retries.Load() != 0 {
		t.Errorf("a failure that is not a conflict was retried %d times", g.retries.Load())
	}
	if _, err := raw.Exec(t.Context(), `DROP TRIGGER boom ON messages`); err != nil {
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

// failFirst makes the first n inserts into messages (statements, so batch
// attempts) fail with SQLSTATE code. The count is a sequence because
// sequences are not transactional: the failed attempt's rollback does not
// undo it.
func failFirst(t *testing.T, raw *pgxpool.Pool, n int, code string) {
	t.Helper()
	if _, err := raw.Exec(t.Context(), fmt.Sprintf(`
		CREATE SEQUENCE attempts;
		CREATE FUNCTION conflict() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('attempts') <= %d THEN
				RAISE EXCEPTION 'injected conflict' USING ERRCODE = '%s';
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER conflict BEFORE INSERT ON messages FOR EACH STATEMENT EXECUTE FUNCTION conflict();`, n, code)); err != nil {
		t.Fatal(err)
	}
}

func attempts(t *testing.T, raw *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := raw.QueryRow(t.Context(), `SELECT last_value FROM attempts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConflictRetried(t *testing.T) {
	for _, code := range []string{codeSerialization, codeDeadlock} {
		t.Run(code, func(t *testing.T) {
			g := newGatedStore(t, "", Options{})
			raw := g.raw(t)
			g.hold(t)
			failFirst(t, raw, 2, code)
			var msgs []store.NewMessage
			for i := range 6 {
				msgs = append(msgs, store.NewMessage{App: "a", Conv: fmt.Sprintf("g:%d", 1+i%3), Sender: "alice", ClientMsgID: fmt.Sprint(i), Body: []byte(`1`)})
			}
			wait := appendAll(t.Context(), g, msgs)
			g.waitQueued(t, len(msgs))
			g.open()
			for _, r := range wait() {
				if r.err != nil || r.a.Duplicate || r.a.Seq < 1 || r.a.Seq > 2 {
					t.Errorf("append retried after a conflict = %+v, %v; want seq 1 or 2", r.a, r.err)
				}
			}
			if got := g.retries.Load(); got != 2 {
				t.Errorf("retries = %d, want 2", got)
			}
			if got := attempts(t, raw); got != 3 {
				t.Errorf("attempts = %d, want 3", got)
			}
			if got := g.sizes(t); !slices.Equal(got, []int{1, 6}) {
				t.Errorf("OnCommit saw %v, want [1 6]", got)
			}
		})
	}
}

func TestConflictRetriesBounded(t *testing.T) {
	g := newGatedStore(t, "", Options{})
	raw := g.raw(t)
	g.hold(t)
	failFirst(t, raw, 1000, codeSerialization)
	wait := appendAll(t.Context(), g, []store.NewMessage{
		{App: "a", Conv: "g:1", Sender: "alice", Body: []byte(`1`)},
		{App: "a", Conv: "g:2", Sender: "alice", Body: []byte(`2`)},
	})
	g.waitQueued(t, 2)
	g.open()
	for _, r := range wait() {
		if sqlState(r.err) != codeSerialization {
			t.Errorf("append in a batch that always conflicts: %v, want the serialization failure", r.err)
		}
	}
	if got := attempts(t, raw); got != 1+maxRetries {
		t.Errorf("attempts = %d, want %d", got, 1+maxRetries)
	}
	for _, id := range []string{"g:1", "g:2"} {
		if c, _ := g.Conversation(t.Context(), "a", id); c.LastSeq != 0 {
			t.Errorf("%s LastSeq = %d after a failed batch, want 0", id, c.LastSeq)
		}
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	g := newGatedStore(t, "", Options{})
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

	s := openTest(t, g.schema, Options{})
	if c, err := s.Conversation(t.Context(), "a", "g:2"); err != nil || c.LastSeq != 20 {
		t.Errorf("after reopening: %+v, %v; want LastSeq 20", c, err)
	}
}

// TestCommitTimeout checks that a batch stuck behind a lock it cannot get
// fails when CommitTimeout runs out, writing nothing, and that the
// committer goes on.
func TestCommitTimeout(t *testing.T) {
	g := newGatedStore(t, "", Options{CommitTimeout: 500 * time.Millisecond})
	g.open() // no gate: nothing piles up here
	raw := g.raw(t)
	tx, err := raw.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM conversations WHERE app_id = 'a' AND id = 'g:1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	_, err = g.AppendMessage(t.Context(), store.NewMessage{App: "a", Conv: "g:1", Sender: "alice", Body: []byte(`1`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("append behind a lock held past CommitTimeout: %v, want context.DeadlineExceeded", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The store recovers: the timed-out batch consumed no seq. The first
	// commit after it may itself time out on a loaded machine (the pool
	// replaces the connection the timeout broke), so a few tries are
	// allowed; what must never happen is a seq other than 1.
	var (
		a    store.Appended
		err2 error
	)
	for range 10 {
		a, err2 = g.AppendMessage(t.Context(), store.NewMessage{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "after", Body: []byte(`2`)})
		if !errors.Is(err2, context.DeadlineExceeded) {
			break
		}
	}
	if err2 != nil || a.Seq != 1 {
		t.Errorf("append after the timeout = seq %d, %v; want seq 1", a.Seq, err2)
	}
}
