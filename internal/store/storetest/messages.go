package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

func testAppend(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice", "bob")
	createConv(t, s, "a", "r:1", store.KindRoom)

	in := []store.NewMessage{
		{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "c1", Body: body("one")},
		{App: "a", Conv: "g:1", Sender: "bob", Body: body("two")},
		{App: "a", Conv: "g:1", Body: body("system")},
	}
	var acks []store.Appended
	for i, m := range in {
		buf := bytes.Clone(m.Body)
		m.Body = buf
		a, err := s.AppendMessage(ctx, m)
		if err != nil {
			t.Fatalf("AppendMessage #%d: %v", i, err)
		}
		// The store must have copied the body: the caller owns its buffer.
		buf[0] = 'X'
		if a.Duplicate || a.Seq != uint64(i+1) || a.App != "a" || a.Conv != "g:1" || a.Sender != m.Sender ||
			a.ClientMsgID != m.ClientMsgID || !bytes.Equal(a.Body, in[i].Body) || a.At.IsZero() {
			t.Errorf("AppendMessage #%d = %s dup=%v, want seq %d of %+v", i, fmtMessage(a.Message), a.Duplicate, i+1, in[i])
		}
		if a.At.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("At %v kept more than millisecond precision", a.At)
		}
		acks = append(acks, a)
	}
	if acks[1].At.Before(acks[0].At) || acks[2].At.Before(acks[1].At) {
		t.Errorf("At went backwards: %v, %v, %v", acks[0].At, acks[1].At, acks[2].At)
	}
	c := getConv(t, s, "a", "g:1")
	if c.LastSeq != 3 || !sameTime(c.LastAt, acks[2].At) {
		t.Errorf("conversation after 3 appends = %+v, want LastSeq 3, LastAt %v", c, acks[2].At)
	}
	got := messagesAfter(t, s, "a", "g:1", 0, 10)
	if len(got) != 3 {
		t.Fatalf("MessagesAfter = %d messages, want 3", len(got))
	}
	for i := range got {
		if !sameMessage(got[i], acks[i].Message) {
			t.Errorf("stored %s, acknowledged %s", fmtMessage(got[i]), fmtMessage(acks[i].Message))
		}
	}
	// Neither may the caller's changes to a result reach the store.
	got[0].Body[0] = 'Y'
	acks[1].Body[0] = 'Y'
	if again := messagesAfter(t, s, "a", "g:1", 0, 2); !bytes.Equal(again[0].Body, in[0].Body) || !bytes.Equal(again[1].Body, in[1].Body) {
		t.Errorf("changing returned bodies changed the store: %s", again[0].Body)
	}

	a, err := s.AppendMessage(ctx, store.NewMessage{App: "a", Conv: "r:1", Sender: "zed", Body: body("room")})
	if err != nil || a.Seq != 1 {
		t.Errorf("AppendMessage(room) = %+v, %v; want seq 1", a, err)
	}
	if c := getConv(t, s, "a", "r:1"); c.LastSeq != 1 {
		t.Errorf("room LastSeq = %d, want 1", c.LastSeq)
	}
}

// appendResult is one acknowledged append of a concurrent test.
type appendResult struct {
	in  store.NewMessage
	out store.Appended
	err error
}

// appendConcurrently runs workers goroutines, each appending perWorker
// messages made by msg, and returns the results by worker, in call order.
func appendConcurrently(t *testing.T, s store.Store, workers, perWorker int, msg func(w, i int) store.NewMessage) [][]appendResult {
	t.Helper()
	ctx := ctxFor(t)
	out := make([][]appendResult, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				m := msg(w, i)
				a, err := s.AppendMessage(ctx, m)
				out[w] = append(out[w], appendResult{m, a, err})
			}
		})
	}
	wg.Wait()
	return out
}

// checkConversationLog verifies that conv holds exactly the acknowledged
// appends acks, with seqs 1..len(acks), as the store reported them.
func checkConversationLog(t *testing.T, s store.Store, app, conv string, acks []appendResult) {
	t.Helper()
	bySeq := make(map[uint64]appendResult, len(acks))
	for _, r := range acks {
		if prev, ok := bySeq[r.out.Seq]; ok {
			t.Errorf("%s: seq %d acknowledged twice: %s and %s", conv, r.out.Seq, fmtMessage(prev.out.Message), fmtMessage(r.out.Message))
		}
		bySeq[r.out.Seq] = r
	}
	n := uint64(len(acks))
	for seq := uint64(1); seq <= n; seq++ {
		if _, ok := bySeq[seq]; !ok {
			t.Errorf("%s: seq %d never acknowledged (%d appends): a gap", conv, seq, n)
		}
	}
	if c := getConv(t, s, app, conv); c.LastSeq != n {
		t.Errorf("%s: LastSeq %d after %d appends", conv, c.LastSeq, n)
	}
	stored := messagesAfter(t, s, app, conv, 0, int(n)+10)
	wantSeqs(t, conv+" stored", stored, span(1, n)...)
	for _, m := range stored {
		r := bySeq[m.Seq]
		if !sameMessage(m, r.out.Message) || !bytes.Equal(m.Body, r.in.Body) || m.Sender != r.in.Sender {
			t.Errorf("%s: stored %s, acknowledged %s for %+v", conv, fmtMessage(m), fmtMessage(r.out.Message), r.in)
		}
	}
}

func testAppendConcurrent(t *testing.T, open func(*testing.T) store.Store) {
	const workers, perWorker = 32, 16

	check := func(t *testing.T, s store.Store, results [][]appendResult) map[string][]appendResult {
		byConv := map[string][]appendResult{}
		for w, rs := range results {
			var last uint64
			for _, r := range rs {
				if r.err != nil {
					t.Fatalf("worker %d: AppendMessage: %v", w, r.err)
				}
				if r.out.Duplicate {
					t.Errorf("worker %d: unexpected duplicate %s", w, fmtMessage(r.out.Message))
				}
				// Each worker waits for its ack before the next append, so
				// its own seqs in one conversation must increase.
				if r.in.Conv == rs[0].in.Conv && r.out.Seq <= last && last != 0 {
					t.Errorf("worker %d: seq %d acknowledged after seq %d", w, r.out.Seq, last)
				}
				last = r.out.Seq
				byConv[r.in.Conv] = append(byConv[r.in.Conv], r)
			}
		}
		return byConv
	}

	t.Run("SameConversation", func(t *testing.T) {
		s := open(t)
		createApp(t, s, "a")
		createGroup(t, s, "a", "g:1", "u0", "u1")
		results := appendConcurrently(t, s, workers, perWorker, func(w, i int) store.NewMessage {
			return store.NewMessage{App: "a", Conv: "g:1", Sender: fmt.Sprintf("u%d", w),
				ClientMsgID: fmt.Sprintf("m%d", i), Body: body(fmt.Sprintf("%d/%d", w, i))}
		})
		byConv := check(t, s, results)
		checkConversationLog(t, s, "a", "g:1", byConv["g:1"])
	})

	t.Run("ManyConversations", func(t *testing.T) {
		s := open(t)
		createApp(t, s, "a")
		for c := range 4 {
			createGroup(t, s, "a", fmt.Sprintf("g:%d", c), "u0")
		}
		results := appendConcurrently(t, s, workers, perWorker, func(w, i int) store.NewMessage {
			return store.NewMessage{App: "a", Conv: fmt.Sprintf("g:%d", w%4), Sender: fmt.Sprintf("u%d", w),
				Body: body(fmt.Sprintf("%d/%d", w, i))}
		})
		byConv := check(t, s, results)
		for c := range 4 {
			id := fmt.Sprintf("g:%d", c)
			if len(byConv[id]) != workers/4*perWorker {
				t.Errorf("%s: %d acks", id, len(byConv[id]))
			}
			checkConversationLog(t, s, "a", id, byConv[id])
		}
	})
}

func testAppendDedupe(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("Sequential", func(t *testing.T) {
		s := open(t)
		ctx := ctxFor(t)
		createApp(t, s, "a")
		createGroup(t, s, "a", "g:1", "alice", "bob")
		createGroup(t, s, "a", "g:2", "alice")
		first := appendMsg(t, s, "a", "g:1", "alice", "m1")
		appendMsg(t, s, "a", "g:1", "bob", "")

		again, err := s.AppendMessage(ctx, store.NewMessage{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "m1", Body: body("changed")})
		if err != nil {
			t.Fatalf("AppendMessage(duplicate): %v", err)
		}
		if !again.Duplicate || !sameMessage(again.Message, first.Message) {
			t.Errorf("duplicate append = %s dup=%v, want the original %s", fmtMessage(again.Message), again.Duplicate, fmtMessage(first.Message))
		}
		if c := getConv(t, s, "a", "g:1"); c.LastSeq != 2 {
			t.Errorf("LastSeq after a duplicate = %d, want 2 (nothing written)", c.LastSeq)
		}
		if m := getMember(t, s, "a", "g:1", "alice"); m.ReadSeq != 1 {
			t.Errorf("alice's ReadSeq after a duplicate = %d, want 1 (nothing written)", m.ReadSeq)
		}

		// The key is (app, conv, sender, client id): change any part and the
		// message is new.
		for _, m := range []store.NewMessage{
			{App: "a", Conv: "g:1", Sender: "bob", ClientMsgID: "m1"},
			{App: "a", Conv: "g:2", Sender: "alice", ClientMsgID: "m1"},
			{App: "a", Conv: "g:1", Sender: "", ClientMsgID: "m1"},
			{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "M1"},
		} {
			m.Body = body("new")
			a, err := s.AppendMessage(ctx, m)
			if err != nil || a.Duplicate {
				t.Errorf("AppendMessage(%+v) = dup %v, %v; want a new message", m, a.Duplicate, err)
			}
		}
		// System messages dedupe too.
		if a := appendMsg(t, s, "a", "g:1", "", "m1"); !a.Duplicate {
			t.Errorf("system duplicate not detected")
		}

		// An empty client id never dedupes.
		for i := range 3 {
			a := appendMsg(t, s, "a", "g:2", "alice", "")
			if a.Duplicate || a.Seq != uint64(i+2) {
				t.Errorf("append without client id #%d = seq %d dup %v, want seq %d", i, a.Seq, a.Duplicate, i+2)
			}
		}

		// The original is found however much was written since.
		appendN(t, s, "a", "g:1", "bob", 20)
		if a := appendMsg(t, s, "a", "g:1", "alice", "m1"); !a.Duplicate || a.Seq != 1 {
			t.Errorf("late duplicate = seq %d dup %v, want seq 1, duplicate", a.Seq, a.Duplicate)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		createApp(t, s, "a")
		createGroup(t, s, "a", "g:1", "alice")
		createGroup(t, s, "a", "g:2", "alice")
		// Every worker sends the same message to g:1; to g:2, four client
		// ids spread over the workers.
		results := appendConcurrently(t, s, 32, 2, func(w, i int) store.NewMessage {
			if i == 0 {
				return store.NewMessage{App: "a", Conv: "g:1", Sender: "alice", ClientMsgID: "same", Body: body(fmt.Sprint(w))}
			}
			return store.NewMessage{App: "a", Conv: "g:2", Sender: "alice", ClientMsgID: fmt.Sprintf("k%d", w%4), Body: body(fmt.Sprint(w))}
		})
		originals := map[string][]store.Message{}
		byKey := map[string][]store.Appended{}
		for _, rs := range results {
			for _, r := range rs {
				if r.err != nil {
					t.Fatalf("AppendMessage: %v", r.err)
				}
				k := r.in.Conv + "/" + r.in.ClientMsgID
				byKey[k] = append(byKey[k], r.out)
				if !r.out.Duplicate {
					originals[r.in.Conv] = append(originals[r.in.Conv], r.out.Message)
				}
			}
		}
		for k, acks := range byKey {
			n := 0
			for _, a := range acks {
				if !a.Duplicate {
					n++
				}
				if !sameMessage(a.Message, acks[0].Message) {
					t.Errorf("%s: acks disagree: %s vs %s", k, fmtMessage(a.Message), fmtMessage(acks[0].Message))
				}
			}
			if n != 1 {
				t.Errorf("%s: %d of %d appends were not duplicates, want exactly 1", k, n, len(acks))
			}
		}
		for conv, want := range map[string]int{"g:1": 1, "g:2": 4} {
			if len(originals[conv]) != want {
				t.Errorf("%s: %d originals, want %d", conv, len(originals[conv]), want)
			}
			if c := getConv(t, s, "a", conv); c.LastSeq != uint64(want) {
				t.Errorf("%s: LastSeq %d, want %d", conv, c.LastSeq, want)
			}
			stored := messagesAfter(t, s, "a", conv, 0, 100)
			wantSeqs(t, conv, stored, span(1, uint64(want))...)
		}
	})
}

func testAppendReadCursor(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice", "bob", "carol")
	cursors := func(what string, want ...uint64) {
		t.Helper()
		for i, u := range []string{"alice", "bob", "carol"} {
			if m := getMember(t, s, "a", "g:1", u); m.ReadSeq != want[i] {
				t.Errorf("%s: %s's ReadSeq = %d, want %d", what, u, m.ReadSeq, want[i])
			}
		}
	}
	appendMsg(t, s, "a", "g:1", "alice", "")
	cursors("after alice sent", 1, 0, 0)
	appendMsg(t, s, "a", "g:1", "bob", "b1")
	cursors("after bob sent", 1, 2, 0)
	appendMsg(t, s, "a", "g:1", "", "")
	cursors("after a system message", 1, 2, 0)
	// The store does not check the sender's membership (its caller does),
	// and an append never makes a member.
	appendMsg(t, s, "a", "g:1", "zed", "")
	cursors("after a non-member sent", 1, 2, 0)
	_, err := s.Member(ctx, "a", "g:1", "zed")
	wantErr(t, "Member(non-member sender)", err, store.ErrNotFound)
	appendMsg(t, s, "a", "g:1", "carol", "")
	cursors("after carol sent", 1, 2, 5)
}

func testAppendNotFound(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createApp(t, s, "b")
	createGroup(t, s, "a", "g:1", "alice")
	createGroup(t, s, "b", "g:only-b", "alice")

	for _, m := range []store.NewMessage{
		{App: "a", Conv: "g:missing", Sender: "alice"},
		{App: "nope", Conv: "g:1", Sender: "alice"},
		{App: "a", Conv: "g:only-b", Sender: "alice", ClientMsgID: "x"},
	} {
		m.Body = body("lost")
		_, err := s.AppendMessage(ctx, m)
		wantErr(t, fmt.Sprintf("AppendMessage(%s/%s)", m.App, m.Conv), err, store.ErrNotFound)
	}
	if c := getConv(t, s, "b", "g:only-b"); c.LastSeq != 0 {
		t.Errorf("an append for app a changed app b's conversation: %+v", c)
	}

	// Appends to a missing conversation racing valid ones fail alone.
	results := appendConcurrently(t, s, 32, 4, func(w, i int) store.NewMessage {
		conv := "g:1"
		if w%2 == 1 {
			conv = "g:missing"
		}
		return store.NewMessage{App: "a", Conv: conv, Sender: "alice", ClientMsgID: fmt.Sprintf("%d-%d", w, i), Body: body("x")}
	})
	var ok []appendResult
	for w, rs := range results {
		for _, r := range rs {
			switch {
			case w%2 == 1:
				wantErr(t, "AppendMessage(missing, concurrent)", r.err, store.ErrNotFound)
			case r.err != nil:
				t.Errorf("AppendMessage(valid, concurrent): %v", r.err)
			default:
				ok = append(ok, r)
			}
		}
	}
	checkConversationLog(t, s, "a", "g:1", ok)
}

func testDoneContext(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice")
	appendMsg(t, s, "a", "g:1", "bob", "")
	before := takeSnapshot(t, s, "a", []string{"g:1", "g:new", "d:ab"}, []string{"alice", "bob"})

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Minute))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		for name, call := range allCalls("a", "g:1", "alice") {
			if err := call(c.ctx, s); !errors.Is(err, c.want) {
				t.Errorf("%s with a done ctx: %v, want %v", name, err, c.want)
			}
		}
	}
	after := takeSnapshot(t, s, "a", []string{"g:1", "g:new", "d:ab"}, []string{"alice", "bob"})
	if diff := before.diff(after); diff != "" {
		t.Errorf("calls with a done ctx changed the store:\n%s", diff)
	}
	_, err := s.App(ctx, "new-app")
	wantErr(t, "App created with a done ctx", err, store.ErrNotFound)
}

// allCalls returns a call of every method but Close, writing to app's conv
// as user, keyed by name.
func allCalls(app, conv, user string) map[string]func(context.Context, store.Store) error {
	return map[string]func(context.Context, store.Store) error{
		"CreateApp": func(ctx context.Context, s store.Store) error {
			return s.CreateApp(ctx, store.App{ID: "new-app", Secret: "x"})
		},
		"App":  func(ctx context.Context, s store.Store) error { _, err := s.App(ctx, app); return err },
		"Apps": func(ctx context.Context, s store.Store) error { _, err := s.Apps(ctx); return err },
		"RotateAppSecret": func(ctx context.Context, s store.Store) error {
			_, err := s.RotateAppSecret(ctx, app, "rotated", time.Now())
			return err
		},
		"SetAppDisabled": func(ctx context.Context, s store.Store) error { return s.SetAppDisabled(ctx, app, true) },
		"CreateConversation": func(ctx context.Context, s store.Store) error {
			_, err := s.CreateConversation(ctx, store.Conversation{App: app, ID: "g:new", Kind: store.KindGroup}, []string{user})
			return err
		},
		"EnsureDirect": func(ctx context.Context, s store.Store) error {
			_, err := s.EnsureDirect(ctx, app, "d:ab", "alice", "bob")
			return err
		},
		"Conversation": func(ctx context.Context, s store.Store) error { _, err := s.Conversation(ctx, app, conv); return err },
		"Member":       func(ctx context.Context, s store.Store) error { _, err := s.Member(ctx, app, conv, user); return err },
		"Members":      func(ctx context.Context, s store.Store) error { _, err := s.Members(ctx, app, conv, 10); return err },
		"MemberCount":  func(ctx context.Context, s store.Store) error { _, err := s.MemberCount(ctx, app, conv); return err },
		"AddMembers": func(ctx context.Context, s store.Store) error {
			_, err := s.AddMembers(ctx, app, conv, []string{"newbie"})
			return err
		},
		"RemoveMembers": func(ctx context.Context, s store.Store) error {
			_, err := s.RemoveMembers(ctx, app, conv, []string{user})
			return err
		},
		"ListConversations": func(ctx context.Context, s store.Store) error {
			_, err := s.ListConversations(ctx, app, user, store.ListCursor{}, 10)
			return err
		},
		"UserConversations": func(ctx context.Context, s store.Store) error {
			_, err := s.UserConversations(ctx, app, user, 10)
			return err
		},
		"ConvStates": func(ctx context.Context, s store.Store) error {
			_, err := s.ConvStates(ctx, app, user, []string{conv})
			return err
		},
		"AppendMessage": func(ctx context.Context, s store.Store) error {
			_, err := s.AppendMessage(ctx, store.NewMessage{App: app, Conv: conv, Sender: user, ClientMsgID: "done-ctx", Body: body("x")})
			return err
		},
		"MessagesAfter": func(ctx context.Context, s store.Store) error {
			_, err := s.MessagesAfter(ctx, app, conv, 0, 10)
			return err
		},
		"MessagesBefore": func(ctx context.Context, s store.Store) error {
			_, err := s.MessagesBefore(ctx, app, conv, 0, 10)
			return err
		},
		"SetReadSeq": func(ctx context.Context, s store.Store) error {
			_, err := s.SetReadSeq(ctx, app, conv, user, 1)
			return err
		},
		"RevokeSessions": func(ctx context.Context, s store.Store) error {
			return s.RevokeSessions(ctx, app, user, time.Now())
		},
		"RevokedBefore": func(ctx context.Context, s store.Store) error {
			_, err := s.RevokedBefore(ctx, app, user)
			return err
		},
		"Ping": func(ctx context.Context, s store.Store) error { return s.Ping(ctx) },
	}
}

func testMessagesPaging(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice")
	createGroup(t, s, "a", "g:2", "alice")
	createGroup(t, s, "a", "g:empty", "alice")
	var acks []store.Appended
	for i := range 10 {
		acks = append(acks, appendMsg(t, s, "a", "g:1", "alice", fmt.Sprint(i)))
		appendMsg(t, s, "a", "g:2", "alice", fmt.Sprint(i))
	}

	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 3, span(1, 3)}, {3, 3, span(4, 6)}, {9, 5, span(10, 10)}, {10, 5, nil},
		{0, 100, span(1, 10)}, {0, 0, nil}, {5, -1, nil}, {math.MaxUint64, 5, nil}, {1 << 63, 5, nil},
	} {
		got := messagesAfter(t, s, "a", "g:1", c.after, c.limit)
		wantSeqs(t, fmt.Sprintf("MessagesAfter(%d, %d)", c.after, c.limit), got, c.want...)
	}
	for _, c := range []struct {
		before uint64
		limit  int
		want   []uint64
	}{
		{0, 3, span(8, 10)}, {8, 3, span(5, 7)}, {2, 5, span(1, 1)}, {1, 5, nil}, {100, 2, span(9, 10)},
		{0, 100, span(1, 10)}, {0, 0, nil}, {5, -1, nil}, {math.MaxUint64, 2, span(9, 10)}, {11, 1, span(10, 10)},
	} {
		got := messagesBefore(t, s, "a", "g:1", c.before, c.limit)
		wantSeqs(t, fmt.Sprintf("MessagesBefore(%d, %d)", c.before, c.limit), got, c.want...)
	}

	// Paging forward and backward both give the whole log, each message
	// exactly as acknowledged.
	var fwd []store.Message
	for after := uint64(0); ; {
		page := messagesAfter(t, s, "a", "g:1", after, 3)
		if len(page) == 0 {
			break
		}
		fwd = append(fwd, page...)
		after = page[len(page)-1].Seq
	}
	var back []store.Message
	for before := uint64(0); ; {
		page := messagesBefore(t, s, "a", "g:1", before, 4)
		if len(page) == 0 {
			break
		}
		back = append(page, back...)
		before = page[0].Seq
		if before == 1 {
			break
		}
	}
	for name, log := range map[string][]store.Message{"forward": fwd, "backward": back} {
		wantSeqs(t, name+" paging", log, span(1, 10)...)
		for i, m := range log {
			if i < len(acks) && !sameMessage(m, acks[i].Message) {
				t.Errorf("%s paging: %s, acknowledged %s", name, fmtMessage(m), fmtMessage(acks[i].Message))
			}
		}
	}

	if got := messagesAfter(t, s, "a", "g:empty", 0, 10); len(got) != 0 {
		t.Errorf("MessagesAfter(empty) = %d messages", len(got))
	}
	if got := messagesBefore(t, s, "a", "g:empty", 0, 10); len(got) != 0 {
		t.Errorf("MessagesBefore(empty) = %d messages", len(got))
	}
	_, err := s.MessagesAfter(ctx, "a", "g:missing", 0, 10)
	wantErr(t, "MessagesAfter(missing)", err, store.ErrNotFound)
	_, err = s.MessagesBefore(ctx, "a", "g:missing", 0, 10)
	wantErr(t, "MessagesBefore(missing)", err, store.ErrNotFound)
}

func testSetReadSeq(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createGroup(t, s, "a", "g:1", "alice", "bob")
	createGroup(t, s, "a", "g:empty", "alice")
	createConv(t, s, "a", "r:1", store.KindRoom)
	appendN(t, s, "a", "g:1", "carol", 5)

	for _, c := range []struct{ set, want uint64 }{
		{3, 3}, {2, 3}, {0, 3}, {4, 4}, {100, 5}, {math.MaxUint64, 5}, {1 << 63, 5},
	} {
		got, err := s.SetReadSeq(ctx, "a", "g:1", "alice", c.set)
		if err != nil || got != c.want {
			t.Errorf("SetReadSeq(%d) = %d, %v; want %d", c.set, got, err, c.want)
		}
		if m := getMember(t, s, "a", "g:1", "alice"); m.ReadSeq != c.want {
			t.Errorf("after SetReadSeq(%d): stored ReadSeq %d, want %d", c.set, m.ReadSeq, c.want)
		}
	}
	if m := getMember(t, s, "a", "g:1", "bob"); m.ReadSeq != 0 {
		t.Errorf("bob's ReadSeq = %d, want 0: another member's cursor moved", m.ReadSeq)
	}
	if got, err := s.SetReadSeq(ctx, "a", "g:empty", "alice", 5); err != nil || got != 0 {
		t.Errorf("SetReadSeq(empty conversation) = %d, %v; want 0", got, err)
	}
	for _, c := range [][2]string{{"g:1", "carol"}, {"g:missing", "alice"}, {"r:1", "alice"}} {
		_, err := s.SetReadSeq(ctx, "a", c[0], c[1], 1)
		wantErr(t, fmt.Sprintf("SetReadSeq(%s, %s)", c[0], c[1]), err, store.ErrNotFound)
	}
}
