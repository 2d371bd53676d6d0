package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/protocol"
)

func TestMalformedFrames(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "a")
	r := n.raw(t)
	r.auth(a, "alice")
	for _, frame := range []string{`{`, `[]`, `"x"`, `{"id":5}`, `{"id":"x","op":"ping"}`, "\x00\xff", ``, `{"op":12}`} {
		r.write([]byte(frame))
		f, ok := r.read()
		if !ok || errCode(f) != protocol.CodeBadFrame {
			t.Fatalf("frame %q: reply %+v, want bad_frame", frame, f)
		}
	}
	if f := r.call("no.such.op", nil); errCode(f) != protocol.CodeUnknownOp {
		t.Fatalf("unknown op: %+v", f)
	}
	if f := r.call(protocol.OpSend, map[string]any{"conv": 5}); errCode(f) != protocol.CodeBadRequest {
		t.Fatalf("args of the wrong type: %+v", f)
	}
	if f := r.call(protocol.OpSend, protocol.SendArgs{Conv: "bad conv!", ClientMsgID: "m", Body: []byte(`1`)}); errCode(f) != protocol.CodeBadRequest {
		t.Fatalf("invalid conv id: %+v", f)
	}
	// The connection survives all of it.
	if f := r.call(protocol.OpPing, nil); f.Error != nil {
		t.Fatal(f.Error)
	}
}

func TestOversizeFrame(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.MaxFrameBytes = 8 << 10
		c.MaxBodyBytes = 4 << 10
		c.SendQueueBytes = 64 << 10
	})
	a := n.createApp(t, "a")
	r := n.raw(t)
	r.auth(a, "alice")
	conv := rawDirect(t, r, "bob")
	big := strings.Repeat("x", 5<<10)
	if f := r.call(protocol.OpSend, protocol.SendArgs{Conv: conv, ClientMsgID: "m", Body: mustJSON(big)}); errCode(f) != protocol.CodeBodyTooLarge {
		t.Fatalf("body over max-body-bytes: %+v", f)
	}
	r.write([]byte(`{"id":9,"op":"ping","args":{"pad":"` + strings.Repeat("y", 9<<10) + `"}}`))
	code, frames := r.closeCode()
	if code != 1009 || len(frames) != 1 || errCode(frames[0]) != protocol.CodeFrameTooLarge {
		t.Fatalf("oversize frame: close %d after %+v", code, frames)
	}
	// The node is fine afterwards.
	if f := n.raw(t).auth(a, "carol"); f.Error != nil {
		t.Fatal(f.Error)
	}
}

func TestRateLimit(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Rate = 1; c.Burst = 5 })
	a := n.createApp(t, "a")
	r := n.raw(t)
	r.auth(a, "alice") // the first token
	var limited protocol.Frame
	for range 10 {
		f := r.call(protocol.OpPing, nil)
		if errCode(f) == protocol.CodeRateLimited {
			limited = f
			break
		}
	}
	if limited.Error == nil || limited.Error.RetryAfterMS <= 0 {
		t.Fatalf("no rate_limited error with retry_after_ms: %+v", limited)
	}
	// A client that ignores it is disconnected.
	for range 200 {
		r.write([]byte(`{"op":"ping"}`))
	}
	if code, _ := r.closeCode(); code != protocol.CloseRateLimited {
		t.Fatalf("close code %d, want %d", code, protocol.CloseRateLimited)
	}
}

func TestPerConnectionLimits(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.MaxRooms = 2; c.MaxSyncConvs = 3; c.MaxGroupMembers = 4 })
	a := n.createApp(t, "a")
	r := n.raw(t)
	r.auth(a, "alice")
	for i := range 3 {
		id := fmt.Sprint("room", i)
		if f := r.call(protocol.OpConvCreate, protocol.CreateArgs{ID: id, Kind: protocol.KindRoom}); f.Error != nil {
			t.Fatal(f.Error)
		}
		f := r.call(protocol.OpRoomJoin, protocol.ConvArgs{Conv: id})
		if i < 2 && f.Error != nil {
			t.Fatal(f.Error)
		}
		if i == 2 && errCode(f) != protocol.CodeLimit {
			t.Fatalf("third room: %+v, want limit_exceeded", f)
		}
	}
	f := r.call(protocol.OpSync, protocol.SyncArgs{Convs: map[string]uint64{"a": 0, "b": 0, "c": 0, "d": 0}})
	if errCode(f) != protocol.CodeLimit {
		t.Fatalf("sync of 4 conversations: %+v", f)
	}
	f = r.call(protocol.OpConvCreate, protocol.CreateArgs{Kind: protocol.KindGroup, Members: []string{"b", "c", "d", "e"}})
	if errCode(f) != protocol.CodeLimit {
		t.Fatalf("group of 5: %+v", f)
	}
	f = r.call(protocol.OpConvCreate, protocol.CreateArgs{Kind: protocol.KindGroup, Members: []string{"b", "c"}})
	var g protocol.ConvResult
	if f.Error != nil || json.Unmarshal(f.Result, &g) != nil {
		t.Fatal(f.Error)
	}
	if f := r.call(protocol.OpConvAdd, protocol.MembersArgs{Conv: g.Conversation.ID, Users: []string{"d", "e"}}); errCode(f) != protocol.CodeLimit {
		t.Fatalf("growing the group to 5: %+v", f)
	}
	if f := r.call(protocol.OpConvAdd, protocol.MembersArgs{Conv: g.Conversation.ID, Users: []string{"d"}}); f.Error != nil {
		t.Fatal(f.Error)
	}
}

// A client that stops reading while a room floods is closed as a slow
// consumer, and the node's memory stays bounded by the queue budget rather
// than by what was sent.
func TestSlowConsumer(t *testing.T) {
	const queue = 256 << 10
	n := startNode(t, func(c *config.Config) { c.SendQueueBytes = queue; c.Rate = 1e6; c.Burst = 1e6 })
	a := n.createApp(t, "a")
	sender := n.raw(t)
	sender.auth(a, "sender")
	if f := sender.call(protocol.OpConvCreate, protocol.CreateArgs{ID: "flood", Kind: protocol.KindRoom}); f.Error != nil {
		t.Fatal(f.Error)
	}
	if f := sender.call(protocol.OpRoomJoin, protocol.ConvArgs{Conv: "flood"}); f.Error != nil {
		t.Fatal(f.Error)
	}
	// The slow client: joins, then never reads again. A small receive
	// buffer makes the server's queue fill quickly.
	slow := n.raw(t)
	slow.auth(a, "slow")
	if f := slow.call(protocol.OpRoomJoin, protocol.ConvArgs{Conv: "flood"}); f.Error != nil {
		t.Fatal(f.Error)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	body := mustJSON(strings.Repeat("z", 8<<10))
	const total = 4000 // 32 MiB through the room, 128 times the queue budget
	for i := range total {
		// The sender must keep reading its own echoes, or it would be the
		// slow one.
		f := sender.call(protocol.OpSend, protocol.SendArgs{Conv: "flood", ClientMsgID: fmt.Sprint("m", i), Body: body})
		if f.Error != nil {
			t.Fatal(f.Error)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap growth after %d MiB through the room: %d KiB", total*8>>10, growth>>10)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB while a client did not read", growth>>20)
	}
	// The slow client sees the frames that fit, then the close.
	_ = slow.conn.SetReadDeadline(time.Now().Add(patience))
	var closeCode int
	for {
		data, op, err := wsutil.ReadServerData(slow.conn)
		if err != nil {
			if ce, ok := err.(wsutil.ClosedError); ok {
				closeCode = int(ce.Code)
			}
			break
		}
		if op == ws.OpText && bytes.Contains(data, []byte(`"directive"`)) {
			continue
		}
	}
	if closeCode != 0 && closeCode != protocol.CloseSlowConsumer {
		t.Fatalf("slow client closed with %d, want %d (or a dropped socket)", closeCode, protocol.CloseSlowConsumer)
	}
	metrics := scrape(t, n)
	if !strings.Contains(metrics, "floodgate_slow_consumer_closes_total 1") {
		t.Fatalf("slow consumer close not counted:\n%s", grepLines(metrics, "slow_consumer"))
	}
}

func rawDirect(t *testing.T, r *raw, peer string) string {
	t.Helper()
	f := r.call(protocol.OpConvDirect, protocol.DirectArgs{User: peer})
	var cr protocol.ConvResult
	if f.Error != nil || json.Unmarshal(f.Result, &cr) != nil {
		t.Fatalf("conv.direct: %+v", f)
	}
	return cr.Conversation.ID
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
