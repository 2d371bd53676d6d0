package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/protocol"
)

// The store's connection pools are visible in /metrics, so that an
// operator can tell calls waiting for a connection from a slow database.
func TestStorePoolMetrics(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "pools")
	c := a.dial(t, "u1")
	defer c.Close()

	metrics := scrape(t, n)
	for _, want := range []string{
		`floodgate_store_pool_conns{pool="reader",state="max"}`,
		`floodgate_store_pool_conns{pool="writer",state="max"} 1`,
		`floodgate_store_pool_waits_total{pool="reader"}`,
		`floodgate_store_pool_wait_seconds_total{pool="writer"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s:\n%s", want, grepLines(metrics, "floodgate_store_pool"))
		}
	}
}

// Ended connections are counted by close code, and a code a client makes
// up is counted as "other", so that clients cannot add label values.
func TestCloseCodeMetrics(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.AuthTimeout = 300 * time.Millisecond })
	if code, _ := n.raw(t).closeCode(); code != protocol.CloseAuthTimeout {
		t.Fatalf("close code %d, want %d", code, protocol.CloseAuthTimeout)
	}
	r := n.raw(t)
	if err := wsutil.WriteClientMessage(r.conn, ws.OpClose, ws.NewCloseFrameBody(4999, "made up")); err != nil {
		t.Fatal(err)
	}
	r.closeCode()
	for _, want := range []string{
		`floodgate_connections_closed_total{code="4104"} 1`,
		`floodgate_connections_closed_total{code="other"} 1`,
	} {
		waitFor(t, want, func() bool { return strings.Contains(scrape(t, n), want) })
	}
}
