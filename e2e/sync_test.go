package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/floodgate/floodgate/protocol"
)

// A client that was away while many conversations moved pages through
// sync: per-conversation pages with has_more, replies capped with more,
// conversations it may no longer read reported gone, and in the end every
// message exactly once, in order.
func TestSyncPaging(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "sync")
	alice := n.raw(t)
	alice.auth(a, "alice")
	const convs, perConv = 12, 150
	var ids []string
	for i := range convs {
		f := alice.call(protocol.OpConvCreate, protocol.CreateArgs{ID: fmt.Sprint("g", i), Kind: protocol.KindGroup, Members: []string{"bob"}})
		if f.Error != nil {
			t.Fatal(f.Error)
		}
		ids = append(ids, fmt.Sprint("g", i))
	}
	for i := range perConv {
		for _, id := range ids {
			if f := alice.call(protocol.OpSend, protocol.SendArgs{Conv: id, ClientMsgID: fmt.Sprint("m", i), Body: mustJSON(i)}); f.Error != nil {
				t.Fatal(f.Error)
			}
		}
	}
	// bob leaves one group: a sync naming it must say gone.
	bob := n.raw(t)
	bob.auth(a, "bob")
	if f := bob.call(protocol.OpConvLeave, protocol.ConvArgs{Conv: "g0"}); f.Error != nil {
		t.Fatal(f.Error)
	}
	cursors := map[string]uint64{"g0": 0, "g1": 10}
	got := map[string][]protocol.Message{}
	rounds, sawMore, sawGone := 0, false, false
	for {
		rounds++
		var res protocol.SyncResult
		f := bob.call(protocol.OpSync, protocol.SyncArgs{Convs: cursors, All: true, Limit: 100})
		if f.Error != nil || json.Unmarshal(f.Result, &res) != nil {
			t.Fatal(f.Error)
		}
		total := 0
		again := res.More
		for _, sc := range res.Convs {
			if sc.Gone {
				if sc.Conv != "g0" {
					t.Fatalf("%s reported gone", sc.Conv)
				}
				sawGone = true
				delete(cursors, sc.Conv)
				continue
			}
			if len(sc.Messages) > 100 {
				t.Fatalf("%s: %d messages in one page", sc.Conv, len(sc.Messages))
			}
			total += len(sc.Messages)
			got[sc.Conv] = append(got[sc.Conv], sc.Messages...)
			if n := len(sc.Messages); n > 0 {
				cursors[sc.Conv] = sc.Messages[n-1].Seq
			}
			again = again || sc.HasMore
		}
		if total > 1000 {
			t.Fatalf("one reply carried %d messages", total)
		}
		sawMore = sawMore || res.More
		if !again {
			break
		}
		if rounds > 50 {
			t.Fatal("sync does not converge")
		}
	}
	if !sawMore || !sawGone {
		t.Fatalf("more seen: %v, gone seen: %v", sawMore, sawGone)
	}
	for _, id := range ids[1:] {
		from := uint64(1)
		if id == "g1" {
			from = 11
		}
		checkSeqs(t, id, got[id], from, perConv)
	}
	if len(got["g0"]) != 0 {
		t.Fatal("messages of a group bob left")
	}
}
