package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

func testApps(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	created := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

	t.Run("CreateAndGet", func(t *testing.T) {
		in := store.App{ID: "app-b", Name: "B", Secret: "s1", CreatedAt: created}
		if err := s.CreateApp(ctx, in); err != nil {
			t.Fatalf("CreateApp: %v", err)
		}
		got, err := s.App(ctx, "app-b")
		if err != nil {
			t.Fatalf("App: %v", err)
		}
		if got.ID != "app-b" || got.Name != "B" || got.Secret != "s1" || got.Disabled ||
			!sameTime(got.CreatedAt, created) || got.PrevSecret != "" || !got.PrevSecretUntil.IsZero() {
			t.Errorf("App = %+v, want %+v", got, in)
		}
		if got.CreatedAt.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("CreatedAt %v kept more than millisecond precision", got.CreatedAt)
		}
	})

	t.Run("ZeroCreatedAtIsNow", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		if err := s.CreateApp(ctx, store.App{ID: "app-a", Name: "A", Secret: "sa"}); err != nil {
			t.Fatalf("CreateApp: %v", err)
		}
		got, err := s.App(ctx, "app-a")
		if err != nil {
			t.Fatalf("App: %v", err)
		}
		// A second of slack either way: the store's clock is its own.
		if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("CreatedAt = %v, want about now", got.CreatedAt)
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		err := s.CreateApp(ctx, store.App{ID: "app-b", Name: "other", Secret: "x"})
		wantErr(t, "CreateApp(existing id)", err, store.ErrConflict)
		got, _ := s.App(ctx, "app-b")
		if got.Name != "B" || got.Secret != "s1" {
			t.Errorf("a conflicting CreateApp changed the app: %+v", got)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		_, err := s.App(ctx, "nope")
		wantErr(t, "App(missing)", err, store.ErrNotFound)
		_, err = s.RotateAppSecret(ctx, "nope", "x", time.Now())
		wantErr(t, "RotateAppSecret(missing)", err, store.ErrNotFound)
		wantErr(t, "SetAppDisabled(missing)", s.SetAppDisabled(ctx, "nope", true), store.ErrNotFound)
	})

	t.Run("AppsOrderedByID", func(t *testing.T) {
		if err := s.CreateApp(ctx, store.App{ID: "app-0", Name: "zero", Secret: "s0"}); err != nil {
			t.Fatalf("CreateApp: %v", err)
		}
		apps, err := s.Apps(ctx)
		if err != nil {
			t.Fatalf("Apps: %v", err)
		}
		var ids []string
		for _, a := range apps {
			ids = append(ids, a.ID)
		}
		if want := []string{"app-0", "app-a", "app-b"}; !slices.Equal(ids, want) {
			t.Fatalf("Apps ids = %v, want %v", ids, want)
		}
		if apps[2].Secret != "s1" || apps[2].Name != "B" {
			t.Errorf("Apps()[2] = %+v", apps[2])
		}
	})

	t.Run("RotateSecret", func(t *testing.T) {
		until := created.Add(24 * time.Hour)
		got, err := s.RotateAppSecret(ctx, "app-b", "s2", until)
		if err != nil {
			t.Fatalf("RotateAppSecret: %v", err)
		}
		check := func(what string, a store.App, secret, prev string, until time.Time) {
			t.Helper()
			if a.Secret != secret || a.PrevSecret != prev || !sameTime(a.PrevSecretUntil, until) ||
				a.Name != "B" || !sameTime(a.CreatedAt, created) {
				t.Errorf("%s = %+v, want secret %q, prev %q until %v", what, a, secret, prev, until)
			}
		}
		check("returned app", got, "s2", "s1", until)
		stored, _ := s.App(ctx, "app-b")
		check("stored app", stored, "s2", "s1", until)

		// A second rotation retires the first secret for good.
		until2 := until.Add(time.Hour)
		got, err = s.RotateAppSecret(ctx, "app-b", "s3", until2)
		if err != nil {
			t.Fatalf("RotateAppSecret: %v", err)
		}
		check("app rotated twice", got, "s3", "s2", until2)
		other, _ := s.App(ctx, "app-a")
		if other.Secret != "sa" || other.PrevSecret != "" {
			t.Errorf("rotating app-b changed app-a: %+v", other)
		}
	})

	t.Run("Disable", func(t *testing.T) {
		for _, disabled := range []bool{true, true, false, true} {
			if err := s.SetAppDisabled(ctx, "app-b", disabled); err != nil {
				t.Fatalf("SetAppDisabled(%v): %v", disabled, err)
			}
			a, _ := s.App(ctx, "app-b")
			if a.Disabled != disabled || a.Secret != "s3" {
				t.Errorf("after SetAppDisabled(%v): %+v", disabled, a)
			}
		}
		a, _ := s.App(ctx, "app-a")
		if a.Disabled {
			t.Errorf("disabling app-b disabled app-a")
		}
	})
}

func testRevocations(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := ctxFor(t)
	createApp(t, s, "a")
	createApp(t, s, "b")
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 999999999, time.UTC)

	got, err := s.RevokedBefore(ctx, "a", "alice")
	if err != nil || !got.IsZero() {
		t.Fatalf("RevokedBefore(never revoked) = %v, %v; want zero time", got, err)
	}
	if got, err := s.LatestRevocation(ctx, "a"); err != nil || !got.IsZero() {
		t.Fatalf("LatestRevocation(never revoked) = %v, %v; want zero time", got, err)
	}
	if err := s.RevokeSessions(ctx, "a", "alice", t0); err != nil {
		t.Fatalf("RevokeSessions: %v", err)
	}
	if got, err := s.RevokedBefore(ctx, "a", "alice"); err != nil || !sameTime(got, t0) {
		t.Errorf("RevokedBefore = %v, %v; want %v", got, err, t0)
	}
	t1 := t0.Add(time.Hour)
	if err := s.RevokeSessions(ctx, "a", "alice", t1); err != nil {
		t.Fatalf("RevokeSessions: %v", err)
	}
	if got, _ := s.RevokedBefore(ctx, "a", "alice"); !sameTime(got, t1) {
		t.Errorf("RevokedBefore after a later revocation = %v, want %v", got, t1)
	}
	// An earlier time must not re-enable the tokens issued in between.
	if err := s.RevokeSessions(ctx, "a", "alice", t0); err != nil {
		t.Fatalf("RevokeSessions: %v", err)
	}
	if got, _ := s.RevokedBefore(ctx, "a", "alice"); !sameTime(got, t1) {
		t.Errorf("RevokedBefore after an earlier revocation = %v, want still %v", got, t1)
	}
	if err := s.RevokeSessions(ctx, "a", "bob", t0.Add(time.Minute)); err != nil {
		t.Fatalf("RevokeSessions: %v", err)
	}
	if got, err := s.LatestRevocation(ctx, "a"); err != nil || !sameTime(got, t1) {
		t.Errorf("LatestRevocation = %v, %v; want the latest of all users, %v", got, err, t1)
	}
	if got, err := s.LatestRevocation(ctx, "b"); err != nil || !got.IsZero() {
		t.Errorf("LatestRevocation of another app = %v, %v; want zero: revocations leak", got, err)
	}
	for _, k := range [][2]string{{"b", "alice"}} {
		if got, _ := s.RevokedBefore(ctx, k[0], k[1]); !got.IsZero() {
			t.Errorf("RevokedBefore(%s, %s) = %v, want zero: revocations leak", k[0], k[1], got)
		}
	}
	wantErr(t, "RevokeSessions(missing app)", s.RevokeSessions(ctx, "nope", "alice", t0), store.ErrNotFound)
}
