package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/floodgate/floodgate/protocol"
)

// App B's users — including one with the same user id as app A's — try
// every operation on app A's conversations and see nothing of them.
func TestTenantIsolation(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "a")
	b := n.createApp(t, "b")

	// App A: alice and bob chat in a direct conversation, a group and a room.
	alice := n.raw(t)
	alice.auth(a, "alice")
	direct := rawDirect(t, alice, "bob")
	var g protocol.ConvResult
	f := alice.call(protocol.OpConvCreate, protocol.CreateArgs{ID: "shared-id", Kind: protocol.KindGroup, Members: []string{"bob"}})
	if f.Error != nil || json.Unmarshal(f.Result, &g) != nil {
		t.Fatal(f.Error)
	}
	if f := alice.call(protocol.OpConvCreate, protocol.CreateArgs{ID: "room-a", Kind: protocol.KindRoom}); f.Error != nil {
		t.Fatal(f.Error)
	}
	alice.call(protocol.OpRoomJoin, protocol.ConvArgs{Conv: "room-a"})
	for i, conv := range []string{direct, g.Conversation.ID, "room-a"} {
		if f := alice.call(protocol.OpSend, protocol.SendArgs{Conv: conv, ClientMsgID: "secret-" + conv, Body: mustJSON("secret of A")}); f.Error != nil {
			t.Fatalf("send %d: %v", i, f.Error)
		}
	}

	// App B's "alice" (same user id) and "mallory".
	for _, user := range []string{"alice", "mallory"} {
		r := n.raw(t)
		r.auth(b, user)
		for _, conv := range []string{direct, g.Conversation.ID, "room-a"} {
			for _, c := range []struct {
				op   string
				args any
			}{
				{protocol.OpSend, protocol.SendArgs{Conv: conv, ClientMsgID: "x", Body: mustJSON("intrusion")}},
				{protocol.OpHistory, protocol.HistoryArgs{Conv: conv}},
				{protocol.OpRead, protocol.ReadArgs{Conv: conv, Seq: 1}},
				{protocol.OpConvGet, protocol.ConvArgs{Conv: conv}},
				{protocol.OpConvAdd, protocol.MembersArgs{Conv: conv, Users: []string{user}}},
				{protocol.OpConvRemove, protocol.MembersArgs{Conv: conv, Users: []string{"bob"}}},
				{protocol.OpConvLeave, protocol.ConvArgs{Conv: conv}},
				{protocol.OpRoomJoin, protocol.ConvArgs{Conv: conv}},
				{protocol.OpTyping, protocol.ConvArgs{Conv: conv}},
				{protocol.OpPresenceSub, protocol.ConvArgs{Conv: conv}},
			} {
				f := r.call(c.op, c.args)
				if errCode(f) != protocol.CodeNotFound {
					t.Errorf("app B %s: %s on app A's %s = %+v %s, want not_found", user, c.op, conv, f.Error, f.Result)
				}
			}
		}
		// sync names them: gone; sync all finds nothing; the listing is empty.
		var sr protocol.SyncResult
		f := r.call(protocol.OpSync, protocol.SyncArgs{Convs: map[string]uint64{direct: 0, g.Conversation.ID: 0, "room-a": 0}, All: true})
		if f.Error != nil || json.Unmarshal(f.Result, &sr) != nil {
			t.Fatal(f.Error)
		}
		for _, sc := range sr.Convs {
			if !sc.Gone || len(sc.Messages) > 0 {
				t.Errorf("app B %s: sync shows %+v", user, sc)
			}
		}
		var lr protocol.ListResult
		f = r.call(protocol.OpConvList, protocol.ListArgs{})
		if f.Error != nil || json.Unmarshal(f.Result, &lr) != nil || len(lr.Conversations) != 0 {
			t.Errorf("app B %s: conv.list = %s %v", user, f.Result, f.Error)
		}
	}

	// The server API: B's credentials never reach A's data, and A's id with
	// B's secret is refused.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/server/conversations/" + g.Conversation.ID, nil},
		{"GET", "/v1/server/conversations/" + direct + "/messages", nil},
		{"POST", "/v1/server/conversations/room-a/messages", map[string]any{"body": "x"}},
		{"POST", "/v1/server/conversations/" + direct + "/members", map[string]any{"users": []string{"eve"}}},
		{"DELETE", "/v1/server/conversations/" + direct + "/members/bob", nil},
	} {
		if code := b.server(t, c.method, c.path, c.body, nil); code != http.StatusNotFound {
			t.Errorf("app B server API %s %s: HTTP %d, want 404", c.method, c.path, code)
		}
	}
	forged := app{ID: a.ID, Secret: b.Secret, n: n}
	if code := forged.server(t, "GET", "/v1/server/conversations/"+direct, nil, nil); code != http.StatusUnauthorized {
		t.Errorf("app A's id with app B's secret: HTTP %d, want 401", code)
	}

	// Only now does app B create anything: the same ids are B's own.
	for _, user := range []string{"alice", "mallory"} {
		r := n.raw(t)
		r.auth(b, user)
		// B's alice opening a direct conversation with bob gets B's own, empty one.
		var dr protocol.ConvResult
		f = r.call(protocol.OpConvDirect, protocol.DirectArgs{User: "bob"})
		if f.Error != nil || json.Unmarshal(f.Result, &dr) != nil {
			t.Fatal(f.Error)
		}
		if user == "alice" && (dr.Conversation.ID != direct || dr.Conversation.LastSeq != 0) {
			t.Errorf("app B's alice–bob conversation = %+v; want the same id, empty", dr.Conversation)
		}
	}
	// Ids are per app: B may use the id of A's group.
	rb := n.raw(t)
	rb.auth(b, "bob")
	if f := rb.call(protocol.OpConvCreate, protocol.CreateArgs{ID: "shared-id", Kind: protocol.KindGroup}); f.Error != nil {
		t.Errorf("app B cannot use an id app A uses: %v", f.Error)
	}

	// And A's data is untouched: one message each, alice still a member.
	for _, conv := range []string{direct, g.Conversation.ID, "room-a"} {
		var h protocol.HistoryResult
		f := alice.call(protocol.OpHistory, protocol.HistoryArgs{Conv: conv})
		if f.Error != nil || json.Unmarshal(f.Result, &h) != nil || len(h.Messages) != 1 || string(h.Messages[0].Body) != `"secret of A"` {
			t.Errorf("app A's %s after B's attempts: %s %v", conv, f.Result, f.Error)
		}
	}
}
