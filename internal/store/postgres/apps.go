package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate/internal/store"
)

const appColumns = `id, name, secret, disabled, created_at, prev_secret, prev_secret_until`

// scanApp reads a row of appColumns; store.ErrNotFound if there is none.
func scanApp(row pgx.Row) (store.App, error) {
	var (
		a              store.App
		created, until int64
	)
	if err := row.Scan(&a.ID, &a.Name, &a.Secret, &a.Disabled, &created, &a.PrevSecret, &until); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return store.App{}, store.ErrNotFound
		}
		return store.App{}, err
	}
	a.CreatedAt, a.PrevSecretUntil = fromMsec(created), fromMsec(until)
	return a, nil
}

// CreateApp implements store.Store. A zero CreatedAt is set to now.
// store.ErrConflict if the id is taken, also by a node racing this one.
func (s *Store) CreateApp(ctx context.Context, a store.App) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now()
	}
	// ON CONFLICT waits for a racing insert of the same id to end, so
	// exactly one of two racers inserts and the other sees its row.
	tag, err := s.pool.Exec(ctx, `INSERT INTO apps (`+appColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO NOTHING`,
		a.ID, a.Name, a.Secret, a.Disabled, msec(a.CreatedAt), a.PrevSecret, msec(a.PrevSecretUntil))
	if err != nil {
		return s.fail(ctx, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrConflict
	}
	return nil
}

// App implements store.Store.
func (s *Store) App(ctx context.Context, id string) (store.App, error) {
	if err := s.check(ctx); err != nil {
		return store.App{}, err
	}
	a, err := scanApp(s.authPool.QueryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE id = $1`, id))
	return a, s.fail(ctx, err)
}

// Apps implements store.Store.
func (s *Store) Apps(ctx context.Context) ([]store.App, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+appColumns+` FROM apps ORDER BY id`)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.App, error) { return scanApp(row) })
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// RotateAppSecret implements store.Store. It is one statement, so two
// racing rotations apply one after the other: the second keeps the first's
// new secret as its previous one.
func (s *Store) RotateAppSecret(ctx context.Context, id, secret string, prevUntil time.Time) (store.App, error) {
	if err := s.check(ctx); err != nil {
		return store.App{}, err
	}
	// SET expressions read the row as it was, so prev_secret gets the
	// secret being replaced.
	a, err := scanApp(s.pool.QueryRow(ctx, `UPDATE apps SET prev_secret = secret, secret = $1, prev_secret_until = $2
		WHERE id = $3 RETURNING `+appColumns, secret, msec(prevUntil), id))
	if err != nil {
		return store.App{}, s.fail(ctx, err)
	}
	return a, nil
}

// SetAppDisabled implements store.Store. store.ErrNotFound if the app does
// not exist.
func (s *Store) SetAppDisabled(ctx context.Context, id string, disabled bool) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE apps SET disabled = $1 WHERE id = $2`, disabled, id)
	if err != nil {
		return s.fail(ctx, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RevokeSessions implements store.Store. The recorded time only moves
// forward, so a late or repeated call, from any node, cannot re-enable
// tokens. store.ErrNotFound if the app does not exist.
func (s *Store) RevokeSessions(ctx context.Context, app, user string, t time.Time) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO revocations (app_id, user_id, revoked_before) VALUES ($1, $2, $3)
		ON CONFLICT (app_id, user_id) DO UPDATE
		SET revoked_before = GREATEST(revocations.revoked_before, excluded.revoked_before)`,
		app, user, msec(t))
	return s.fail(ctx, missingApp(err))
}

// LatestRevocation implements store.Store.
func (s *Store) LatestRevocation(ctx context.Context, app string) (time.Time, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, err
	}
	var v *int64
	err := s.authPool.QueryRow(ctx, `SELECT max(revoked_before) FROM revocations WHERE app_id = $1`, app).Scan(&v)
	if err != nil {
		return time.Time{}, s.fail(ctx, err)
	}
	if v == nil {
		return time.Time{}, nil
	}
	return fromMsec(*v), nil
}

// RevokedBefore implements store.Store.
func (s *Store) RevokedBefore(ctx context.Context, app, user string) (time.Time, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, err
	}
	var v int64
	err := s.authPool.QueryRow(ctx, `SELECT revoked_before FROM revocations WHERE app_id = $1 AND user_id = $2`, app, user).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, s.fail(ctx, err)
	}
	return fromMsec(v), nil
}
