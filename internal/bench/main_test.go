package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// childEnv makes the test binary a bench worker child, so that --procs is
// tested with real processes speaking over real pipes.
const childEnv = "FLOODGATE_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(RunChild(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// spawnTestChild starts this test binary as a worker child.
func spawnTestChild(ctx context.Context) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd, nil
}

func TestRunChildRefusesWithoutAShard(t *testing.T) {
	var log bytes.Buffer
	if code := RunChild(context.Background(), strings.NewReader("{}\n"), &bytes.Buffer{}, &log); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(log.String(), "no shard") {
		t.Fatalf("log %q does not say why", log.String())
	}
}
