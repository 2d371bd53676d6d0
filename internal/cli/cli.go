// Package cli implements the floodgate command's subcommands. It is kept
// out of package main so the commands can be tested in-process.
package cli

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Env is everything a command may touch of its process.
type Env struct {
	Args    []string // without the program name
	Environ []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	// Version is the release version, if the binary was stamped with one.
	Version string
}

// errUsage marks an error whose message is a usage problem: it is printed
// with a hint rather than as a failure.
var errUsage = errors.New("usage")

const usage = `floodgate — real-time messaging and push

Usage:
  floodgate server [flags]          run a node: gateway, APIs, NATS and SQLite in one process
  floodgate router [flags]          run a router: tells clients which gateway to use (cluster)
  floodgate ctl nodes [--nats-url URL]
                                    list the cluster's nodes as the bus sees them
  floodgate ctl drain [--nats-url URL] [--wait 1m] NODE
                                    move a node's clients away, then stop it
  floodgate app create NAME         create an app (prints its id and secret)
  floodgate app list                list apps
  floodgate app rotate APP          rotate an app's secret
  floodgate app disable|enable APP  disable or re-enable an app
  floodgate token --app APP --secret SECRET --user USER
                                    mint a user token (for development; backends mint their own)
  floodgate bench SCENARIO [flags]  load-test a running node or cluster (idle, connect, direct, room, group, storm)
  floodgate version                 print the version

Run 'floodgate COMMAND --help' for a command's flags.
`

// Main runs the command in env.Args and returns the process exit code.
func Main(env Env) int {
	if len(env.Args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := env.Args[0], env.Args[1:]; cmd {
	case "server":
		err = runServer(env, rest)
	case "app":
		err = runApp(env, rest)
	case "router":
		err = runRouter(env, rest)
	case "ctl":
		err = runCtl(env, rest)
	case "bench":
		err = runBench(env, rest)
	case "token":
		err = runToken(env, rest)
	case "version", "--version":
		fmt.Fprintln(env.Stdout, versionString(env.Version))
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "floodgate: %v\nRun 'floodgate help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "floodgate: %v\n", err)
		return 1
	}
}

// errHelp: help was printed on request; exit 0.
var errHelp = errors.New("help requested")

func versionString(v string) string {
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("floodgate %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
