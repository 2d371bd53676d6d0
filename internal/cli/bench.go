package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/bench"
	"github.com/floodgate/floodgate/internal/server"
)

const benchUsage = `Usage: floodgate bench SCENARIO [flags]

Drives a running Floodgate (one node or a cluster) through the client
protocol the way real clients do, then prints a table (and --json FILE).
Every run stops by itself: setup, --duration, drain and teardown are
bounded. Exit status 1 when a message was lost or delivered twice, or the
scenario could not complete.

Scenarios:
  idle --conns N              hold N authenticated connections (each user in two
                              direct conversations); server RSS, heap and
                              goroutines per connection once the RSS settles
  connect --conns N [--tls] [--resume]
                              connection + auth rate and handshake latency; with
                              --tls a second wave resumes TLS sessions, with
                              --resume it syncs after auth
  direct --pairs N --rate R   1:1 messages between N pairs at R msg/s in total
  room --members N --rate R [--senders K] [--spread]
                              one room of N members, K senders at R msg/s in total
  group --groups G --members M --rate R
                              G groups of M members at R msg/s in total
  storm --conns N [--kill-cmd CMD] [--restart-cmd CMD]
                              N SDK clients through a server restart: time until
                              all are back and resumed, peak RSS and fds, 503s

Examples:
  floodgate bench idle --conns 10000 --procs 2
  floodgate bench direct --pairs 500 --rate 5000 --duration 30s --json direct.json
  floodgate bench room --members 2000 --senders 4 --rate 100 --url ws://127.0.0.1:7170/v1/ws,ws://127.0.0.1:7270/v1/ws --spread
  floodgate bench storm --conns 4000 --restart-cmd 'systemctl restart floodgate'

Flags:
`

// runBench runs `floodgate bench`. With bench.ChildArg alone it is a
// worker child of a --procs run instead, speaking JSON lines on stdin and
// stdout.
func runBench(env Env, args []string) error {
	if len(args) == 1 && args[0] == bench.ChildArg {
		// Ctrl-C reaches the whole process group: the coordinator handles
		// it and tells its workers, which must not die first.
		signal.Ignore(syscall.SIGINT)
		if code := bench.RunChild(context.Background(), env.Stdin, env.Stdout, env.Stderr); code != 0 {
			return fmt.Errorf("bench worker exited with status %d", code)
		}
		return nil
	}
	fs := flag.NewFlagSet("floodgate bench", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, benchUsage)
		fs.PrintDefaults()
	}
	var (
		p    bench.Plan
		cfg  bench.Config
		urls string
	)
	// Where and who.
	fs.StringVar(&urls, "url", orDefault(lookupEnv(env.Environ, "FLOODGATE_URL"), "ws://127.0.0.1:7070/v1/ws"),
		"gateway WebSocket URL(s), comma-separated: clients are spread over them (env FLOODGATE_URL)")
	fs.StringVar(&p.Router, "router", "", "router base URL (http://HOST:PORT), instead of --url: every client asks it")
	fs.StringVar(&p.App, "app", lookupEnv(env.Environ, "FLOODGATE_APP"), "app id (env FLOODGATE_APP); without it a throwaway app is created")
	fs.StringVar(&p.Secret, "secret", lookupEnv(env.Environ, "FLOODGATE_APP_SECRET"), "app secret, to mint user tokens (env FLOODGATE_APP_SECRET)")
	fs.StringVar(&cfg.AdminURL, "admin-url", "", "base URL of a node's HTTP API, to create the app (default: from the first --url)")
	fs.StringVar(&cfg.AdminToken, "admin-token", lookupEnv(env.Environ, "FLOODGATE_ADMIN_TOKEN"),
		"admin token (env FLOODGATE_ADMIN_TOKEN; default: read from --data-dir)")
	dataDir := fs.String("data-dir", orDefault(lookupEnv(env.Environ, "FLOODGATE_DATA_DIR"), "./data"),
		"data directory of a local node, where a generated admin token is kept")
	fs.StringVar(&p.UserPrefix, "user-prefix", "", "prefix of the simulated users' ids (default: random, so runs never share users)")
	fs.BoolVar(&p.TLSInsecure, "tls-insecure", false, "accept any server certificate (self-signed test certificates)")
	fs.IntVar(&p.SourceIPs, "source-ips", 1, "spread client source addresses over 127.0.0.1..127.0.0.N, each with its own ephemeral ports")
	// Servers to watch.
	ops := fs.String("ops-url", "http://127.0.0.1:7071",
		"ops listener(s) to read /metrics from, comma-separated, one per server, \"\" for none (default with the default --url only)")
	fs.IntVar(&cfg.PID, "pid", 0, "server process id, read from /proc (with or instead of --ops-url)")
	fs.BoolVar(&cfg.ForceGC, "force-gc", true, "idle: make the server collect garbage (GET /debug/pprof/heap?gc=1) before the baseline and before every poll of its RSS until it settles")
	// Shape of the run.
	fs.DurationVar(&p.Duration, "duration", 0, "measured phase: traffic; idle: longest hold; storm: longest outage and recovery (default 10s; idle 30s; storm 2m)")
	fs.DurationVar(&p.SetupTimeout, "setup-timeout", 2*time.Minute, "bound on connecting and preparing the clients")
	fs.DurationVar(&p.DrainTimeout, "drain-timeout", 10*time.Second, "bound on waiting for acks and deliveries after the measured phase")
	fs.IntVar(&p.Procs, "procs", 1, "processes simulating the clients (one holds at most ~19000 connections)")
	fs.IntVar(&p.Concurrency, "concurrency", 100, "connection attempts in progress at once, over all processes")
	fs.Float64Var(&p.ConnectRate, "connect-rate", 0, "pace new connections at this many per second (0: as fast as --concurrency allows)")
	fs.IntVar(&p.Retries, "retries", 3, "times a failed connection attempt is repeated, with back-off (after Retry-After for a 503)")
	fs.StringVar(&p.CPUProfile, "cpuprofile", "", "write CPU profiles of the tool itself: FILE for this process, FILE.N for worker N of --procs")
	fs.StringVar(&cfg.JSONPath, "json", "", "also write the full report, every number, as JSON to this file")
	// Scenarios.
	fs.IntVar(&p.Conns, "conns", 0, "idle, connect, storm: connections")
	fs.IntVar(&p.Pairs, "pairs", 0, "direct: pairs of users")
	fs.IntVar(&p.Members, "members", 0, "room: members; group: members per group")
	fs.IntVar(&p.Groups, "groups", 0, "group: groups")
	fs.Float64Var(&p.Rate, "rate", 0, "direct, room, group: messages per second, all senders together")
	fs.IntVar(&p.Senders, "senders", 1, "room: members that send (the server limits each connection's request rate)")
	fs.BoolVar(&p.Spread, "spread", false, "room: spread the members over the --url list (default: all on the first)")
	fs.IntVar(&p.BodyBytes, "size", 100, "message body size in bytes (about)")
	fs.BoolVar(&p.TLS, "tls", false, "connect: a second wave resumes the TLS sessions of the first (needs wss:// URLs)")
	fs.BoolVar(&p.Resume, "resume", false, "connect: a second wave syncs after auth, to resume what it missed")
	fs.IntVar(&p.StormMessages, "messages", 2, "storm: messages each pair exchanges before the outage")
	fs.DurationVar(&p.BackoffMin, "backoff-min", 0, "storm: SDK back-off lower bound (default: the SDK's, 250ms)")
	fs.DurationVar(&p.BackoffMax, "backoff-max", 0, "storm: SDK back-off upper bound (default: the SDK's, 30s)")
	fs.StringVar(&cfg.KillCmd, "kill-cmd", "", "storm: shell command the bench runs to stop the server once all clients are connected")
	fs.StringVar(&cfg.RestartCmd, "restart-cmd", "", "storm: shell command the bench runs (after --kill-cmd) to restart the server")

	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		p.Scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if p.Scenario == "" && fs.NArg() > 0 {
		p.Scenario = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if p.Scenario == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: bench takes one scenario (%s); see floodgate bench --help",
			errUsage, strings.Join(bench.Scenarios(), ", "))
	}
	if p.Router == "" {
		p.URLs = splitComma(urls)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.OpsURLs = splitComma(*ops)
	if !set["ops-url"] && (set["url"] || set["router"] || lookupEnv(env.Environ, "FLOODGATE_URL") != "") {
		// The default ops listener is the default node's: reading it
		// while loading another node would report the wrong server.
		cfg.OpsURLs = nil
		if cfg.PID == 0 {
			fmt.Fprintln(env.Stderr, "floodgate bench: no --ops-url (or --pid) for this --url: the servers' resources will not be reported")
		}
	}
	if p.App == "" {
		if cfg.AdminURL == "" && len(p.URLs) > 0 {
			cfg.AdminURL = apiFromWS(p.URLs[0])
		}
		if cfg.AdminToken == "" {
			if b, err := os.ReadFile(filepath.Join(*dataDir, server.AdminTokenFile)); err == nil {
				cfg.AdminToken = strings.TrimSpace(string(b))
			}
		}
	}
	cfg.Plan = p
	cfg.Command = "floodgate bench " + quoteArgs(redact(append([]string{p.Scenario}, args...)))
	cfg.Stdout, cfg.Stderr = env.Stdout, env.Stderr

	bench.TrimGC()
	if p.CPUProfile != "" {
		stopProfile, err := bench.StartCPUProfile(p.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	_, err := bench.Run(ctx, cfg)
	if errors.Is(err, bench.ErrPlan) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}

func splitComma(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// apiFromWS derives a node's HTTP API base from its WebSocket URL: same
// host, http for ws and https for wss.
func apiFromWS(ws string) string {
	u, err := url.Parse(ws)
	if err != nil {
		return ""
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// redact hides secrets in the command line the report echoes.
func redact(args []string) []string {
	out := make([]string, len(args))
	hide := false
	for i, a := range args {
		switch {
		case hide:
			out[i], hide = "***", false
			continue
		case a == "--secret" || a == "-secret" || a == "--admin-token" || a == "-admin-token":
			hide = true
		case strings.HasPrefix(a, "--secret=") || strings.HasPrefix(a, "-secret="):
			a = a[:strings.IndexByte(a, '=')+1] + "***"
		case strings.HasPrefix(a, "--admin-token=") || strings.HasPrefix(a, "-admin-token="):
			a = a[:strings.IndexByte(a, '=')+1] + "***"
		}
		out[i] = a
	}
	return out
}

// quoteArgs joins args as a shell would need them.
func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\;&|<>*?()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
