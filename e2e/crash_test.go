package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/protocol"
)

// The server is killed with SIGKILL while clients send; after a restart on
// the same data directory every acknowledged message is there, the seqs
// run 1..N with nothing skipped or reused, nothing is stored twice, and a
// receiver saw every message once, in order.
func TestKill9WhileSending(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	p := newProc(t, "server")
	p.start()
	var created struct{ ID, Secret string }
	if code := httpJSON(t, "POST", p.httpURL()+"/admin/v1/apps", map[string]string{"name": "crash"}, &created,
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+adminToken) }); code != http.StatusCreated {
		t.Fatalf("create app: HTTP %d", code)
	}
	a := app{ID: created.ID, Secret: created.Secret}
	dial := func(user string) *client.Client {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		c, err := client.Dial(ctx, client.Options{URL: p.url(), App: a.ID,
			Token:      func(context.Context) (string, error) { return a.token(t, user), nil },
			BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond, EventBuffer: 1 << 14})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const senders = 4
	users := []string{"receiver"}
	for i := range senders {
		users = append(users, fmt.Sprint("sender", i))
	}
	receiver := dial("receiver")
	recvCol := collect(receiver)
	ctx, cancel := context.WithTimeout(context.Background(), 2*patience)
	defer cancel()
	g, err := receiver.CreateGroup(ctx, "crash", users[1:])
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		acked = map[string]uint64{} // client_msg_id → seq
	)
	ackCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	const perSender = 150
	var wg sync.WaitGroup
	for s := range senders {
		c := dial(users[1+s])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				id := fmt.Sprintf("s%d-%d", s, i)
				res, err := c.SendWithID(ctx, g.ID, id, map[string]int{"s": s, "i": i})
				if err != nil {
					t.Errorf("send %s: %v", id, err)
					return
				}
				mu.Lock()
				if prev, ok := acked[id]; ok && prev != res.Seq {
					t.Errorf("%s acked as seq %d and %d", id, prev, res.Seq)
				}
				acked[id] = res.Seq
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "some acks", func() bool { return ackCount() >= senders*perSender/3 })
	p.kill()
	before := ackCount()
	t.Logf("killed after %d acks", before)
	p.start()
	wg.Wait()
	total := senders * perSender
	if ackCount() != total {
		t.Fatalf("%d acks, want %d", ackCount(), total)
	}

	// The store: seqs 1..total, each acked message at its seq, none twice.
	var stored []protocol.Message
	for seq := uint64(0); ; {
		var h protocol.HistoryResult
		if code := a.serverAt(t, p.httpURL(), "GET", fmt.Sprintf("/v1/server/conversations/%s/messages?direction=after&seq=%d&limit=100", g.ID, seq), &h); code != 200 {
			t.Fatalf("history: HTTP %d", code)
		}
		stored = append(stored, h.Messages...)
		if !h.HasMore {
			break
		}
		seq = h.Messages[len(h.Messages)-1].Seq
	}
	checkSeqs(t, "store", stored, 1, uint64(total))
	seen := map[string]bool{}
	for _, m := range stored {
		if seen[m.ClientMsgID] {
			t.Fatalf("%s stored twice", m.ClientMsgID)
		}
		seen[m.ClientMsgID] = true
		if acked[m.ClientMsgID] != m.Seq {
			t.Fatalf("%s stored at seq %d, acked as %d", m.ClientMsgID, m.Seq, acked[m.ClientMsgID])
		}
	}
	// The receiver, which lived through the crash, got each once, in order.
	checkSeqs(t, "receiver", recvCol.waitCount(t, g.ID, total), 1, uint64(total))
}

// serverAt calls the server API of a node at base.
func (a app) serverAt(t testing.TB, base, method, path string, out any) int {
	t.Helper()
	return httpJSON(t, method, base+path, nil, out, func(r *http.Request) { r.SetBasicAuth(a.ID, a.Secret) })
}

// SIGTERM: the node tells every client to reconnect (directive, then 4000),
// exits 0, and what it acknowledged is there after a restart.
func TestSIGTERMGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	p := newProc(t, "server")
	p.start()
	var created struct{ ID, Secret string }
	httpJSON(t, "POST", p.httpURL()+"/admin/v1/apps", map[string]string{"name": "term"}, &created,
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+adminToken) })
	a := app{ID: created.ID, Secret: created.Secret}
	r := rawAt(t, p.url())
	if f := r.auth(a, "alice"); f.Error != nil {
		t.Fatal(f.Error)
	}
	conv := rawDirect(t, r, "bob")
	if f := r.call(protocol.OpSend, protocol.SendArgs{Conv: conv, ClientMsgID: "m1", Body: mustJSON("kept")}); f.Error != nil {
		t.Fatal(f.Error)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, frames := r.closeCode()
	if code != protocol.CloseShutdown {
		t.Fatalf("close code %d, want %d", code, protocol.CloseShutdown)
	}
	var d protocol.Directive
	if len(frames) == 0 || frames[len(frames)-1].Ev != protocol.EvDirective || jsonUnmarshal(frames[len(frames)-1].Data, &d) != nil ||
		d.Action != protocol.ActionReconnect || d.RetryAfterMS <= 0 {
		t.Fatalf("frames before close: %+v", frames)
	}
	<-p.exited
	if st := p.cmd.ProcessState; !st.Success() {
		t.Fatalf("exit status %v", st)
	}
	p.cmd = nil
	p.start()
	var h protocol.HistoryResult
	a.serverAt(t, p.httpURL(), "GET", "/v1/server/conversations/"+conv+"/messages", &h)
	if len(h.Messages) != 1 || string(h.Messages[0].Body) != `"kept"` {
		t.Fatalf("after restart: %+v", h)
	}
}
