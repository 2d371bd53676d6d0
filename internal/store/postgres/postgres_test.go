package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/internal/store/storetest"
)

// envURL names the environment variable holding the URL of the database
// the tests use, e.g.
//
//	FLOODGATE_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//
// Each test works in a schema of its own, created fresh and dropped at the
// end, so tests (and test runs) sharing the database do not see each other.
const envURL = "FLOODGATE_TEST_POSTGRES"

// testURL returns the test database's URL, skipping t if there is none.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(envURL)
	if u == "" {
		t.Skip(envURL + " is not set: skipping the tests that need PostgreSQL (set it to a postgres:// URL of a database they may create schemas in)")
	}
	return u
}

// withAppName returns the test database's URL with application_name set,
// so a test can find a store's sessions in pg_stat_activity.
func withAppName(t testing.TB, name string) string {
	t.Helper()
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatalf("%s is not a URL: %v", envURL, err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// newSchema returns the name of a schema no other test uses; the schema
// (created by the first Open naming it) is dropped with everything in it
// when t ends, after the stores t opened are closed.
func newSchema(t testing.TB) string {
	t.Helper()
	dbURL := testURL(t)
	name := "fg_test_" + strings.ToLower(rand.Text())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openTest opens a store on schema with o's other options, closing it when
// the test ends. o.URL defaults to the test database's.
func openTest(t testing.TB, schema string, o Options) *Store {
	t.Helper()
	if o.URL == "" {
		o.URL = testURL(t)
	}
	o.Schema = schema
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

// rawPool opens a pool on schema that bypasses the store, for tests that
// look at or tamper with the tables directly.
func rawPool(t testing.TB, schema string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestConformance(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, newSchema(t), Options{})
	})
}

func TestConformanceClocked(t *testing.T) {
	testURL(t)
	storetest.RunClocked(t, func(t *testing.T, now func() time.Time) store.Store {
		return openTest(t, newSchema(t), Options{Now: now})
	})
}

func TestPersistence(t *testing.T) {
	testURL(t)
	// The suite reopens "the store kept in dir": here, the schema made for
	// dir on its first open.
	var (
		mu      sync.Mutex
		schemas = map[string]string{}
	)
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		mu.Lock()
		schema, ok := schemas[dir]
		if !ok {
			schema = newSchema(t)
			schemas[dir] = schema
		}
		mu.Unlock()
		return openTest(t, schema, Options{})
	})
}

func TestOpenOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{URL: "postgres://%zz"},
		{URL: "mysql://localhost/db"},
	} {
		if s, err := Open(t.Context(), o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
}

// TestOpenDefaultSchema checks Open without Options.Schema: the tables go
// to the first schema of the connection's own search_path.
func TestOpenDefaultSchema(t *testing.T) {
	schema := newSchema(t)
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()

	// The schema does not exist yet, and Open creates only the one it is
	// given: there is nowhere to put the tables.
	if s, err := Open(t.Context(), Options{URL: u.String(), Logger: slog.New(slog.DiscardHandler)}); err == nil {
		s.Close()
		t.Fatal("Open succeeded with no existing schema on the search_path")
	}
	raw := rawPool(t, schema)
	if _, err := raw.Exec(t.Context(), `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, "", Options{URL: u.String()})
	if err := s.CreateApp(t.Context(), store.App{ID: "a", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := raw.QueryRow(t.Context(), `SELECT COUNT(*) FROM apps`).Scan(&n); err != nil || n != 1 {
		t.Errorf("apps in %s: %d, %v; want 1", schema, n, err)
	}
}

// TestPingReadOnly checks that Ping fails on a database that refuses
// writes, as a standby does.
func TestPingReadOnly(t *testing.T) {
	u, err := url.Parse(testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_transaction_read_only", "on")
	u.RawQuery = q.Encode()
	schema := newSchema(t)
	openTest(t, schema, Options{}).Close() // create the schema read-write first
	s := openTest(t, schema, Options{URL: u.String()})
	if err := s.Ping(t.Context()); err == nil {
		t.Error("Ping on a read-only session succeeded")
	}
}

// With every connection of the main pool taken (a reconnect storm's syncs),
// the reads an auth needs and the group commit still go ahead on their own
// connections, and the pool statistics show the calls waiting on the main
// pool.
func TestAuthAndCommitBypassBusyPool(t *testing.T) {
	s := openTest(t, newSchema(t), Options{MaxConns: 2})
	ctx := t.Context()
	if err := s.CreateApp(ctx, store.App{ID: "a1", Name: "one", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConversation(ctx, store.Conversation{App: "a1", ID: "g1", Kind: store.KindGroup, Creator: "u1"}, []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	var held []*pgxpool.Conn
	for range 2 {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()

	// A read on the main pool waits, and is counted as waiting…
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := s.Conversation(short, "a1", "nope")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Conversation with the main pool exhausted: %v, want a deadline error", err)
	}
	// …while the auth reads do not.
	authCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if a, err := s.App(authCtx, "a1"); err != nil || a.Secret != "s" {
		t.Fatalf("App with the main pool exhausted: %+v, %v", a, err)
	}
	if _, err := s.LatestRevocation(authCtx, "a1"); err != nil {
		t.Fatalf("LatestRevocation: %v", err)
	}
	if _, err := s.RevokedBefore(authCtx, "a1", "u1"); err != nil {
		t.Fatalf("RevokedBefore: %v", err)
	}
	if ap, err := s.AppendMessage(authCtx, store.NewMessage{App: "a1", Conv: "g1", Sender: "u1", ClientMsgID: "c1", Body: []byte(`"hi"`)}); err != nil || ap.Seq != 1 {
		t.Fatalf("AppendMessage with the main pool exhausted: %+v, %v", ap, err)
	}

	stats := map[string]store.PoolStats{}
	for _, p := range s.PoolStats() {
		stats[p.Name] = p
	}
	main, auth, commit := stats["main"], stats["auth"], stats["commit"]
	if main.MaxConns != 2 || main.InUse != 2 || main.Waits < 1 {
		t.Errorf("main pool stats %+v: want 2 of 2 in use and a wait counted", main)
	}
	if auth.MaxConns != 2 || auth.InUse != 0 {
		t.Errorf("auth pool stats %+v: want size 2, none in use", auth)
	}
	if commit.MaxConns != 1 || commit.InUse != 0 {
		t.Errorf("commit pool stats %+v: want size 1, none in use", commit)
	}
}
