package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/internal/natstest"
	"github.com/floodgate/floodgate/protocol"
)

// Cluster tests run real processes: a 3-server NATS cluster (nats-server
// built at the version pinned in go.mod), PostgreSQL, floodgate nodes and a
// router. They need FLOODGATE_TEST_POSTGRES (e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable); .ci/run sets it.

// freshDatabase creates an empty database for the test and returns its URL.
func freshDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("FLOODGATE_TEST_POSTGRES")
	if base == "" {
		t.Skip("FLOODGATE_TEST_POSTGRES is not set: cluster tests need PostgreSQL")
	}
	if testing.Short() {
		t.Skip("cluster tests start many processes")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "fg_e2e_" + hex.EncodeToString(b[:])
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = name
	return cfg.ConnString()
}

// testCluster is a running cluster.
type testCluster struct {
	t      testing.TB
	nats   *natstest.Cluster
	db     string
	nodes  []*proc
	router *proc
	app    app
}

// startCluster starts the NATS cluster, n nodes (node i on NATS server i%3
// first) and a router, and creates an app.
func startCluster(t testing.TB, n int, extra ...string) *testCluster {
	t.Helper()
	db := freshDatabase(t)
	c := &testCluster{t: t, db: db, nats: natstest.StartCluster(t, 3)}
	for i := range n {
		c.nodes = append(c.nodes, c.newNode(i, extra...))
	}
	for _, p := range c.nodes {
		p.start()
	}
	c.router = newProc(t, "router", "--nats-url", strings.Join(c.nats.URLs(), ","), "--heartbeat-interval", "500ms")
	c.router.start()
	c.waitNodes(n)
	var a struct{ ID, Secret string }
	if code := httpJSON(t, "POST", c.nodes[0].httpURL()+"/admin/v1/apps", map[string]string{"name": "cluster"}, &a,
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+adminToken) }); code != http.StatusCreated {
		t.Fatalf("create app: HTTP %d", code)
	}
	c.app = app{ID: a.ID, Secret: a.Secret}
	return c
}

// newNode prepares node i (not started), connected to NATS server i%3 and,
// if that one fails, to the others.
func (c *testCluster) newNode(i int, extra ...string) *proc {
	urls := c.nats.URLs()
	mine := []string{urls[i%len(urls)]}
	for j, u := range urls {
		if j != i%len(urls) {
			mine = append(mine, u)
		}
	}
	return c.newNodeOn(i, mine, extra...)
}

// newNodeOn prepares node i connected to the NATS servers at urls.
func (c *testCluster) newNodeOn(i int, urls []string, extra ...string) *proc {
	args := []string{"--node-id", fmt.Sprint("node", i), "--nats-url", strings.Join(urls, ","),
		"--store", c.db, "--heartbeat-interval", "500ms", "--drain-window", "4s"}
	return newProc(c.t, "server", append(args, extra...)...)
}

// waitNodes waits until the router routes to n gateways.
func (c *testCluster) waitNodes(n int) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("router to see %d nodes", n), func() bool {
		var r struct{ Nodes int }
		httpJSON(c.t, "GET", c.router.opsURL()+"/readyz", nil, &r, func(*http.Request) {})
		return r.Nodes == n
	})
}

// dial connects user through the router (url == "") or to one gateway.
func (c *testCluster) dial(t testing.TB, user, url string) *client.Client {
	t.Helper()
	o := client.Options{App: c.app.ID,
		Token:      func(context.Context) (string, error) { return c.app.token(t, user), nil },
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, EventBuffer: 1 << 14}
	if url == "" {
		o.Router = "http://127.0.0.1:" + fmt.Sprint(c.router.port)
	} else {
		o.URL = url
	}
	cl, err := client.Dial(ctxT(t), o)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// member is one client in a cluster test, with what it received and which
// node it is on.
type member struct {
	user string
	c    *client.Client

	mu     sync.Mutex
	msgs   map[string][]protocol.Message
	node   string
	downAt time.Time
	// reconnects records (disconnect time, reconnect time, node) for each
	// reconnection.
	reconnects []reconnect
}

type reconnect struct {
	down, up  time.Time
	code      int
	from, to  string
	directive *protocol.Directive // the directive that came before, if any
	err       error               // why the connection ended, when not a close frame
}

func watch(user string, c *client.Client) *member {
	m := &member{user: user, c: c, msgs: map[string][]protocol.Message{}}
	go func() {
		for ev := range c.Events() {
			now := time.Now()
			m.mu.Lock()
			switch ev.Type {
			case client.EventMessage:
				m.msgs[ev.Message.Conv] = append(m.msgs[ev.Message.Conv], *ev.Message)
			case client.EventConnected:
				if !m.downAt.IsZero() {
					m.reconnects[len(m.reconnects)-1].up = now
					m.reconnects[len(m.reconnects)-1].to = ev.State.Auth.Node
					m.downAt = time.Time{}
				}
				m.node = ev.State.Auth.Node
			case client.EventDisconnected:
				m.downAt = now
				m.reconnects = append(m.reconnects, reconnect{down: now, code: ev.State.Code, from: m.node,
					directive: ev.State.Directive, err: ev.State.Err})
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *member) count(conv string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs[conv])
}

func (m *member) nodeName() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// checkAll fails unless every member of conv received seqs 1..total, once
// each, in order.
func checkAll(t testing.TB, conv string, members []*member, total int) {
	t.Helper()
	for _, m := range members {
		waitFor(t, fmt.Sprintf("%s to get %d messages of %s", m.user, total, conv), func() bool { return m.count(conv) >= total })
		m.mu.Lock()
		msgs := append([]protocol.Message(nil), m.msgs[conv]...)
		m.mu.Unlock()
		checkSeqs(t, m.user+" in "+conv, msgs, 1, uint64(total))
	}
}

// Clients on three nodes chat one to one, in a group and in a room; every
// message reaches every member's connection once, in order, across nodes.
func TestClusterChat(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t)
	var ms []*member
	for i := range 9 {
		user := fmt.Sprint("u", i)
		ms = append(ms, watch(user, c.dial(t, user, c.nodes[i%3].url())))
	}
	// One to one across nodes.
	d, err := ms[0].c.Direct(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := ms[i%2].c.Send(ctx, d.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, d.ID, ms[:2], 10)

	// A group of all nine, three senders on three nodes at once.
	users := []string{}
	for _, m := range ms[1:] {
		users = append(users, m.user)
	}
	g, err := ms[0].c.CreateGroup(ctx, "everyone", users)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for s := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if _, err := ms[s].c.Send(ctx, g.ID, fmt.Sprint(s, "-", i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkAll(t, g.ID, ms, 60)

	// A room joined from every node.
	room, err := ms[0].c.CreateRoom(ctx, "", "hall")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if _, err := m.c.JoinRoom(ctx, room.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 15 {
		if _, err := ms[i%3].c.Send(ctx, room.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, room.ID, ms, 15)

	// The router spreads new clients over the nodes.
	seen := map[string]int{}
	for i := range 30 {
		m := watch(fmt.Sprint("r", i), c.dial(t, fmt.Sprint("r", i), ""))
		waitFor(t, "connected", func() bool { return m.nodeName() != "" })
		seen[m.nodeName()]++
	}
	// Two random choices per client: a broken router sends everyone to one
	// node; a working one spreads them (exact shares vary with timing).
	most := 0
	for _, n := range seen {
		most = max(most, n)
	}
	if len(seen) < 2 || most > 24 {
		t.Errorf("router placed 30 clients as %v", seen)
	}
	t.Logf("router placement of 30 clients: %v", seen)
}

// traffic runs groups of members, one sender per group sending at a steady
// pace until stopped, and returns what each sender had acknowledged.
type traffic struct {
	groups  []string
	members [][]*member
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   map[string]int
}

func startTraffic(t testing.TB, ms []*member, groupSize int, every time.Duration) *traffic {
	t.Helper()
	ctx := ctxT(t)
	tr := &traffic{stop: make(chan struct{}), acked: map[string]int{}}
	for i := 0; i+groupSize <= len(ms); i += groupSize {
		grp := ms[i : i+groupSize]
		var users []string
		for _, m := range grp[1:] {
			users = append(users, m.user)
		}
		g, err := grp[0].c.CreateGroup(ctx, fmt.Sprint("g", i), users)
		if err != nil {
			t.Fatal(err)
		}
		tr.groups = append(tr.groups, g.ID)
		tr.members = append(tr.members, grp)
	}
	for gi, g := range tr.groups {
		sender := tr.members[gi][0].c
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-tr.stop:
					return
				case <-tick.C:
				}
				if _, err := sender.SendWithID(ctx, g, fmt.Sprint("m", i), i); err != nil {
					t.Errorf("send to %s: %v", g, err)
					return
				}
				tr.mu.Lock()
				tr.acked[g]++
				tr.mu.Unlock()
			}
		}()
	}
	return tr
}

// finish stops the senders and checks every member got every acknowledged
// message once, in order.
func (tr *traffic) finish(t testing.TB) int {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	total := 0
	for gi, g := range tr.groups {
		checkAll(t, g, tr.members[gi], tr.acked[g])
		total += tr.acked[g]
	}
	return total
}

// One node of three is killed (SIGKILL) while 300 clients exchange
// messages; its clients reconnect through the router to the other nodes and
// every acknowledged message is delivered once, in order, to every member.
func TestClusterNodeKilled(t *testing.T) {
	c := startCluster(t, 3)
	const clients = 300
	var ms []*member
	for i := range clients {
		user := fmt.Sprint("k", i)
		ms = append(ms, watch(user, c.dial(t, user, "")))
	}
	waitFor(t, "all connected", func() bool {
		for _, m := range ms {
			if m.nodeName() == "" {
				return false
			}
		}
		return true
	})
	// Groups of 10 with members on all three nodes; 30 senders, 5 msgs/s each.
	tr := startTraffic(t, ms, 10, 200*time.Millisecond)
	time.Sleep(2 * time.Second) // let traffic flow before the crash
	// The victim is the node holding the most clients (about a third).
	perNode := map[string][]*member{}
	for _, m := range ms {
		perNode[m.nodeName()] = append(perNode[m.nodeName()], m)
	}
	victimName := ""
	for name, list := range perNode {
		if victimName == "" || len(list) > len(perNode[victimName]) {
			victimName = name
		}
	}
	onVictim := perNode[victimName]
	var victim *proc
	for i, p := range c.nodes {
		if fmt.Sprint("node", i) == victimName {
			victim = p
		}
	}
	killed := time.Now()
	victim.kill()
	waitFor(t, "the victim's clients to reconnect", func() bool {
		for _, m := range onVictim {
			m.mu.Lock()
			back := len(m.reconnects) > 0 && !m.reconnects[len(m.reconnects)-1].up.IsZero()
			m.mu.Unlock()
			if !back {
				return false
			}
		}
		return true
	})
	var delays []time.Duration
	for _, m := range onVictim {
		m.mu.Lock()
		r := m.reconnects[len(m.reconnects)-1]
		m.mu.Unlock()
		if r.to == victimName {
			t.Errorf("%s reconnected to the dead node", m.user)
		}
		delays = append(delays, r.up.Sub(killed))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	time.Sleep(2 * time.Second) // traffic continues on two nodes
	total := tr.finish(t)
	t.Logf("placement %v; %d clients on the killed node, back on other nodes after p50 %v, max %v; %d messages checked on %d clients",
		counts(perNode), len(onVictim), delays[len(delays)/2], delays[len(delays)-1], total, clients)
}

func counts(m map[string][]*member) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// A node holding 1000 clients is drained with `floodgate ctl drain`: it
// stops taking connections and moves its clients to the other nodes in
// batches spread over the drain window — not all at once — and no
// acknowledged message is lost.
func TestClusterDrain(t *testing.T) {
	c := startCluster(t, 1)
	const clients = 1000
	var ms []*member
	for i := range clients {
		user := fmt.Sprint("d", i)
		ms = append(ms, watch(user, c.dial(t, user, "")))
	}
	waitFor(t, "all on node0", func() bool {
		for _, m := range ms {
			if m.nodeName() != "node0" {
				return false
			}
		}
		return true
	})
	for i := 1; i <= 2; i++ {
		p := c.newNode(i)
		p.start()
		c.nodes = append(c.nodes, p)
	}
	c.waitNodes(3)
	tr := startTraffic(t, ms, 10, time.Second)
	time.Sleep(time.Second)

	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	out, err := execCommand(bin, "ctl", "drain", "--nats-url", strings.Join(c.nats.URLs(), ","), "--heartbeat-interval", "500ms", "node0")
	if err != nil {
		t.Fatalf("ctl drain: %v\n%s", err, out)
	}
	select {
	case <-c.nodes[0].exited:
		c.nodes[0].cmd = nil
	case <-time.After(patience):
		t.Fatal("node0 did not exit after draining")
	}
	waitFor(t, "every client on another node", func() bool {
		for _, m := range ms {
			if n := m.nodeName(); n == "node0" || n == "" {
				return false
			}
		}
		return true
	})
	total := tr.finish(t)

	// When did each client leave node0?
	var left []time.Time
	moved := map[string]int{}
	noCloseFrame := 0
	for _, m := range ms {
		m.mu.Lock()
		for _, r := range m.reconnects {
			if r.from == "node0" {
				left = append(left, r.down)
				moved[r.to]++
				// The directive is what the client acts on. The close
				// frame after it can be lost: on a loaded machine the
				// client may read it only after the server's close
				// wait, when the server drops the socket and the reset
				// discards what the client had not read yet.
				switch {
				case r.code == protocol.CloseDraining:
				case r.code == 0 && r.directive != nil && r.directive.Code == protocol.CloseDraining:
					noCloseFrame++
				default:
					t.Errorf("%s left node0 at %s with close code %d, want %d (directive %+v, error %v)",
						m.user, r.down.Format("15:04:05.000"), r.code, protocol.CloseDraining, r.directive, r.err)
				}
			}
		}
		m.mu.Unlock()
	}
	if len(left) != clients {
		t.Fatalf("%d clients left node0, want %d", len(left), clients)
	}
	sort.Slice(left, func(i, j int) bool { return left[i].Before(left[j]) })
	span := left[len(left)-1].Sub(left[0])
	const window = 4 * time.Second
	// Tenths of the span: no tenth may hold more than a third of the
	// clients, or they left in a burst rather than in batches.
	var tenths [10]int
	for _, at := range left {
		i := min(int(at.Sub(left[0])*10/max(span, 1)), 9)
		tenths[i]++
	}
	t.Logf("drained %d clients over %v (window %v), per tenth of the span %v, to %v (%d after the directive but before the close frame); %d messages checked",
		len(left), span.Round(time.Millisecond), window, tenths, moved, noCloseFrame, total)
	if span < window/2 {
		t.Errorf("clients left within %v, not spread over the %v window", span, window)
	}
	for _, n := range tenths {
		if n > clients/3 {
			t.Errorf("%d of %d clients left in one tenth of the drain", n, clients)
		}
	}
}

// One NATS server of three stops while traffic flows: the nodes connected
// to it reconnect to the others and no acknowledged message is lost, with
// users followed one subscription each or through their app's wildcard.
func TestClusterNATSServerStops(t *testing.T) {
	for _, interest := range []string{"user", "app"} {
		t.Run(interest, func(t *testing.T) { clusterNATSServerStops(t, interest) })
	}
}

func clusterNATSServerStops(t *testing.T, interest string) {
	c := startCluster(t, 3, "--user-interest", interest)
	var ms []*member
	for i := range 60 {
		user := fmt.Sprint("n", i)
		ms = append(ms, watch(user, c.dial(t, user, c.nodes[i%3].url())))
	}
	tr := startTraffic(t, ms, 6, 100*time.Millisecond)
	time.Sleep(time.Second)
	c.nats.Stop(1) // node1's first NATS server
	time.Sleep(2 * time.Second)
	total := tr.finish(t)
	t.Logf("%d messages checked on %d clients across a NATS server stop", total, len(ms))
}

// A node's bus connection goes deaf — open, but nothing it is sent arrives,
// the half-dead link that took down the system Floodgate learns from. The
// last message of a conversation, published meanwhile, still reaches its
// member on that node without the client reconnecting: the node's bus
// client notices the stale link by its pings, reconnects, reports the loss,
// and the gateway tells its clients to resync.
func TestClusterBusDeafHealed(t *testing.T) {
	c := startCluster(t, 1)
	p := newProxy(t, strings.TrimPrefix(c.nats.URL(1), "nats://"))
	// No catch-up resync after connect: only the loss report may heal this.
	deaf := c.newNodeOn(1, []string{"nats://" + p.addr}, "--catch-up-delay", "0s")
	deaf.start()
	c.waitNodes(2)
	ctx := ctxT(t)
	alice := watch("alice", c.dial(t, "alice", c.nodes[0].url()))
	bob := watch("bob", c.dial(t, "bob", deaf.url()))
	d, err := alice.c.Direct(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.Send(ctx, d.ID, "before"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob to get the first message", func() bool { return bob.count(d.ID) == 1 })

	p.deaf.Store(true)
	if _, err := alice.c.Send(ctx, d.ID, "while bob's node hears nothing"); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	waitFor(t, "bob to get the last message", func() bool { return bob.count(d.ID) == 2 })
	t.Logf("the last message reached bob %v after it was sent into a deaf bus link", time.Since(sent).Round(time.Millisecond))
	p.deaf.Store(false)

	var metrics string
	if resp, err := http.Get(deaf.opsURL() + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
	}
	if strings.Contains(metrics, "floodgate_bus_loss_reports_total 0") || strings.Contains(metrics, "floodgate_resyncs_total 0") {
		t.Errorf("the loss was not reported and healed by a resync:\n%s\n%s", grepLines(metrics, "loss_reports"), grepLines(metrics, "resyncs"))
	}
	bob.mu.Lock()
	defer bob.mu.Unlock()
	if len(bob.reconnects) != 0 {
		t.Fatalf("bob reconnected: %+v", bob.reconnects)
	}
	checkSeqs(t, "bob", bob.msgs[d.ID], 1, 2)
}

// With --user-interest app, nodes follow their users through one wildcard
// per app: direct and group messages still reach every member once, in
// order, across nodes; and clients that authenticate once the wildcards
// are older than the catch-up delay get no catch-up resync.
func TestClusterAppWideUserInterest(t *testing.T) {
	const delay = 300 * time.Millisecond
	c := startCluster(t, 3, "--user-interest", "app", "--catch-up-delay", delay.String())
	ctx := ctxT(t)
	var ms []*member
	for i := range 3 { // one per node: the first user makes the wildcards
		user := fmt.Sprint("u", i)
		ms = append(ms, watch(user, c.dial(t, user, c.nodes[i].url())))
	}
	for _, m := range ms {
		waitFor(t, "connected", func() bool { return m.nodeName() != "" })
	}
	time.Sleep(2 * delay) // not a timing assertion: the wildcards must be older than delay
	for i := 3; i < 9; i++ {
		user := fmt.Sprint("u", i)
		ms = append(ms, watch(user, c.dial(t, user, c.nodes[i%3].url())))
	}
	for _, m := range ms {
		waitFor(t, "connected", func() bool { return m.nodeName() != "" })
	}

	d, err := ms[3].c.Direct(ctx, "u4")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := ms[3+i%2].c.Send(ctx, d.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, d.ID, ms[3:5], 10)
	var users []string
	for _, m := range ms[1:] {
		users = append(users, m.user)
	}
	g, err := ms[0].c.CreateGroup(ctx, "everyone", users)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if _, err := ms[i%9].c.Send(ctx, g.ID, i); err != nil {
			t.Fatal(err)
		}
	}
	checkAll(t, g.ID, ms, 12)

	// Each node skipped the catch-ups of its two later clients.
	for i, n := range c.nodes {
		var metrics string
		if resp, err := http.Get(n.opsURL() + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics = string(b)
		}
		if want := "floodgate_catchups_skipped_total 2"; !strings.Contains(metrics, want) {
			t.Errorf("node %d: want %q, got %q", i, want, grepLines(metrics, "catchups_skipped"))
		}
	}
}

func execCommand(bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}
