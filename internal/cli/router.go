package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/floodgate/floodgate/internal/cluster"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/server"
)

func runRouter(env Env, args []string) error {
	cfg, err := config.LoadRouter(args, env.Environ)
	if errors.Is(err, config.ErrHelp) {
		config.RouterUsage(env.Stdout, "floodgate router")
		return errHelp
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return server.RunRouter(ctx, cfg, newLogger(env, cfg.LogLevel, cfg.LogFormat))
}

// runCtl runs operator commands against a cluster through its bus.
func runCtl(env Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: ctl needs a subcommand: nodes, drain NODE", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("floodgate ctl "+sub, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	urls := fs.String("nats-url", orDefault(lookupEnv(env.Environ, "FLOODGATE_NATS_URL"), "nats://127.0.0.1:4222"),
		"NATS URL(s) of the cluster, comma-separated (env FLOODGATE_NATS_URL)")
	interval := fs.Duration("heartbeat-interval", time.Second, "the nodes' heartbeat interval")
	wait := fs.Duration("wait", 0, "drain: how long to wait for the node to leave (0: only send the command)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+*wait)
	defer cancel()
	b, err := server.ConnectListener(ctx, strings.Split(*urls, ","), "floodgate-ctl", newLogger(env, "warn", "text"))
	if err != nil {
		return err
	}
	defer b.Close()
	node, err := cluster.Start(ctx, b, cluster.Options{Interval: *interval})
	if err != nil {
		return err
	}
	// Heartbeats arrive once per interval: listen a little longer than one
	// to hear every node.
	hear := func() []cluster.Status {
		select {
		case <-time.After(*interval + *interval/2):
		case <-ctx.Done():
		}
		return node.Alive()
	}
	switch sub {
	case "nodes":
		if fs.NArg() != 0 {
			return fmt.Errorf("%w: ctl nodes takes no argument", errUsage)
		}
		printNodes(env, hear())
	case "drain":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: ctl drain takes a node id", errUsage)
		}
		id := fs.Arg(0)
		if err := cluster.SendCommand(b, cluster.Command{Op: cluster.OpDrain, Node: id}); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "drain sent to %s\n", id)
		for deadline := time.Now().Add(*wait); time.Now().Before(deadline); {
			still := false
			for _, n := range hear() {
				still = still || n.Node == id
			}
			if !still {
				fmt.Fprintf(env.Stdout, "%s has left the cluster\n", id)
				return nil
			}
		}
		if *wait > 0 {
			return fmt.Errorf("%s is still in the cluster after %s", id, *wait)
		}
	default:
		return fmt.Errorf("%w: unknown ctl subcommand %q", errUsage, sub)
	}
	return nil
}

func printNodes(env Env, nodes []cluster.Status) {
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tURL\tCONNS\tCAPACITY\tLOAD\tREADY\tDRAINING\tUP")
	for _, n := range nodes {
		role := "gateway"
		if n.Router {
			role = "router"
		}
		up := time.Since(time.UnixMilli(n.Started)).Truncate(time.Second)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f%%\t%v\t%v\t%s\n", n.Node, role, n.URL, n.Conns, n.Capacity, n.Load*100, n.Ready, n.Draining, up)
	}
	_ = tw.Flush()
}
