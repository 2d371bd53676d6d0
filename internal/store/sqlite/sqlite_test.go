package sqlite

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/storetest"
)

// openTest opens a store at path with o's other options, closing it when
// the test ends.
func openTest(t *testing.T, path string, o Options) *Store {
	t.Helper()
	o.Path = path
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, mode := range []string{"full", "normal"} {
		t.Run(mode, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				return openTest(t, filepath.Join(t.TempDir(), "db"), Options{Sync: mode})
			})
		})
	}
}

func TestConformanceClocked(t *testing.T) {
	storetest.RunClocked(t, func(t *testing.T, now func() time.Time) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "db"), Options{Now: now, Sync: "normal"})
	})
}

func TestPersistence(t *testing.T) {
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		return openTest(t, filepath.Join(dir, "db"), Options{})
	})
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{},
		{Path: filepath.Join(dir, "db"), Sync: "off"},
		{Path: filepath.Join(dir, "db?x=1")},
		{Path: "file:" + filepath.Join(dir, "db")},
		{Path: filepath.Join(dir, "missing", "db")},
	} {
		if s, err := Open(t.Context(), o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
}

// TestPragmas checks that every connection, the writer and each pooled
// reader, got its pragmas from the DSN.
func TestPragmas(t *testing.T) {
	for mode, want := range map[string]int{"full": 2, "normal": 1} {
		t.Run(mode, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "db"), Options{Sync: mode, BusyTimeout: 1234 * time.Millisecond})
			ctx := t.Context()
			var journal string
			var sync, fk, busy int
			row := s.w.QueryRowContext(ctx, `SELECT journal_mode, synchronous, foreign_keys, timeout FROM pragma_journal_mode, pragma_synchronous, pragma_foreign_keys, pragma_busy_timeout`)
			if err := row.Scan(&journal, &sync, &fk, &busy); err != nil {
				t.Fatal(err)
			}
			if journal != "wal" || sync != want || fk != 1 || busy != 1234 {
				t.Errorf("writer: journal_mode %s, synchronous %d, foreign_keys %d, busy_timeout %d; want wal, %d, 1, 1234", journal, sync, fk, busy, want)
			}
			// Hold several reader connections at once so each is a different
			// pooled connection.
			for i := range 3 {
				c, err := s.r.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var qo, busy int
				if err := c.QueryRowContext(ctx, `SELECT query_only, timeout FROM pragma_query_only, pragma_busy_timeout`).Scan(&qo, &busy); err != nil {
					t.Fatal(err)
				}
				if qo != 1 || busy != 1234 {
					t.Errorf("reader %d: query_only %d, busy_timeout %d; want 1, 1234", i, qo, busy)
				}
				if _, err := c.ExecContext(ctx, `INSERT INTO apps (id, name, secret, created_at) VALUES ('x', 'x', 'x', 1)`); err == nil {
					t.Errorf("reader %d wrote to the database", i)
				}
			}
		})
	}
}

// TestCloseReleasesDatabase checks that Close closes every connection:
// SQLite checkpoints and removes the WAL file only when the last one closes.
func TestCloseReleasesDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := openTest(t, path, Options{})
	if err := s.CreateApp(t.Context(), store.App{ID: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apps(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("no WAL file while open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WAL file still there after Close (%v): a connection was left open", err)
	}
}
