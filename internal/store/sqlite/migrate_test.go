package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestLoadMigrations(t *testing.T) {
	steps, err := loadMigrations(migrationFiles)
	if err != nil || len(steps) == 0 || steps[0].version != 1 {
		t.Fatalf("embedded migrations: %v, %v", steps, err)
	}
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	good := fstest.MapFS{
		"migrations/0002_b.sql": file("B"),
		"migrations/0001_a.sql": file("A"),
		"migrations/0003_c.sql": file("C"),
		"migrations/README.txt": file("not a step"),
		"migrations/x/0004.sql": file("not a step either"),
	}
	steps, err = loadMigrations(good)
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	var got []string
	for _, m := range steps {
		got = append(got, m.sql)
	}
	if strings.Join(got, "") != "ABC" {
		t.Errorf("steps in order %v, want A B C", got)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":        {"migrations/0001_a.sql": file("A"), "migrations/0003_c.sql": file("C")},
		"duplicate":  {"migrations/0001_a.sql": file("A"), "migrations/001_b.sql": file("B")},
		"unnumbered": {"migrations/init.sql": file("A")},
		"zero":       {"migrations/0000_a.sql": file("A")},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: loadMigrations accepted it", name)
		}
	}
}

func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path, "immediate", "foreign_keys(1)"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestMigrate(t *testing.T) {
	db := openRaw(t, filepath.Join(t.TempDir(), "db"))
	ctx := t.Context()
	v1 := migration{1, "0001_a.sql", "CREATE TABLE a (x INTEGER); CREATE TABLE a2 (y INTEGER);"}
	v2 := migration{2, "0002_b.sql", "CREATE TABLE b (x INTEGER);"}
	v3bad := migration{3, "0003_c.sql", "CREATE TABLE c (x INTEGER); INSERT INTO nowhere VALUES (1);"}
	v3 := migration{3, "0003_c.sql", "CREATE TABLE c (x INTEGER);"}
	now := time.Now()

	applied, err := migrate(ctx, db, []migration{v1}, now)
	if err != nil || strings.Join(applied, ",") != "0001_a.sql" {
		t.Fatalf("first migrate: %v, %v", applied, err)
	}
	if !tableExists(t, db, "a2") {
		t.Errorf("every statement of a step must run")
	}
	applied, err = migrate(ctx, db, []migration{v1, v2}, now)
	if err != nil || strings.Join(applied, ",") != "0002_b.sql" {
		t.Fatalf("second migrate applied %v, %v; want only 0002", applied, err)
	}
	if applied, err = migrate(ctx, db, []migration{v1, v2}, now); err != nil || len(applied) != 0 {
		t.Errorf("up-to-date migrate applied %v, %v; want nothing", applied, err)
	}

	if _, err := migrate(ctx, db, []migration{v1, v2, v3bad}, now); err == nil {
		t.Fatalf("a failing step succeeded")
	}
	if tableExists(t, db, "c") {
		t.Errorf("a failed step left part of its work behind")
	}
	if applied, err = migrate(ctx, db, []migration{v1, v2, v3}, now); err != nil || strings.Join(applied, ",") != "0003_c.sql" {
		t.Errorf("migrate after the failure: %v, %v", applied, err)
	}

	if _, err := migrate(ctx, db, []migration{v1}, now); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("migrate of a newer database: %v, want a refusal", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := openTest(t, path, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := openRaw(t, path)
	if _, err := db.ExecContext(t.Context(), `INSERT INTO schema_version (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(t.Context(), Options{Path: path}); err == nil {
		s.Close()
		t.Fatal("Open accepted a database from a newer build")
	}
}
