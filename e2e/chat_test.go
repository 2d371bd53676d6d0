package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/protocol"
)

func TestDirectChat(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "chat")
	alice, bob := a.dial(t, "alice"), a.dial(t, "bob")
	aliceCol, bobCol := collect(alice), collect(bob)
	ctx := ctxT(t)

	conv, err := alice.Direct(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	conv2, err := bob.Direct(ctx, "alice")
	if err != nil || conv2.ID != conv.ID || conv.Kind != protocol.KindDirect {
		t.Fatalf("bob's direct conversation = %+v, %v; alice's = %+v", conv2, err, conv)
	}
	const rounds = 20
	for i := range rounds {
		if _, err := alice.Send(ctx, conv.ID, map[string]any{"text": fmt.Sprint("a", i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Send(ctx, conv.ID, map[string]any{"text": fmt.Sprint("b", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for who, col := range map[string]*collector{"alice": aliceCol, "bob": bobCol} {
		msgs := col.waitCount(t, conv.ID, 2*rounds)
		checkSeqs(t, who, msgs, 1, 2*rounds)
		for i, m := range msgs {
			want := map[bool]string{true: "alice", false: "bob"}[i%2 == 0]
			if m.Sender != want || !strings.Contains(string(m.Body), fmt.Sprint(want[:1], i/2)) {
				t.Fatalf("%s: message %d = %s from %s", who, i, m.Body, m.Sender)
			}
		}
	}
}

// A group of 50 members, each on two devices, with 10 members sending at
// once: every connection gets every message once, in order.
func TestGroupFanout(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "group")
	const members, devices, senders, perSender = 50, 2, 10, 20
	users := make([]string, members)
	for i := range users {
		users[i] = fmt.Sprintf("user%02d", i)
	}
	var cols []*collector
	var clients []*client.Client
	for _, u := range users {
		for range devices {
			c := a.dial(t, u)
			clients = append(clients, c)
			cols = append(cols, collect(c))
		}
	}
	ctx := ctxT(t)
	g, err := clients[0].CreateGroup(ctx, "fifty", users[1:])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[s*devices*members/senders]
			for i := range perSender {
				if _, err := c.Send(ctx, g.ID, map[string]any{"s": s, "i": i}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = senders * perSender
	for i, col := range cols {
		msgs := col.waitCount(t, g.ID, total)
		checkSeqs(t, fmt.Sprint("connection ", i), msgs, 1, total)
	}
}

func TestResendSameClientMsgID(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "dedupe")
	alice := a.dial(t, "alice")
	bobCol := collect(a.dial(t, "bob"))
	ctx := ctxT(t)
	conv, err := alice.Direct(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	first, err := alice.SendWithID(ctx, conv.ID, "m-1", "hello")
	if err != nil || first.Duplicate {
		t.Fatalf("first send = %+v, %v", first, err)
	}
	for range 3 {
		again, err := alice.SendWithID(ctx, conv.ID, "m-1", "hello again")
		if err != nil || !again.Duplicate || again.Seq != first.Seq || again.TS != first.TS {
			t.Fatalf("resend = %+v, %v; first = %+v", again, err, first)
		}
	}
	if _, err := alice.SendWithID(ctx, conv.ID, "m-2", "next"); err != nil {
		t.Fatal(err)
	}
	h, err := alice.History(ctx, conv.ID, 0, protocol.After, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, "history", h.Messages, 1, 2)
	if string(h.Messages[0].Body) != `"hello"` {
		t.Fatalf("stored body %s, want the first send's", h.Messages[0].Body)
	}
	checkSeqs(t, "bob", bobCol.waitCount(t, conv.ID, 2), 1, 2)
}

// Bob's connection is cut (not closed) while alice sends 1000 messages; the
// SDK reconnects by itself and bob gets every message once, in order.
func TestResumeAfterDisconnect(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "resume")
	p := newProxy(t, n.srv.Addr().String())
	alice := a.dial(t, "alice")
	bob := a.dial(t, "bob", func(o *client.Options) { o.URL = p.url() })
	bobCol := collect(bob)
	ctx := ctxT(t)
	conv, err := alice.Direct(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := alice.Send(ctx, conv.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	bobCol.waitCount(t, conv.ID, 10)

	p.cut()
	const offline = 1000
	for i := range offline {
		if _, err := alice.Send(ctx, conv.ID, 10+i); err != nil {
			t.Fatal(err)
		}
	}
	p.restore()
	msgs := bobCol.waitCount(t, conv.ID, 10+offline)
	checkSeqs(t, "bob", msgs, 1, 10+offline)
	// Nothing more may trickle in as a duplicate after the resume.
	if _, err := alice.Send(ctx, conv.ID, "last"); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, "bob after resume", bobCol.waitCount(t, conv.ID, 11+offline), 1, 11+offline)
}

func TestHistoryPaging(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "history")
	alice := a.dial(t, "alice")
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, "h", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	const total = 250
	for i := range total {
		if _, err := alice.Send(ctx, g.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	// Backwards from the newest, 100 at a time: 151–250, 51–150, 1–50.
	var seq uint64
	var back []protocol.Message
	for page := 0; ; page++ {
		h, err := alice.History(ctx, g.ID, seq, protocol.Before, 100)
		if err != nil {
			t.Fatal(err)
		}
		back = append(h.Messages, back...)
		if !h.HasMore {
			if page != 2 {
				t.Fatalf("backwards: %d pages, want 3", page+1)
			}
			break
		}
		seq = h.Messages[0].Seq
	}
	checkSeqs(t, "backwards", back, 1, total)
	// Forwards from the start.
	seq = 0
	var fwd []protocol.Message
	for {
		h, err := alice.History(ctx, g.ID, seq, protocol.After, 100)
		if err != nil {
			t.Fatal(err)
		}
		fwd = append(fwd, h.Messages...)
		if !h.HasMore {
			break
		}
		seq = h.Messages[len(h.Messages)-1].Seq
	}
	checkSeqs(t, "forwards", fwd, 1, total)
	// A page in the middle, and the limit bound.
	h, err := alice.History(ctx, g.ID, 100, protocol.After, 5)
	if err != nil || !h.HasMore {
		t.Fatalf("middle page: %+v, %v", h, err)
	}
	checkSeqs(t, "middle", h.Messages, 101, 105)
	var res protocol.HistoryResult
	err = alice.Call(ctx, protocol.OpHistory, protocol.HistoryArgs{Conv: g.ID, Limit: 101}, &res)
	if perr, ok := err.(*protocol.Error); !ok || perr.Code != protocol.CodeBadRequest {
		t.Fatalf("limit 101: %v, want bad_request", err)
	}
	// Server API, as the backend.
	var sh protocol.HistoryResult
	if code := a.server(t, "GET", "/v1/server/conversations/"+g.ID+"/messages?seq=3&direction=before&limit=10", nil, &sh); code != 200 {
		t.Fatalf("server history: HTTP %d", code)
	}
	checkSeqs(t, "server history", sh.Messages, 1, 2)
}

func TestReadCursorsAndUnread(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "read")
	alice, bob := a.dial(t, "alice"), a.dial(t, "bob")
	aliceCol := collect(alice)
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, "r", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := alice.Send(ctx, g.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	unread := func(c *client.Client) (uint64, uint64) {
		t.Helper()
		l, err := c.Conversations(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range l.Conversations {
			if s.Conversation.ID == g.ID {
				if s.LastMessage == nil || s.LastMessage.Seq != 5 {
					t.Fatalf("last message = %+v", s.LastMessage)
				}
				return s.Unread, s.ReadSeq
			}
		}
		t.Fatalf("group not listed")
		return 0, 0
	}
	if u, _ := unread(bob); u != 5 {
		t.Fatalf("bob's unread = %d, want 5", u)
	}
	if u, _ := unread(alice); u != 0 {
		t.Fatalf("the sender's unread = %d, want 0", u)
	}
	if seq, err := bob.MarkRead(ctx, g.ID, 3); err != nil || seq != 3 {
		t.Fatalf("MarkRead(3) = %d, %v", seq, err)
	}
	if u, r := unread(bob); u != 2 || r != 3 {
		t.Fatalf("bob's unread, read seq = %d, %d; want 2, 3", u, r)
	}
	ev := aliceCol.waitEvent(t, "read event", func(ev client.Event) bool {
		return ev.Type == client.EventRead && ev.Read.User == "bob"
	})
	if ev.Read.Conv != g.ID || ev.Read.Seq != 3 {
		t.Fatalf("read event = %+v", ev.Read)
	}
	if seq, err := bob.MarkRead(ctx, g.ID, 1); err != nil || seq != 3 {
		t.Fatalf("MarkRead backwards = %d, %v; want 3", seq, err)
	}
	if seq, err := bob.MarkRead(ctx, g.ID, 99); err != nil || seq != 5 {
		t.Fatalf("MarkRead past the end = %d, %v; want 5", seq, err)
	}
	if u, _ := unread(bob); u != 0 {
		t.Fatalf("unread after reading all = %d", u)
	}
}

func TestRoomJoinLeaveFanout(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "rooms")
	ctx := ctxT(t)
	host := a.dial(t, "host")
	room, err := host.CreateRoom(ctx, "lobby", "Lobby")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.JoinRoom(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Send(ctx, room.ID, "before anyone"); err != nil {
		t.Fatal(err)
	}
	const audience = 20
	var cols []*collector
	var clients []*client.Client
	for i := range audience {
		c := a.dial(t, fmt.Sprint("viewer", i))
		if _, err := c.JoinRoom(ctx, room.ID); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		cols = append(cols, collect(c))
	}
	outsider := a.dial(t, "outsider")
	_, err = outsider.Send(ctx, room.ID, "not joined")
	if perr, ok := err.(*protocol.Error); !ok || perr.Code != protocol.CodeForbidden {
		t.Fatalf("send without joining: %v, want forbidden", err)
	}
	for i := range 10 {
		if _, err := host.Send(ctx, room.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	for i, col := range cols {
		// The stream starts after the seq the join returned.
		checkSeqs(t, fmt.Sprint("viewer", i), col.waitCount(t, room.ID, 10), 2, 11)
	}
	// Half leave; the rest keep receiving.
	for i := range audience / 2 {
		if err := clients[i].LeaveRoom(ctx, room.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := host.Send(ctx, room.ID, "after leave"); err != nil {
		t.Fatal(err)
	}
	for i := audience / 2; i < audience; i++ {
		checkSeqs(t, fmt.Sprint("viewer", i), cols[i].waitCount(t, room.ID, 11), 2, 12)
	}
	// One more message and a marker proves the leavers got nothing more.
	for i := range audience / 2 {
		if got := len(cols[i].messages(room.ID)); got != 10 {
			t.Fatalf("viewer%d left but has %d messages", i, got)
		}
	}
	// Rooms are not unread-counted nor listed.
	l, err := host.Conversations(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Conversations {
		if s.Conversation.ID == room.ID {
			t.Fatal("room listed among conversations")
		}
	}
}

func TestTypingAndPresence(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "presence")
	ctx := ctxT(t)
	alice := a.dial(t, "alice")
	aliceCol := collect(alice)
	g, err := alice.CreateGroup(ctx, "p", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	online, err := alice.SubscribePresence(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(online, ",") != "alice" {
		t.Fatalf("online = %v, want [alice]", online)
	}
	bob := a.dial(t, "bob")
	bobCol := collect(bob)
	aliceCol.waitEvent(t, "bob online", func(ev client.Event) bool {
		return ev.Type == client.EventPresence && ev.Presence.User == "bob" && ev.Presence.Online
	})
	if err := bob.Typing(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	aliceCol.waitEvent(t, "bob typing", func(ev client.Event) bool {
		return ev.Type == client.EventTyping && ev.Typing.User == "bob" && ev.Typing.Conv == g.ID
	})
	bob.Close()
	aliceCol.waitEvent(t, "bob offline", func(ev client.Event) bool {
		return ev.Type == client.EventPresence && ev.Presence.User == "bob" && !ev.Presence.Online
	})
	bobCol.mu.Lock()
	for _, ev := range bobCol.evs {
		if ev.Type == client.EventTyping {
			t.Error("bob got his own typing event")
		}
	}
	bobCol.mu.Unlock()
}

// proxy forwards TCP to a node and can cut every connection, refusing new
// ones until restored, to take clients offline without closing them.
type proxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	// deaf makes the proxy swallow what the target sends, keeping the
	// connections open: a half-dead link, the gray failure TCP cannot see.
	deaf atomic.Bool
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String(), target: target}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) url() string { return "ws://" + p.addr + "/v1/ws" }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go pipe(c, up, &p.deaf)
			go pipe(up, c, nil)
		}
	}()
}

// pipe copies src to dst until either fails; while drop is set it reads
// and discards.
func pipe(dst, src net.Conn, drop *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (drop == nil || !drop.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// cut drops every connection and stops accepting.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restore accepts connections again on the same address.
func (p *proxy) restore() {
	var ln net.Listener
	var err error
	waitFor(p.t, "proxy port to be free", func() bool {
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	})
	p.serve(ln)
}
