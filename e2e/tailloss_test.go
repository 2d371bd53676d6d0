package e2e

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/server"
)

// dropper is a bus that loses the next message published to one user's
// topic and then reports the loss, as NATS does for a slow consumer.
type dropper struct {
	bus.Bus
	h      bus.Handler
	victim atomic.Pointer[string]
}

func (d *dropper) Publish(t bus.Topic, data []byte) error {
	if v := d.victim.Load(); v != nil && t.Kind == bus.User && t.ID == *v && bytes.Contains(data, []byte(`"ev":"message"`)) {
		d.victim.Store(nil)
		go d.h.Lost(t, false)
		return nil
	}
	return d.Bus.Publish(t, data)
}

// The last message of a conversation is lost on the bus; nothing follows
// it that would reveal the gap. The bus's loss report makes the gateway
// send "resync", and the client fetches the message without reconnecting.
func TestTailLossHealedWithoutReconnect(t *testing.T) {
	var d *dropper
	n := startNode(t, nil, server.WithBusWrapper(func(b bus.Bus, h bus.Handler) bus.Bus {
		d = &dropper{Bus: b, h: h}
		return d
	}))
	a := n.createApp(t, "tail")
	alice := a.dial(t, "alice")
	bob := a.dial(t, "bob")
	bobCol := collect(bob)
	ctx := ctxT(t)
	conv, err := alice.Direct(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, conv.ID, "one"); err != nil {
		t.Fatal(err)
	}
	bobCol.waitCount(t, conv.ID, 1)

	victim := "bob"
	d.victim.Store(&victim)
	if _, err := alice.Send(ctx, conv.ID, "two, lost on the bus"); err != nil {
		t.Fatal(err)
	}
	msgs := bobCol.waitCount(t, conv.ID, 2)
	checkSeqs(t, "bob", msgs, 1, 2)
	if d.victim.Load() != nil {
		t.Fatal("nothing was dropped: the test did not exercise the loss")
	}
	connects := 0
	bobCol.mu.Lock()
	for _, ev := range bobCol.evs {
		switch ev.Type {
		case client.EventConnected:
			connects++
		case client.EventDisconnected:
			t.Errorf("bob reconnected: %+v", ev.State)
		}
	}
	bobCol.mu.Unlock()
	if connects != 1 {
		t.Errorf("bob connected %d times, want 1", connects)
	}
	if m := scrape(t, n); !bytes.Contains([]byte(m), []byte("floodgate_resyncs_total 1")) {
		t.Errorf("resync not counted:\n%s", grepLines(m, "resync"))
	}
}
