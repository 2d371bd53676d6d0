package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the printer's goroutine and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProgressQuietWhenNotATerminal(t *testing.T) {
	var out syncBuffer
	tick := make(chan time.Time)
	called := false
	p := startProgress(&out, false, func() string { called = true; return "x" }, tick)
	// Nobody listens to the ticks: a send would block, so do not send;
	// Stop must still return and print nothing.
	p.Stop()
	p.Stop()
	if out.String() != "" || called {
		t.Fatalf("printed %q to a non-terminal", out.String())
	}
}

func TestProgressRewritesOneLine(t *testing.T) {
	var out syncBuffer
	tick := make(chan time.Time)
	lines := []string{"setup 0.5s  conns 10/100", "run 1.0s", "run 1.5s  sent 3"}
	var n int
	p := startProgress(&out, true, func() string { n++; return lines[n-1] }, tick)
	for range lines {
		tick <- time.Now()
	}
	p.Stop()
	got := out.String()
	want := "\rsetup 0.5s  conns 10/100" +
		"\rrun 1.0s" + strings.Repeat(" ", len(lines[0])-len(lines[1])) + // blanks the longer line's tail
		"\rrun 1.5s  sent 3" +
		"\r" + strings.Repeat(" ", len(lines[2])) + "\r" // Stop clears the line
	if got != want {
		t.Fatalf("output\n%q\nwant\n%q", got, want)
	}
	if strings.Contains(got, "\n") {
		t.Fatal("the live line must never add a line")
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
}
