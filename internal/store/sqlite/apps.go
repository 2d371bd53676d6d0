package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

const appColumns = `id, name, secret, disabled, created_at, prev_secret, prev_secret_until`

// scanApp reads a row of appColumns.
func scanApp(row interface{ Scan(...any) error }) (store.App, error) {
	var (
		a              store.App
		created, until int64
	)
	if err := row.Scan(&a.ID, &a.Name, &a.Secret, &a.Disabled, &created, &a.PrevSecret, &until); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return store.App{}, store.ErrNotFound
		}
		return store.App{}, err
	}
	a.CreatedAt, a.PrevSecretUntil = fromMsec(created), fromMsec(until)
	return a, nil
}

// CreateApp implements store.Store. A zero CreatedAt is set to now.
func (s *Store) CreateApp(ctx context.Context, a store.App) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now()
	}
	return s.inWriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO apps (`+appColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			a.ID, a.Name, a.Secret, a.Disabled, msec(a.CreatedAt), a.PrevSecret, msec(a.PrevSecretUntil))
		return insertedOne(res, err)
	})
}

// insertedOne turns the result of an INSERT … ON CONFLICT DO NOTHING into
// store.ErrConflict when the row existed.
func insertedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return store.ErrConflict
	}
	return nil
}

// App implements store.Store.
func (s *Store) App(ctx context.Context, id string) (store.App, error) {
	if err := s.check(ctx); err != nil {
		return store.App{}, err
	}
	a, err := scanApp(s.r.QueryRowContext(ctx, `SELECT `+appColumns+` FROM apps WHERE id = ?`, id))
	return a, s.fail(ctx, err)
}

// Apps implements store.Store.
func (s *Store) Apps(ctx context.Context) ([]store.App, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+appColumns+` FROM apps ORDER BY id`)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rows.Close()
	var out []store.App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out = append(out, a)
	}
	return out, s.fail(ctx, rows.Err())
}

// RotateAppSecret implements store.Store.
func (s *Store) RotateAppSecret(ctx context.Context, id, secret string, prevUntil time.Time) (store.App, error) {
	var a store.App
	err := s.inWriteTx(ctx, func(tx *sql.Tx) (err error) {
		// SET expressions read the row as it was, so prev_secret gets the
		// secret being replaced.
		a, err = scanApp(tx.QueryRowContext(ctx, `UPDATE apps SET prev_secret = secret, secret = ?, prev_secret_until = ?
			WHERE id = ? RETURNING `+appColumns, secret, msec(prevUntil), id))
		return err
	})
	if err != nil {
		return store.App{}, err
	}
	return a, nil
}

// SetAppDisabled implements store.Store.
func (s *Store) SetAppDisabled(ctx context.Context, id string, disabled bool) error {
	return s.inWriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE apps SET disabled = ? WHERE id = ?`, disabled, id)
		return updatedOne(res, err)
	})
}

// updatedOne turns an UPDATE that matched no row into store.ErrNotFound.
func updatedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RevokeSessions implements store.Store. The recorded time only moves
// forward, so a late or repeated call cannot re-enable tokens.
// store.ErrNotFound if the app does not exist.
func (s *Store) RevokeSessions(ctx context.Context, app, user string, t time.Time) error {
	return s.inWriteTx(ctx, func(tx *sql.Tx) error {
		if err := appExists(ctx, tx, app); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO revocations (app_id, user_id, revoked_before) VALUES (?, ?, ?)
			ON CONFLICT (app_id, user_id) DO UPDATE SET revoked_before = MAX(revoked_before, excluded.revoked_before)`,
			app, user, msec(t))
		return err
	})
}

// appExists returns store.ErrNotFound unless app exists. Writes that
// reference an app check it first, for a clear error rather than a foreign
// key violation.
func appExists(ctx context.Context, tx *sql.Tx, app string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM apps WHERE id = ?`, app).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// LatestRevocation implements store.Store.
func (s *Store) LatestRevocation(ctx context.Context, app string) (time.Time, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, err
	}
	var v sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT max(revoked_before) FROM revocations WHERE app_id = ?`, app).Scan(&v)
	if err != nil {
		return time.Time{}, s.fail(ctx, err)
	}
	if !v.Valid {
		return time.Time{}, nil
	}
	return fromMsec(v.Int64), nil
}

// RevokedBefore implements store.Store.
func (s *Store) RevokedBefore(ctx context.Context, app, user string) (time.Time, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, err
	}
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT revoked_before FROM revocations WHERE app_id = ? AND user_id = ?`, app, user).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, s.fail(ctx, err)
	}
	return fromMsec(v), nil
}
