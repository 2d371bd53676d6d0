// Package memstore is an in-memory store.Store: a mutex and maps, nothing
// written to disk. It is the reference implementation the conformance suite
// (storetest) is checked against, and the store for tests of packages that
// need one; it is not meant for production. Nothing is ever evicted: its
// memory grows with everything callers store, and everything is lost when
// the process exits, so "durable" in the store.Store contract means only
// "visible to every later call on this Store".
//
// It follows the same conventions as the SQLite engine where store.Store
// leaves room (see storetest for the full list): times are kept at
// millisecond precision in UTC, a limit <= 0 returns nothing, methods taking
// a conversation id return store.ErrNotFound when it does not exist, and a
// call whose ctx is already done does nothing and returns ctx.Err().
package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// Options configures New.
type Options struct {
	// Now is the clock used for every time the store assigns (message times,
	// default creation times). Default time.Now.
	Now func() time.Time
}

// Store is an in-memory store.Store; see the package doc. It is safe for
// concurrent use. The zero value is not usable: call New.
type Store struct {
	now func() time.Time

	mu     sync.RWMutex
	closed bool
	apps   map[string]*store.App
	convs  map[key]*conv
	// byUser indexes membership by (app, user) so listings do not scan
	// every conversation of every app.
	byUser  map[key]map[string]struct{}
	revoked map[key]time.Time
}

// key scopes an id (conversation or user) by app.
type key struct{ app, id string }

// dedupeKey identifies a client message id within one conversation.
type dedupeKey struct{ sender, clientMsgID string }

type conv struct {
	c       store.Conversation
	members map[string]*store.Member
	// msgs[i] has seq i+1: seqs have no gaps, so the slice is the index.
	msgs   []store.Message
	dedupe map[dedupeKey]uint64
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New(o Options) *Store {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		now:     now,
		apps:    make(map[string]*store.App),
		convs:   make(map[key]*conv),
		byUser:  make(map[key]map[string]struct{}),
		revoked: make(map[key]time.Time),
	}
}

// ms rounds t to the millisecond precision the durable engines keep, so a
// test passing against memstore does not depend on precision they lose. The
// zero time stays zero.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// clock returns the current time at store precision.
func (s *Store) clock() time.Time { return ms(s.now()) }

// begin takes the lock for a method call: the write lock when write is set.
// It returns ctx.Err() if ctx is already done, store.ErrClosed once Close has
// run; otherwise the caller must call the returned unlock function.
func (s *Store) begin(ctx context.Context, write bool) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if write {
		s.mu.Lock()
		unlock = s.mu.Unlock
	} else {
		s.mu.RLock()
		unlock = s.mu.RUnlock
	}
	if s.closed {
		unlock()
		return nil, store.ErrClosed
	}
	return unlock, nil
}

// CreateApp implements store.Store. A zero CreatedAt is set to now.
func (s *Store) CreateApp(ctx context.Context, a store.App) error {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if _, ok := s.apps[a.ID]; ok {
		return store.ErrConflict
	}
	a.CreatedAt = ms(a.CreatedAt)
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.clock()
	}
	a.PrevSecretUntil = ms(a.PrevSecretUntil)
	s.apps[a.ID] = &a
	return nil
}

// App implements store.Store.
func (s *Store) App(ctx context.Context, id string) (store.App, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return store.App{}, err
	}
	defer unlock()
	a, ok := s.apps[id]
	if !ok {
		return store.App{}, store.ErrNotFound
	}
	return *a, nil
}

// Apps implements store.Store.
func (s *Store) Apps(ctx context.Context) ([]store.App, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make([]store.App, 0, len(s.apps))
	for _, a := range s.apps {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RotateAppSecret implements store.Store.
func (s *Store) RotateAppSecret(ctx context.Context, id, secret string, prevUntil time.Time) (store.App, error) {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return store.App{}, err
	}
	defer unlock()
	a, ok := s.apps[id]
	if !ok {
		return store.App{}, store.ErrNotFound
	}
	a.PrevSecret, a.Secret, a.PrevSecretUntil = a.Secret, secret, ms(prevUntil)
	return *a, nil
}

// SetAppDisabled implements store.Store.
func (s *Store) SetAppDisabled(ctx context.Context, id string, disabled bool) error {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	a, ok := s.apps[id]
	if !ok {
		return store.ErrNotFound
	}
	a.Disabled = disabled
	return nil
}

// RevokeSessions implements store.Store. The recorded time only moves
// forward: revoking at an earlier time than already recorded changes nothing,
// so a late or repeated call cannot re-enable tokens. ErrNotFound if the app
// does not exist.
func (s *Store) RevokeSessions(ctx context.Context, app, user string, t time.Time) error {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return err
	}
	defer unlock()
	if _, ok := s.apps[app]; !ok {
		return store.ErrNotFound
	}
	k := key{app, user}
	if t = ms(t); t.After(s.revoked[k]) {
		s.revoked[k] = t
	}
	return nil
}

// LatestRevocation implements store.Store.
func (s *Store) LatestRevocation(ctx context.Context, app string) (time.Time, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	var latest time.Time
	for k, t := range s.revoked {
		if k.app == app && t.After(latest) {
			latest = t
		}
	}
	return latest, nil
}

// RevokedBefore implements store.Store.
func (s *Store) RevokedBefore(ctx context.Context, app, user string) (time.Time, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	return s.revoked[key{app, user}], nil
}

// Ping implements store.Store: it fails only once the store is closed.
func (s *Store) Ping(ctx context.Context) error {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return err
	}
	unlock()
	return nil
}

// Close implements store.Store. Every later call returns store.ErrClosed,
// except Close, which returns nil. The data is dropped.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.apps, s.convs, s.byUser, s.revoked = nil, nil, nil, nil
	return nil
}
