package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The schema is an ordered list of SQL files, NNNN_name.sql, each applied
// once. A released file is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

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
			return nil, fmt.Errorf("sqlite: migration %s: name must be NNNN_name.sql", base)
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
			return nil, fmt.Errorf("sqlite: migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return steps, nil
}

// migrate brings the schema of db to the last of steps, all in one
// transaction: a failed step leaves the database as it was. A database
// whose schema is newer than steps is refused rather than used: this code
// would misread it.
func migrate(ctx context.Context, db *sql.DB, steps []migration, now time.Time) (applied []string, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("sqlite: create schema_version: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return nil, fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if current > len(steps) {
		return nil, fmt.Errorf("sqlite: database schema version %d is newer than this build's %d: refusing to open it", current, len(steps))
	}
	for _, m := range steps[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, now.UnixMilli()); err != nil {
			return nil, fmt.Errorf("sqlite: record migration %s: %w", m.name, err)
		}
		applied = append(applied, m.name)
	}
	return applied, tx.Commit()
}
