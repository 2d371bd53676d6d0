// Command floodgate runs every role of a Floodgate node and the tools
// around it. See `floodgate help`.
package main

import (
	"os"

	"github.com/floodgate/floodgate/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version string

func main() {
	os.Exit(cli.Main(cli.Env{Args: os.Args[1:], Environ: os.Environ(), Stdin: os.Stdin,
		Stdout: os.Stdout, Stderr: os.Stderr, Version: version}))
}
