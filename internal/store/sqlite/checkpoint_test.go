package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// Pages reach the database file only through a checkpoint; with the
// writer's own checkpoint far away (walBackstopPages), the file growing
// while the store is open shows the background checkpoints at work.
func TestBackgroundCheckpointMovesPagesOutOfTheWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := openTest(t, path, Options{Sync: "normal"})
	ctx := t.Context()
	if err := s.CreateApp(ctx, store.App{ID: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConversation(ctx, store.Conversation{App: "a", ID: "g", Kind: store.KindGroup}, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	// ~250 KB of bodies: under a hundred pages, below even SQLite's
	// default automatic checkpoint (1000 pages), far below the backstop.
	body := []byte(`"` + strings.Repeat("x", 200) + `"`)
	for i := range 1000 {
		if _, err := s.AppendMessage(ctx, store.NewMessage{App: "a", Conv: "g", Sender: "alice", Body: body, ClientMsgID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() < before+100<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (was %d): no checkpoint ran", size(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And the store still reads what it wrote.
	msgs, err := s.MessagesAfter(ctx, "a", "g", 0, 10)
	if err != nil || len(msgs) != 10 {
		t.Fatalf("MessagesAfter: %d messages, %v", len(msgs), err)
	}
}
