package sqlite

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// BenchmarkAppend measures AppendMessage throughput for each Sync mode:
// one sender at a time (every append waits for its own commit, so this is
// the cost of one fsync'd transaction) and 64 or 512 concurrent senders
// spread over 16 conversations (group commit shares each fsync), and 512
// senders over 1000 conversations, where a commit touches as many pages as
// it has messages (as in "floodgate bench group --groups 1000"). It reports
// msgs/s and the mean batch size, msgs/commit.
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 3s ./internal/store/sqlite/
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"full", "normal"} {
		for _, senders := range []int{1, 64, 512} {
			b.Run(fmt.Sprintf("sync=%s/senders=%d", mode, senders), func(b *testing.B) {
				benchAppend(b, mode, senders, 16)
			})
		}
	}
	b.Run("sync=full/senders=512/convs=1000", func(b *testing.B) {
		benchAppend(b, "full", 512, 1000)
	})
}

func benchAppend(b *testing.B, mode string, senders, convs int) {
	const members = 16
	var commits, committed atomic.Int64
	s, err := Open(b.Context(), Options{
		Path:   filepath.Join(b.TempDir(), "db"),
		Sync:   mode,
		Logger: slog.New(slog.DiscardHandler),
		OnCommit: func(n int, _ time.Duration) {
			commits.Add(1)
			committed.Add(int64(n))
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	if err := s.CreateApp(ctx, store.App{ID: "bench", Secret: "s"}); err != nil {
		b.Fatal(err)
	}
	users := make([]string, members)
	for i := range users {
		users[i] = "u" + strconv.Itoa(i)
	}
	for i := range convs {
		if _, err := s.CreateConversation(ctx, store.Conversation{App: "bench", ID: "g:" + strconv.Itoa(i), Kind: store.KindGroup}, users); err != nil {
			b.Fatal(err)
		}
	}
	body := []byte(`{"text":"a message of a typical length, about a hundred bytes of JSON, sent in a benchmark"}`)
	var worker atomic.Int64
	// send appends as one sender: its own conversation and user, and a
	// fresh client id each time, as the protocol requires one.
	send := func() func() error {
		w := int(worker.Add(1))
		m := store.NewMessage{App: "bench", Conv: "g:" + strconv.Itoa(w%convs), Sender: "u" + strconv.Itoa(w%members), Body: body}
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
