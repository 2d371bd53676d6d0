package postgres

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// BenchmarkAppend measures AppendMessage throughput: one sender at a time
// (every append waits for its own commit, so this is the cost of one
// transaction and its WAL flush) and 64 or 512 concurrent senders spread
// over 16 conversations (group commit shares each flush). With nodes=2 the
// senders are split between two Stores on one schema, as two Floodgate
// nodes, whose batches contend for the same conversation locks. It reports
// msgs/s and the mean batch size, msgs/commit. It needs the database named
// by FLOODGATE_TEST_POSTGRES:
//
//	FLOODGATE_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	    go test -run '^$' -bench BenchmarkAppend -benchtime 3s ./internal/store/postgres/
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct{ nodes, senders int }{{1, 1}, {1, 64}, {1, 512}, {2, 64}, {2, 512}} {
		b.Run(fmt.Sprintf("nodes=%d/senders=%d", c.nodes, c.senders), func(b *testing.B) {
			benchAppend(b, c.nodes, c.senders)
		})
	}
}

func benchAppend(b *testing.B, nodes, senders int) {
	const convs = 16
	schema := newSchema(b)
	var commits, committed atomic.Int64
	stores := make([]*Store, nodes)
	for i := range stores {
		stores[i] = openTest(b, schema, Options{
			OnCommit: func(n int, _ time.Duration) {
				commits.Add(1)
				committed.Add(int64(n))
			},
		})
	}
	ctx := b.Context()
	if err := stores[0].CreateApp(ctx, store.App{ID: "bench", Secret: "s"}); err != nil {
		b.Fatal(err)
	}
	members := make([]string, convs)
	for i := range members {
		members[i] = "u" + strconv.Itoa(i)
	}
	for i := range convs {
		if _, err := stores[0].CreateConversation(ctx, store.Conversation{App: "bench", ID: "g:" + strconv.Itoa(i), Kind: store.KindGroup}, members); err != nil {
			b.Fatal(err)
		}
	}
	body := []byte(`{"text":"a message of a typical length, about a hundred bytes of JSON, sent in a benchmark"}`)
	var worker atomic.Int64
	// send appends as one sender: its own conversation and user, its node,
	// and a fresh client id each time, as the protocol requires one.
	send := func() func() error {
		w := int(worker.Add(1))
		s := stores[w%nodes]
		m := store.NewMessage{App: "bench", Conv: "g:" + strconv.Itoa(w%convs), Sender: "u" + strconv.Itoa(w%convs), Body: body}
		prefix, n := "w"+strconv.Itoa(w)+"-", 0
		return func() error {
			n++
			m.ClientMsgID = prefix + strconv.Itoa(n)
			_, err := s.AppendMessage(ctx, m)
			return err
		}
	}

	b.ReportAllocs()
	if senders == 1 {
		next := send()
		for b.Loop() {
			if err := next(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		// RunParallel starts parallelism × GOMAXPROCS goroutines.
		b.SetParallelism((senders + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			next := send()
			for pb.Next() {
				if err := next(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if c := commits.Load(); c > 0 {
		b.ReportMetric(float64(committed.Load())/float64(c), "msgs/commit")
	}
}

// BenchmarkConversationMembers measures ConversationMembers throughput with
// 2 (one per core) and 512 concurrent readers of 1 000 group conversations
// of 8 members, as the nodes' conversation caches read them after a
// restart. It reports reads/s and statements per read (coalescing: see
// coalesce.go). The database shares the machine: run it otherwise idle.
//
//	FLOODGATE_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	    go test -run '^$' -bench BenchmarkConversationMembers -benchtime 3s ./internal/store/postgres/
func BenchmarkConversationMembers(b *testing.B) {
	const convs = 1000
	s := openTest(b, newSchema(b), Options{})
	ctx := b.Context()
	if err := s.CreateApp(ctx, store.App{ID: "bench", Secret: "s"}); err != nil {
		b.Fatal(err)
	}
	for i := range convs {
		var members []string
		for u := range 8 {
			members = append(members, "u"+strconv.Itoa((i+u)%convs))
		}
		if _, err := s.CreateConversation(ctx, store.Conversation{App: "bench", ID: "g:" + strconv.Itoa(i), Kind: store.KindGroup}, members); err != nil {
			b.Fatal(err)
		}
	}
	for _, readers := range []int{2, 512} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			var worker atomic.Int64
			base := s.convMembers.statements.Load()
			b.ReportAllocs()
			b.SetParallelism((readers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				n := int(worker.Add(1)) * 7919
				for pb.Next() {
					n++
					if _, ms, err := s.ConversationMembers(ctx, "bench", "g:"+strconv.Itoa(n%convs), 100); err != nil || len(ms) != 8 {
						b.Errorf("ConversationMembers: %d members, %v", len(ms), err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			b.ReportMetric(float64(s.convMembers.statements.Load()-base)/float64(b.N), "stmts/op")
		})
	}
}
