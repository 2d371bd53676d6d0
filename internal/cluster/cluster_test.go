package cluster

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

func TestMembersExpiry(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := NewMembers(time.Second)
	m.Observe(Status{Node: "a", Seq: 1}, t0)
	m.Observe(Status{Node: "b", Seq: 1}, t0)
	m.Observe(Status{Node: "a", Seq: 2}, t0.Add(2*time.Second))
	if got := names(m.Alive(t0.Add(3 * time.Second))); got != "a,b" {
		t.Fatalf("after 3s: %s", got)
	}
	// b has now missed more than three beats.
	if got := names(m.Alive(t0.Add(3*time.Second + time.Millisecond))); got != "a" {
		t.Fatalf("after 3s+: %s", got)
	}
	// A late heartbeat of an earlier seq from the same process is ignored;
	// a restarted process (new Started) is taken whatever its seq.
	m.Observe(Status{Node: "a", Seq: 1, Conns: 99}, t0.Add(4*time.Second))
	if a := m.Alive(t0.Add(4 * time.Second))[0]; a.Conns == 99 {
		t.Fatal("stale heartbeat replaced a newer one")
	}
	m.Observe(Status{Node: "a", Seq: 1, Started: 5, Conns: 7}, t0.Add(4*time.Second))
	if a := m.Alive(t0.Add(4 * time.Second))[0]; a.Conns != 7 {
		t.Fatal("restarted node's heartbeat ignored")
	}
}

// While the bus is down nobody expires; when it is back everyone gets a
// fresh grace period.
func TestMembersStaticStability(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := NewMembers(time.Second)
	m.Observe(Status{Node: "a"}, t0)
	m.BusDown()
	if got := names(m.Alive(t0.Add(time.Hour))); got != "a" {
		t.Fatalf("bus down: %q", got)
	}
	m.BusUp(t0.Add(time.Hour))
	if got := names(m.Alive(t0.Add(time.Hour + 2*time.Second))); got != "a" {
		t.Fatalf("just after bus up: %q", got)
	}
	if got := names(m.Alive(t0.Add(time.Hour + 4*time.Second))); got != "" {
		t.Fatalf("silent after bus up: %q", got)
	}
}

func TestPick(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	up := func(name string, conns, capacity int) Status {
		return Status{Node: name, URL: "ws://" + name, Conns: conns, Capacity: capacity, Ready: true}
	}
	if _, _, ok := Pick(nil, r); ok {
		t.Fatal("picked from nothing")
	}
	full, draining, unready := up("full", 10, 10), up("draining", 0, 10), up("unready", 0, 10)
	draining.Draining, unready.Ready = true, false
	if _, _, ok := Pick([]Status{full, draining, unready, {Node: "router", Router: true, Ready: true, Capacity: 10}}, r); ok {
		t.Fatal("picked a node that cannot accept")
	}
	p, s, ok := Pick([]Status{full, up("only", 5, 10)}, r)
	if !ok || p.Node != "only" || s.Node != "" {
		t.Fatalf("one candidate: %v %v %v", p.Node, s.Node, ok)
	}
	// Of two, the one with more room is first, always.
	for range 100 {
		p, s, _ := Pick([]Status{up("busy", 900, 1000), up("idle", 10, 1000)}, r)
		if p.Node != "idle" || s.Node != "busy" {
			t.Fatalf("picked %s then %s", p.Node, s.Node)
		}
	}
	// Of many, the emptiest wins most often and the fullest never comes first.
	nodes := []Status{up("n0", 100, 1000), up("n1", 500, 1000), up("n2", 900, 1000), up("n3", 990, 1000)}
	wins := map[string]int{}
	for range 10000 {
		p, _, _ := Pick(nodes, r)
		wins[p.Node]++
	}
	if wins["n3"] != 0 || !(wins["n0"] > wins["n1"] && wins["n1"] > wins["n2"]) {
		t.Fatalf("wins %v", wins)
	}
}

func TestRouterHTTP(t *testing.T) {
	var alive []Status
	rt := NewRouter(func() []Status { return alive }, 30*time.Second)
	srv := httptest.NewServer(rt)
	defer srv.Close()
	get := func(q string) (*http.Response, []byte) {
		resp, err := http.Get(srv.URL + "/v1/route" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp, b
	}
	if resp, _ := get(""); resp.StatusCode != 400 {
		t.Fatalf("no app: %d", resp.StatusCode)
	}
	if resp, _ := get("?app=a"); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("no nodes: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	alive = []Status{{Node: "a", URL: "ws://a/v1/ws", Capacity: 10, Ready: true}, {Node: "b", URL: "ws://b/v1/ws", Capacity: 10, Ready: true}}
	resp, body := get("?app=a")
	var rr protocol.RouteResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &rr) != nil || rr.Primary == "" || rr.Secondary == "" || rr.Primary == rr.Secondary || rr.TTLMS != 30000 {
		t.Fatalf("route: %d %s", resp.StatusCode, body)
	}
}

func names(ss []Status) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s.Node
	}
	return out
}
