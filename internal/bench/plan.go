package bench

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Scenario names.
const (
	ScenarioIdle    = "idle"
	ScenarioConnect = "connect"
	ScenarioDirect  = "direct"
	ScenarioRoom    = "room"
	ScenarioGroup   = "group"
	ScenarioStorm   = "storm"
)

// Scenarios lists every scenario, in the order the usage shows them.
func Scenarios() []string {
	return []string{ScenarioIdle, ScenarioConnect, ScenarioDirect, ScenarioRoom, ScenarioGroup, ScenarioStorm}
}

// MaxConnsPerProc is how many connections one process opens at most. The
// per-process file descriptor limit on the machines this runs on is 20000;
// the margin covers stdio, HTTP clients and the Go runtime.
const MaxConnsPerProc = 19000

// Plan is everything a run does, as decided by the coordinator. It is
// serialised to the child processes, so it holds data only.
type Plan struct {
	Scenario string `json:"scenario"`

	// URLs are the gateways' WebSocket URLs; clients are spread over them
	// by index. Router, when set instead, is asked by every client.
	URLs   []string `json:"urls,omitempty"`
	Router string   `json:"router,omitempty"`

	App    string `json:"app"`
	Secret string `json:"secret,omitempty"`
	// UserPrefix names the simulated users: UserPrefix + index. A random
	// prefix per run keeps parallel runs from sharing users.
	UserPrefix string `json:"user_prefix"`

	TLSInsecure bool `json:"tls_insecure,omitempty"`
	// SourceIPs spreads the clients' source addresses over 127.0.0.1 ..
	// 127.0.0.SourceIPs, each address having its own ephemeral ports.
	SourceIPs int `json:"source_ips,omitempty"`

	Conns   int     `json:"conns,omitempty"`   // idle, connect, storm
	Pairs   int     `json:"pairs,omitempty"`   // direct
	Members int     `json:"members,omitempty"` // room, group
	Groups  int     `json:"groups,omitempty"`  // group
	Rate    float64 `json:"rate,omitempty"`    // direct, room, group: messages/s, all senders together
	Senders int     `json:"senders,omitempty"` // room
	Spread  bool    `json:"spread,omitempty"`  // room: members spread over URLs rather than all on the first
	// BodyBytes is the approximate size of each message body.
	BodyBytes int `json:"body_bytes,omitempty"`

	TLS    bool `json:"tls,omitempty"`    // connect: a second wave resumes TLS sessions
	Resume bool `json:"resume,omitempty"` // connect: a second wave syncs after auth

	// StormMessages is how many messages each storm pair exchanges before
	// the outage.
	StormMessages int           `json:"storm_messages,omitempty"`
	BackoffMin    time.Duration `json:"backoff_min_ns,omitempty"`
	BackoffMax    time.Duration `json:"backoff_max_ns,omitempty"`

	// Duration is the measured phase: traffic (direct, room, group), the
	// longest hold (idle), the longest wait for the outage and recovery
	// (storm).
	Duration     time.Duration `json:"duration_ns"`
	SetupTimeout time.Duration `json:"setup_timeout_ns"`
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
	// Concurrency bounds the connection attempts in progress at once;
	// ConnectRate (connections/s, 0 for no limit) paces them.
	Concurrency int     `json:"concurrency"`
	ConnectRate float64 `json:"connect_rate,omitempty"`
	// Retries is how many times a failed connection attempt is repeated.
	Retries int `json:"retries"`

	Procs int `json:"procs"`
	// CPUProfile, when set, makes every worker process write a CPU
	// profile of its whole life to CPUProfile.N (N its 0-based shard);
	// the coordinator's own is the caller's business.
	CPUProfile string `json:"cpu_profile,omitempty"`

	// Set by the coordinator before the plan is split.
	Room     string    `json:"room,omitempty"`     // room: the room's id
	Deadline time.Time `json:"deadline,omitempty"` // every process stops by then, whatever happens
	// PingInterval is the server's keepalive interval (from the auth result).
	PingInterval time.Duration `json:"ping_interval_ns,omitempty"`
	// RateLimit is the server's per-connection request rate.
	RateLimit float64 `json:"rate_limit,omitempty"`
}

// Defaults fills what the user left at zero with the scenario's defaults.
func (p *Plan) Defaults() {
	if p.Duration <= 0 {
		switch p.Scenario {
		case ScenarioIdle:
			p.Duration = 30 * time.Second
		case ScenarioStorm:
			p.Duration = 2 * time.Minute
		default:
			p.Duration = 10 * time.Second
		}
	}
	if p.SetupTimeout <= 0 {
		p.SetupTimeout = 2 * time.Minute
	}
	if p.DrainTimeout <= 0 {
		p.DrainTimeout = 10 * time.Second
	}
	if p.Concurrency <= 0 {
		p.Concurrency = 100
	}
	if p.Procs <= 0 {
		p.Procs = 1
	}
	if p.BodyBytes <= 0 {
		p.BodyBytes = 100
	}
	if p.StormMessages <= 0 {
		p.StormMessages = 2
	}
	if p.Scenario == ScenarioRoom && p.Senders <= 0 {
		p.Senders = 1
	}
	if p.SourceIPs <= 0 {
		p.SourceIPs = 1
	}
}

// Validate checks the plan as the user gave it (after Defaults).
func (p *Plan) Validate() error {
	known := false
	for _, s := range Scenarios() {
		known = known || s == p.Scenario
	}
	if !known {
		return fmt.Errorf("unknown scenario %q (want one of %v)", p.Scenario, Scenarios())
	}
	if (p.Resume || p.TLS) && p.Scenario != ScenarioConnect {
		return errors.New("--tls and --resume belong to the connect scenario")
	}
	if (len(p.URLs) == 0) == (p.Router == "") {
		return errors.New("set either --url or --router")
	}
	for _, u := range p.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "ws" && pu.Scheme != "wss") || pu.Host == "" {
			return fmt.Errorf("--url %q: want ws://HOST:PORT/v1/ws or wss://…", u)
		}
		if p.SourceIPs > 1 && !loopback(pu.Hostname()) {
			return fmt.Errorf("--source-ips needs loopback gateways, and %s is not", pu.Host)
		}
		if p.TLS && pu.Scheme != "wss" {
			return fmt.Errorf("--tls needs wss:// URLs, and %s is not", u)
		}
	}
	if p.Router != "" {
		pu, err := url.Parse(p.Router)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("--router %q: want http://HOST:PORT", p.Router)
		}
	}
	if p.App == "" || p.Secret == "" {
		return errors.New("no app: set --app and --secret, or --admin-url and --admin-token to create one")
	}
	if p.SourceIPs > 65000 {
		return errors.New("--source-ips: at most 65000")
	}
	positive := func(name string, v int) error {
		if v <= 0 {
			return fmt.Errorf("%s: %s must be at least 1", p.Scenario, name)
		}
		return nil
	}
	var err error
	switch p.Scenario {
	case ScenarioIdle, ScenarioConnect:
		err = positive("--conns", p.Conns)
	case ScenarioStorm:
		if err = positive("--conns", p.Conns); err == nil && p.Conns%2 != 0 {
			err = errors.New("storm: --conns must be even (clients come in pairs)")
		}
		if p.BackoffMin < 0 || p.BackoffMax < p.BackoffMin {
			err = errors.New("storm: want 0 <= --backoff-min <= --backoff-max")
		}
	case ScenarioDirect:
		err = positive("--pairs", p.Pairs)
	case ScenarioRoom:
		if err = positive("--members", p.Members); err == nil {
			err = positive("--senders", p.Senders)
		}
		if err == nil && p.Senders > p.Members {
			err = errors.New("room: --senders cannot exceed --members")
		}
	case ScenarioGroup:
		if err = positive("--groups", p.Groups); err == nil {
			err = positive("--members", p.Members)
		}
		if err == nil && p.Members < 2 {
			err = errors.New("group: --members must be at least 2")
		}
	}
	if err != nil {
		return err
	}
	switch p.Scenario {
	case ScenarioDirect, ScenarioRoom, ScenarioGroup:
		if p.Rate <= 0 || math.IsInf(p.Rate, 0) || math.IsNaN(p.Rate) {
			return fmt.Errorf("%s: --rate must be positive", p.Scenario)
		}
	}
	if p.Procs > p.units() {
		return fmt.Errorf("--procs %d: more processes than units to split (%d)", p.Procs, p.units())
	}
	if per := (p.TotalConns() + p.Procs - 1) / p.Procs; per > MaxConnsPerProc {
		return fmt.Errorf("%d connections per process is over %d (the file descriptor limit): use --procs %d or more",
			per, MaxConnsPerProc, (p.TotalConns()+MaxConnsPerProc-1)/MaxConnsPerProc)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TotalConns is how many connections the scenario holds at once.
func (p *Plan) TotalConns() int {
	switch p.Scenario {
	case ScenarioDirect:
		return 2 * p.Pairs
	case ScenarioRoom:
		return p.Members
	case ScenarioGroup:
		return p.Groups * p.Members
	}
	return p.Conns
}

// units is what is split between processes: each unit's connections stay
// in one process, so that a pair (or a group) shares one clock and one
// accounting.
func (p *Plan) units() int {
	switch p.Scenario {
	case ScenarioDirect:
		return p.Pairs
	case ScenarioRoom:
		return p.Members
	case ScenarioGroup:
		return p.Groups
	case ScenarioStorm:
		return p.Conns / 2
	}
	return p.Conns
}

// connsPerUnit is how many connections one unit holds.
func (p *Plan) connsPerUnit() int {
	switch p.Scenario {
	case ScenarioDirect, ScenarioStorm:
		return 2
	case ScenarioGroup:
		return p.Members
	}
	return 1
}

// Shard is one process's part of a plan.
type Shard struct {
	Plan
	Index int `json:"index"` // 0-based
	Count int `json:"count"` // how many shards
	// Lo and Hi delimit this shard's units: [Lo, Hi).
	Lo int `json:"lo"`
	Hi int `json:"hi"`
	// ShardRate is this shard's share of Rate.
	ShardRate float64 `json:"shard_rate,omitempty"`
	// SenderIdx (room) are the members of this shard that send.
	SenderIdx []int `json:"sender_idx,omitempty"`
	// ShardConcurrency and ShardConnectRate are this shard's shares.
	ShardConcurrency int     `json:"shard_concurrency"`
	ShardConnectRate float64 `json:"shard_connect_rate,omitempty"`
}

// Split divides the plan into n shards of contiguous units, as even as
// possible (sizes differ by at most one), with the rate, concurrency and
// connection rate shared in proportion. Room senders are spread evenly over
// the members, wherever they land.
func (p *Plan) Split(n int) []Shard {
	units := p.units()
	n = max(1, min(n, units))
	shards := make([]Shard, n)
	lo := 0
	for i := range shards {
		size := units / n
		if i < units%n {
			size++
		}
		s := Shard{Plan: *p, Index: i, Count: n, Lo: lo, Hi: lo + size}
		lo += size
		frac := float64(size) / float64(units)
		s.ShardConcurrency = max(1, int(math.Round(float64(p.Concurrency)*frac)))
		s.ShardConnectRate = p.ConnectRate * frac
		switch p.Scenario {
		case ScenarioDirect, ScenarioGroup:
			s.ShardRate = p.Rate * frac
		case ScenarioRoom:
			for _, m := range p.roomSenders() {
				if m >= s.Lo && m < s.Hi {
					s.SenderIdx = append(s.SenderIdx, m)
				}
			}
			s.ShardRate = p.Rate * float64(len(s.SenderIdx)) / float64(p.Senders)
		}
		shards[i] = s
	}
	return shards
}

// roomSenders returns the indexes of the members that send, spread evenly.
func (p *Plan) roomSenders() []int {
	out := make([]int, p.Senders)
	for j := range out {
		out[j] = j * p.Members / p.Senders
	}
	return out
}

// ConnCount returns how many connections this shard opens.
func (s *Shard) ConnCount() int { return (s.Hi - s.Lo) * s.connsPerUnit() }

// User returns the id of simulated user i.
func (p *Plan) User(i int) string { return p.UserPrefix + "u" + strconv.Itoa(i) }

// gatewayFor returns the URL client i connects to ("" with a router).
func (p *Plan) gatewayFor(i int) string {
	if len(p.URLs) == 0 {
		return ""
	}
	if p.Scenario == ScenarioRoom && !p.Spread {
		return p.URLs[0]
	}
	return p.URLs[i%len(p.URLs)]
}

// netDialer returns the dialer client i opens its TCP connections with:
// bound to its source address, if any.
func (p *Plan) netDialer(i int, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	if ip := p.sourceIP(i); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
		d.Control = bindNoPort
	}
	return d
}

// sourceIP returns the local address client i binds to, nil for the
// system's choice.
func (p *Plan) sourceIP(i int) net.IP {
	if p.SourceIPs <= 1 {
		return nil
	}
	n := uint32(127<<24) + 1 + uint32(i%p.SourceIPs)
	return net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}
