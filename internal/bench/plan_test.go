package bench

import (
	"math"
	"strings"
	"testing"
)

func validPlan(scenario string) Plan {
	p := Plan{Scenario: scenario, URLs: []string{"ws://127.0.0.1:7070/v1/ws"}, App: "app_x", Secret: "s", UserPrefix: "t-"}
	switch scenario {
	case ScenarioIdle, ScenarioConnect, ScenarioStorm:
		p.Conns = 10
	case ScenarioDirect:
		p.Pairs, p.Rate = 10, 100
	case ScenarioRoom:
		p.Members, p.Rate, p.Senders = 10, 100, 2
	case ScenarioGroup:
		p.Groups, p.Members, p.Rate = 3, 4, 100
	}
	p.Defaults()
	return p
}

func TestSplitCoversEveryUnitOnce(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		units    int
		procs    int
	}{
		{ScenarioIdle, 10, 3}, {ScenarioIdle, 19, 4}, {ScenarioConnect, 7, 7},
		{ScenarioDirect, 101, 4}, {ScenarioGroup, 5, 2}, {ScenarioRoom, 1000, 3}, {ScenarioStorm, 9, 2},
	} {
		p := validPlan(tc.scenario)
		switch tc.scenario {
		case ScenarioDirect:
			p.Pairs = tc.units
		case ScenarioGroup:
			p.Groups = tc.units
		case ScenarioRoom:
			p.Members, p.Senders = tc.units, 7
		case ScenarioStorm:
			p.Conns = 2 * tc.units
		default:
			p.Conns = tc.units
		}
		p.Concurrency, p.ConnectRate = 100, 1000
		shards := p.Split(tc.procs)
		if len(shards) != tc.procs {
			t.Fatalf("%s: %d shards, want %d", tc.scenario, len(shards), tc.procs)
		}
		next, rate, conc, crate, conns := 0, 0.0, 0, 0.0, 0
		var senders []int
		for i, s := range shards {
			if s.Index != i || s.Count != tc.procs {
				t.Errorf("%s: shard %d says %d of %d", tc.scenario, i, s.Index, s.Count)
			}
			if s.Lo != next {
				t.Fatalf("%s: shard %d starts at %d, want %d (contiguous)", tc.scenario, i, s.Lo, next)
			}
			if size := s.Hi - s.Lo; size < tc.units/tc.procs || size > tc.units/tc.procs+1 {
				t.Errorf("%s: shard %d has %d units; sizes must differ by one at most", tc.scenario, i, size)
			}
			if s.ShardConcurrency < 1 {
				t.Errorf("%s: shard %d has no concurrency", tc.scenario, i)
			}
			next = s.Hi
			rate += s.ShardRate
			conc += s.ShardConcurrency
			crate += s.ShardConnectRate
			conns += s.ConnCount()
			for _, m := range s.SenderIdx {
				if m < s.Lo || m >= s.Hi {
					t.Errorf("room: sender %d placed in shard %d [%d, %d)", m, i, s.Lo, s.Hi)
				}
				senders = append(senders, m)
			}
		}
		if next != tc.units {
			t.Fatalf("%s: shards end at %d, want %d", tc.scenario, next, tc.units)
		}
		if conns != p.TotalConns() {
			t.Errorf("%s: shards open %d connections, the plan %d", tc.scenario, conns, p.TotalConns())
		}
		if math.Abs(crate-p.ConnectRate) > 1e-6 {
			t.Errorf("%s: connect rates add up to %f, want %f", tc.scenario, crate, p.ConnectRate)
		}
		if conc < p.Concurrency-tc.procs || conc > p.Concurrency+tc.procs {
			t.Errorf("%s: concurrency adds up to %d, want about %d", tc.scenario, conc, p.Concurrency)
		}
		switch tc.scenario {
		case ScenarioDirect, ScenarioRoom, ScenarioGroup:
			if math.Abs(rate-p.Rate) > 1e-6 {
				t.Errorf("%s: rates add up to %f, want %f", tc.scenario, rate, p.Rate)
			}
		}
		if tc.scenario == ScenarioRoom && len(senders) != p.Senders {
			t.Errorf("room: %d senders placed, want %d", len(senders), p.Senders)
		}
	}
}

func TestSplitNeverMakesEmptyShards(t *testing.T) {
	p := validPlan(ScenarioDirect)
	p.Pairs = 2
	if n := len(p.Split(5)); n != 2 {
		t.Fatalf("%d shards for 2 pairs, want 2", n)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Plan)
		want   string // "" for valid
	}{
		{"ok", func(*Plan) {}, ""},
		{"scenario", func(p *Plan) { p.Scenario = "flood" }, "unknown scenario"},
		{"no target", func(p *Plan) { p.URLs = nil }, "--url or --router"},
		{"both targets", func(p *Plan) { p.Router = "http://127.0.0.1:7000" }, "--url or --router"},
		{"bad url", func(p *Plan) { p.URLs = []string{"http://x/v1/ws"} }, "ws://"},
		{"no app", func(p *Plan) { p.Secret = "" }, "no app"},
		{"no rate", func(p *Plan) { p.Rate = 0 }, "--rate"},
		{"too many per proc", func(p *Plan) { p.Pairs = 10000 }, "--procs 2"},
		{"procs ok", func(p *Plan) { p.Pairs, p.Procs = 10000, 2 }, ""},
		{"more procs than units", func(p *Plan) { p.Procs = 11 }, "more processes"},
		{"source ips need loopback", func(p *Plan) { p.SourceIPs, p.URLs = 4, []string{"ws://10.0.0.1:7070/v1/ws"} }, "loopback"},
		{"tls elsewhere", func(p *Plan) { p.TLS = true }, "connect scenario"},
	} {
		p := validPlan(ScenarioDirect)
		tc.mutate(&p)
		err := p.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	p := validPlan(ScenarioStorm)
	p.Conns = 7
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "even") {
		t.Errorf("storm with an odd client count: %v", err)
	}
	p = validPlan(ScenarioConnect)
	p.TLS = true
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "wss://") {
		t.Errorf("connect --tls over ws://: %v", err)
	}
}

func TestSourceIPsAndGateways(t *testing.T) {
	p := validPlan(ScenarioIdle)
	if ip := p.sourceIP(5); ip != nil {
		t.Errorf("one source address: got %v, want the system's choice", ip)
	}
	p.SourceIPs = 300
	for i, want := range map[int]string{0: "127.0.0.1", 1: "127.0.0.2", 254: "127.0.0.255", 255: "127.0.1.0", 299: "127.0.1.44", 300: "127.0.0.1"} {
		if got := p.sourceIP(i).String(); got != want {
			t.Errorf("client %d binds %s, want %s", i, got, want)
		}
	}
	p.URLs = []string{"ws://a/v1/ws", "ws://b/v1/ws"}
	if p.gatewayFor(0) != "ws://a/v1/ws" || p.gatewayFor(3) != "ws://b/v1/ws" {
		t.Error("clients must be spread over the URLs by index")
	}
	p.Scenario = ScenarioRoom
	if p.gatewayFor(3) != "ws://a/v1/ws" {
		t.Error("room members stay on the first URL without --spread")
	}
	p.Spread = true
	if p.gatewayFor(3) != "ws://b/v1/ws" {
		t.Error("room members spread with --spread")
	}
}
