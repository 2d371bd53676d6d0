package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema is an ordered list of SQL files, NNNN_name.sql, each applied
// once. A released file is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockClass is the first key of the advisory lock that serializes
// migrations; the second is a hash of the schema name, so stores of
// different schemas in one database (the tests' case) do not wait for each
// other. A hash collision only serializes two migrations needlessly.
const migrateLockClass int32 = 0x466c6447 // "FlgG"

// migration is one schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the steps from fsys, ordered by version, and checks
// that the versions are 1, 2, 3… so a misnumbered file fails every Open
// (and the tests) instead of being skipped.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var steps []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s: name must be NNNN_name.sql", base)
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		steps = append(steps, migration{version: v, name: base, sql: string(data)})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].version < steps[j].version })
	for i, m := range steps {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return steps, nil
}

// migrate brings the schema to the last of steps, all in one transaction:
// PostgreSQL's DDL is transactional, so a failed step leaves the database
// as it was. The transaction first takes an advisory lock, so that nodes
// starting together apply each step once: the second waits, then finds the
// schema up to date. schema, when not empty, is created with the
// schema_version table; the pool's search_path already names it. A database whose schema is newer than
// steps is refused rather than used: this code would misread it.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, steps []migration, now time.Time) (applied []string, err error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, migrateLockClass, schema); err != nil {
		return nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	// A store that is up to date writes nothing here, so a node can open
	// (and then report through Ping) a database it cannot write to.
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: look for schema_version: %w", err)
	}
	if !exists {
		if err := createVersionTable(ctx, tx, schema); err != nil {
			return nil, err
		}
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version); err != nil {
		return nil, fmt.Errorf("postgres: read schema version: %w", err)
	}
	if version > len(steps) {
		return nil, fmt.Errorf("postgres: database schema version %d is newer than this build's %d: refusing to open it", version, len(steps))
	}
	for _, m := range steps[version:] {
		// Without arguments pgx sends the simple protocol, which runs a
		// file of several statements as one.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("postgres: migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, now.UnixMilli()); err != nil {
			return nil, fmt.Errorf("postgres: record migration %s: %w", m.name, err)
		}
		applied = append(applied, m.name)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: commit migrations: %w", err)
	}
	return applied, nil
}

// createVersionTable creates schema (if given and missing) and its empty
// schema_version table.
func createVersionTable(ctx context.Context, tx pgx.Tx, schema string) error {
	if schema != "" {
		// Under the migration lock: concurrent CREATE SCHEMA IF NOT EXISTS
		// can fail on the catalog's unique index instead of doing nothing.
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: create schema: %w", err)
		}
	}
	// Unqualified names land in the first schema of search_path that
	// exists; make sure there is one, and that it is the one asked for.
	var current *string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&current); err != nil {
		return fmt.Errorf("postgres: current schema: %w", err)
	}
	switch {
	case current == nil:
		return errors.New("postgres: no schema of the search_path exists: create one or set Options.Schema")
	case schema != "" && *current != schema:
		return fmt.Errorf("postgres: tables would go to schema %q, not %q", *current, schema)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE schema_version (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at BIGINT  NOT NULL
	)`); err != nil {
		return fmt.Errorf("postgres: create schema_version: %w", err)
	}
	return nil
}
