package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu    sync.Mutex
	got   map[Topic][]string
	lost  []Topic
	all   int
	query func([]byte) []byte
}

func (r *recorder) Deliver(t Topic, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = make(map[Topic][]string)
	}
	r.got[t] = append(r.got[t], string(data))
}

func (r *recorder) Lost(t Topic, all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if all {
		r.all++
		return
	}
	r.lost = append(r.lost, t)
}

func (r *recorder) Query(data []byte) []byte {
	if r.query != nil {
		return r.query(data)
	}
	return nil
}

func (r *recorder) count(t Topic) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got[t])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func connect(t *testing.T, h Handler, o Options) *NATS {
	t.Helper()
	e, err := StartEmbedded("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	o.InProcess = e
	b, err := Connect(t.Context(), h, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestDeliverInOrderPerTopic(t *testing.T) {
	r := &recorder{}
	b := connect(t, r, Options{})
	topics := []Topic{{User, "app.1", "alice@x.org"}, {Room, "app.1", "lobby"}, {App, "app.1", ""}, {User, "app.2", "alice@x.org"}}
	for _, tp := range topics[:3] {
		if err := b.Subscribe(t.Context(), tp); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Subscribe(t.Context(), topics[0]); err != nil {
		t.Fatal("second Subscribe:", err)
	}
	const n = 500
	for i := range n {
		for _, tp := range topics {
			if err := b.Publish(tp, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tp := range topics[:3] {
		waitFor(t, "deliveries", func() bool { return r.count(tp) == n })
		r.mu.Lock()
		for i, s := range r.got[tp] {
			if s != fmt.Sprint(i) {
				t.Fatalf("%v: message %d is %q", tp, i, s)
			}
		}
		r.mu.Unlock()
	}
	if c := r.count(topics[3]); c != 0 {
		t.Fatalf("unsubscribed topic of another app got %d messages", c)
	}
	if got := b.Subscriptions(); got != 3 {
		t.Fatalf("Subscriptions = %d, want 3", got)
	}
	if err := b.Unsubscribe(topics[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Healthy(); err != nil {
		t.Fatal(err)
	}
}

func TestGather(t *testing.T) {
	r := &recorder{query: func(q []byte) []byte { return append([]byte("re:"), q...) }}
	b := connect(t, r, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := b.Gather(ctx, []byte("who"), 1)
	if err != nil || len(got) != 1 || string(got[0]) != "re:who" {
		t.Fatalf("Gather = %q, %v", got, err)
	}
}

// A dispatcher that cannot keep up makes NATS drop; the drop must be
// reported so the gateway can resync, and the buffer must stay bounded.
func TestSlowConsumerReportsLoss(t *testing.T) {
	block := make(chan struct{})
	r := &blockingRecorder{block: block}
	var dropped int
	var mu sync.Mutex
	b := connect(t, r, Options{Dispatchers: 1, Pending: 8, OnDrop: func(n int) { mu.Lock(); dropped = n; mu.Unlock() }})
	tp := Topic{User, "a", "u"}
	if err := b.Subscribe(t.Context(), tp); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		_ = b.Publish(tp, []byte("x"))
	}
	waitFor(t, "loss report", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.lost) > 0 })
	close(block)
	mu.Lock()
	defer mu.Unlock()
	if dropped == 0 {
		t.Fatal("OnDrop not called")
	}
}

type blockingRecorder struct {
	recorder
	block chan struct{}
}

func (r *blockingRecorder) Deliver(t Topic, data []byte) { <-r.block }

// Subscription changes are capped per node: past the rate, Unsubscribe
// refuses at once (the caller keeps the subscription for later) rather than
// flooding a NATS cluster with interest changes.
func TestSubscriptionChangesAreRateLimited(t *testing.T) {
	b := connect(t, &recorder{}, Options{SubscribeRate: 10}) // burst of 1
	a, c := Topic{User, "a", "1"}, Topic{User, "a", "2"}
	if err := b.Subscribe(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(t.Context(), c); err != nil { // waits for its turn
		t.Fatal(err)
	}
	refused := 0
	for _, tp := range []Topic{a, c} {
		if err := b.Unsubscribe(tp); errors.Is(err, ErrRateLimited) {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("two unsubscribes right after two subscribes at 10/s were both allowed")
	}
	if got := b.Subscriptions(); got != refused {
		t.Fatalf("%d subscriptions left, want the %d refused unsubscribes kept", got, refused)
	}
}

// In PerApp mode topics are served by one wildcard subscription per app
// and kind: deliveries still name their topic, order per topic holds, and
// the wildcard goes with the app's last topic.
func TestPerAppWildcard(t *testing.T) {
	r := &recorder{}
	b := connect(t, r, Options{PerApp: true})
	alice, bob := Topic{User, "app.1", "alice@x.org"}, Topic{User, "app.1", "bob"}
	other := Topic{User, "app.2", "alice@x.org"}
	for _, tp := range []Topic{alice, bob} {
		if err := b.Subscribe(t.Context(), tp); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Subscriptions(); got != 2 {
		t.Fatalf("Subscriptions = %d, want 2", got)
	}
	if n := len(b.wild); n != 1 {
		t.Fatalf("%d wildcard subscriptions, want 1", n)
	}
	for i := range 100 {
		for _, tp := range []Topic{alice, bob, other} {
			if err := b.Publish(tp, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tp := range []Topic{alice, bob} {
		waitFor(t, "deliveries", func() bool { return r.count(tp) == 100 })
		r.mu.Lock()
		for i, s := range r.got[tp] {
			if s != fmt.Sprint(i) {
				t.Fatalf("%v: message %d is %q", tp, i, s)
			}
		}
		r.mu.Unlock()
	}
	if r.count(other) != 0 {
		t.Fatal("another app's topic was delivered")
	}
	_ = b.Unsubscribe(alice)
	if n := len(b.wild); n != 1 {
		t.Fatal("wildcard dropped while bob still follows it")
	}
	_ = b.Unsubscribe(bob)
	if n := len(b.wild); n != 0 || b.Subscriptions() != 0 {
		t.Fatalf("after the last topic: %d wildcards, %d subscriptions", n, b.Subscriptions())
	}
}

// In PerAppUsers mode only user topics go through their app's wildcard;
// rooms keep a subscription each. A user followed through an existing
// wildcard has the wildcard's interest age: at least that of a room
// subscribed after it.
func TestPerAppUsersWildcard(t *testing.T) {
	r := &recorder{}
	b := connect(t, r, Options{PerAppUsers: true})
	alice, bob := Topic{User, "app.1", "alice"}, Topic{User, "app.1", "bob"}
	room := Topic{Room, "app.1", "r1"}
	for _, tp := range []Topic{alice, room, bob} {
		if err := b.Subscribe(t.Context(), tp); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.wild) != 1 || len(b.subs) != 1 || b.Subscriptions() != 3 {
		t.Fatalf("%d wildcards and %d subscriptions for %d topics, want 1 and 1 for 3", len(b.wild), len(b.subs), b.Subscriptions())
	}
	roomAge := b.InterestAge(room)
	if bobAge := b.InterestAge(bob); roomAge <= 0 || bobAge < roomAge {
		t.Errorf("interest ages: room %v, bob %v; want bob (through alice's wildcard) at least as old as the room", roomAge, bobAge)
	}
	if age := b.InterestAge(Topic{User, "app.1", "carol"}); age != 0 {
		t.Errorf("InterestAge of a user not followed = %v, want 0", age)
	}
	for _, tp := range []Topic{alice, bob, room} {
		if err := b.Publish(tp, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a delivery", func() bool { return r.count(tp) == 1 })
	}
	_ = b.Unsubscribe(alice)
	_ = b.Unsubscribe(bob)
	if age := b.InterestAge(bob); age != 0 || len(b.wild) != 0 {
		t.Errorf("after the app's last user: InterestAge %v, %d wildcards", age, len(b.wild))
	}
}

// An interest is no older than the connection to NATS: a reconnection
// registers it again, and while the connection is down it has no age.
func TestInterestAgeAcrossReconnection(t *testing.T) {
	b := connect(t, &recorder{}, Options{PerAppUsers: true})
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	b.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	b.linkUp()
	alice, room := Topic{User, "app.1", "alice"}, Topic{Room, "app.1", "r1"}
	for _, tp := range []Topic{alice, room} {
		if err := b.Subscribe(t.Context(), tp); err != nil {
			t.Fatal(err)
		}
	}
	advance(10 * time.Second)
	for _, tp := range []Topic{alice, room} {
		if age := b.InterestAge(tp); age != 10*time.Second {
			t.Errorf("%v: InterestAge %v, want 10s", tp, age)
		}
	}
	b.linkDown()
	if age := b.InterestAge(alice); age != 0 {
		t.Errorf("InterestAge while disconnected = %v, want 0", age)
	}
	b.linkUp()
	advance(time.Second)
	for _, tp := range []Topic{alice, room} {
		if age := b.InterestAge(tp); age != time.Second {
			t.Errorf("%v: InterestAge %v after a reconnection 1s ago, want 1s", tp, age)
		}
	}
}
