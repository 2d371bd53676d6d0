package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/floodgate/floodgate"

// deps returns every package pkg depends on, directly or not.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	var all []string
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.ImportPath)
	}
	return all
}

// imports returns the packages pkg imports directly.
func imports(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=Imports", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	var p struct{ Imports []string }
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p.Imports
}

func TestDependenciesPointOneWay(t *testing.T) {
	rules := []struct {
		pkg       string
		direct    bool     // check direct imports only
		forbidden []string // import path prefixes
		why       string
	}{
		{"client", false, []string{module + "/internal/"}, "the public SDK must build outside this module's internals"},
		{"protocol", false, []string{module + "/internal/", module + "/client"}, "the protocol is shared by server and SDK"},
		{"token", false, []string{module + "/internal/", module + "/client"}, "app backends import it alone"},
		{"internal/transport", false, []string{module + "/"}, "the transport knows nothing of what it carries"},
		{"internal/bus", false, []string{module + "/internal/gateway", module + "/internal/store", module + "/internal/transport"}, "the bus reaches the gateway through its Handler"},
		{"internal/gateway", true, []string{"database/sql", "modernc.org/sqlite", "github.com/jackc/pgx", module + "/internal/store/sqlite", "github.com/gobwas/ws", "github.com/nats-io/"}, "the gateway sees the store, bus and transport only through their interfaces"},
		{"internal/store", false, []string{"database/sql", "modernc.org/sqlite", "github.com/jackc/pgx"}, "the store interface is engine-free"},
	}
	for _, r := range rules {
		list := deps(t, r.pkg)
		if r.direct {
			list = imports(t, r.pkg)
		}
		for _, d := range list {
			for _, f := range r.forbidden {
				if strings.HasPrefix(d, f) && d != module+"/"+r.pkg {
					t.Errorf("%s depends on %s: %s", r.pkg, d, r.why)
				}
			}
		}
	}
}
