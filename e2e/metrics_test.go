package e2e

import (
	"strings"
	"testing"
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
