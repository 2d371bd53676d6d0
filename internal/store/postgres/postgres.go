// Package postgres is Floodgate's cluster store.Store engine: one
// PostgreSQL database shared by every Floodgate node, through pgx v5 and
// its connection pool.
//
// Several nodes write the same conversations at once, so nothing here
// relies on being the only writer: seqs are assigned under a row lock on
// the conversation, duplicates are found after taking it, and every
// multi-row lock is taken in one global order (see AppendMessage). Appends
// go through group commit: many concurrent appends of one node share one
// transaction and one WAL flush; likewise, the UserConversations reads of
// concurrent callers (every connecting client's sync) share statements.
// Every other method is one statement or one short READ COMMITTED
// transaction on the pool. The committer, and the reads a connecting
// client's auth needs (Options.AuthConns), have connections of their own,
// so that neither queues behind a storm of reads.
//
// The schema is created and upgraded at Open by the versioned migrations
// embedded in the package, under an advisory lock so that nodes starting
// together do not race; a database newer than this build is refused.
//
// The package follows the conventions storetest pins for every engine:
// millisecond times, limit <= 0 returns nothing, store.ErrNotFound for a
// missing conversation in every method taking one, a done ctx changes
// nothing, and store.ErrClosed after Close.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate/internal/store"
)

// Options configures Open. Only URL is required.
type Options struct {
	// URL is the database, as a postgres:// or postgresql:// URL (or any
	// connection string pgx accepts). Parameters such as sslmode and
	// application_name go in its query.
	URL string
	// Schema, when set, is the schema holding Floodgate's tables: Open
	// creates it if missing and every connection uses it as its
	// search_path. Empty means the connection's own search_path (normally
	// "public").
	Schema string
	// MaxConns is the size of the connection pool; default 16. Every call
	// but AppendMessage and the auth reads holds one of its connections
	// for its statement or transaction. The committer has one more
	// connection, of its own: a batch answers hundreds of senders at once,
	// and in a reconnect storm it would otherwise wait for a connection
	// behind thousands of syncs, each answering one.
	MaxConns int
	// AuthConns is the size of a second pool, for the reads a connecting
	// client's auth needs (apps and revocations); default 2. In a
	// reconnect storm the main pool has thousands of syncs queued, and an
	// auth read waiting behind them would fail the auth (and bring the
	// client back for another try) although the database is idle.
	AuthConns int
	// MaxBatch is the most appends committed in one transaction; default 512.
	MaxBatch int
	// QueueSize bounds the appends waiting for the committer; when it is
	// full, AppendMessage returns store.ErrBusy at once. Default 16384.
	QueueSize int
	// CommitTimeout bounds one group commit, retries included: acquiring a
	// connection, waiting for conversation locks held by other nodes, and
	// the commit itself. A batch that runs out of time fails as a whole.
	// Default 30s.
	CommitTimeout time.Duration
	// Now is the clock for every time the store assigns; default time.Now.
	Now func() time.Time
	// Logger receives commit failures, retries and migrations; default
	// slog.Default().
	Logger *slog.Logger
	// OnCommit, when set, is called by the committer after each successful
	// group commit with the number of appends in the batch (duplicates,
	// appends to missing conversations and appends skipped because their
	// ctx ended included) and how long the batch took, retries included.
	// It runs on the committer goroutine after the batch's callers have
	// been answered; it must be quick, as nothing is committed while it
	// runs.
	OnCommit func(batch int, took time.Duration)
}

// Store is a store.Store on a PostgreSQL database. It is safe for
// concurrent use, by many goroutines and alongside Stores of other
// processes on the same database and schema. It owns one goroutine, the
// committer, the readers of users' conversations (userconvs.go) and the
// pools'; Close stops them.
type Store struct {
	pool          *pgxpool.Pool
	authPool      *pgxpool.Pool // see Options.AuthConns
	commitPool    *pgxpool.Pool // the committer's one connection; see Options.MaxConns
	now           func() time.Time
	log           *slog.Logger
	onCommit      func(int, time.Duration)
	maxBatch      int
	commitTimeout time.Duration

	// mu orders AppendMessage's enqueue against Close's close of queue, so
	// no request is sent on a closed channel or left in it unanswered.
	mu     sync.RWMutex
	closed atomic.Bool
	queue  chan *appendReq
	// done is closed when the committer has drained the queue and exited.
	done chan struct{}
	// userConvs and convMembers coalesce UserConversations and
	// ConversationMembers reads (see coalesce.go); closing stopReaders
	// stops their readers, readers waits for them.
	userConvs   *coalescer[limitedKey, []store.ConvState]
	convMembers *coalescer[limitedKey, convMembers]
	stopReaders chan struct{}
	readers     sync.WaitGroup
	// retries counts batch attempts that failed with a serialization
	// failure or a deadlock and were run again; the deadlock tests read it.
	retries atomic.Int64

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to o.URL, brings the schema up to date and starts the
// committer. ctx bounds the opening only. Open fails if the database's
// schema is newer than this build's.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.URL == "" {
		return nil, errors.New("postgres: Options.URL is required")
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.AuthConns <= 0 {
		o.AuthConns = 2
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	steps, err := loadMigrations(migrationFiles)
	if err != nil {
		return nil, err
	}

	cfg.MaxConns = int32(min(o.MaxConns, math.MaxInt32))
	if o.Schema != "" {
		// A startup parameter rather than a SET: it holds for every
		// connection the pool ever opens, including replacements.
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{o.Schema}.Sanitize()
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		// So an operator can tell Floodgate's sessions (and their locks)
		// apart in pg_stat_activity.
		cfg.ConnConfig.RuntimeParams["application_name"] = "floodgate"
	}
	authCfg := cfg.Copy()
	authCfg.MaxConns = int32(min(o.AuthConns, math.MaxInt32))
	commitCfg := cfg.Copy()
	commitCfg.MaxConns = 1
	var pools []*pgxpool.Pool
	closePools := func() {
		for _, p := range pools {
			p.Close()
		}
	}
	for _, c := range []*pgxpool.Config{cfg, authCfg, commitCfg} {
		p, err := pgxpool.NewWithConfig(ctx, c)
		if err != nil {
			closePools()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		pools = append(pools, p)
	}
	pool, authPool, commitPool := pools[0], pools[1], pools[2]
	applied, err := migrate(ctx, pool, o.Schema, steps, o.Now())
	if err != nil {
		closePools()
		return nil, err
	}
	for _, name := range applied {
		o.Logger.Info("postgres: applied migration", "schema", o.Schema, "migration", name)
	}

	s := &Store{
		pool:          pool,
		authPool:      authPool,
		commitPool:    commitPool,
		now:           o.Now,
		log:           o.Logger,
		onCommit:      o.OnCommit,
		maxBatch:      o.MaxBatch,
		commitTimeout: o.CommitTimeout,
		queue:         make(chan *appendReq, o.QueueSize),
		done:          make(chan struct{}),
		stopReaders:   make(chan struct{}),
	}
	s.userConvs = newCoalescer(s, s.readUserConvs)
	s.convMembers = newCoalescer(s, s.readConvMembers)
	go s.commitLoop()
	s.userConvs.start(&s.readers, s.stopReaders)
	s.convMembers.start(&s.readers, s.stopReaders)
	return s, nil
}

// Close stops accepting appends, commits those already queued (answering
// their callers), stops the committer and closes the pool, waiting for
// calls still running to release their connections. Calls made after Close
// return store.ErrClosed; a second Close returns nil. Concurrent calls all
// return once the store is released.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.queue)
		s.mu.Unlock()

		<-s.done
		close(s.stopReaders)
		s.readers.Wait()
		s.commitPool.Close()
		s.authPool.Close()
		s.pool.Close()
	})
	return nil
}

// PoolStats implements store.Pooled: the main pool, the auth pool and the
// committer's.
func (s *Store) PoolStats() []store.PoolStats {
	stat := func(name string, p *pgxpool.Pool) store.PoolStats {
		st := p.Stat()
		return store.PoolStats{Name: name, MaxConns: int(st.MaxConns()), InUse: int(st.AcquiredConns()),
			Idle: int(st.IdleConns()), Waits: st.EmptyAcquireCount(), WaitTime: st.EmptyAcquireWaitTime()}
	}
	return []store.PoolStats{stat("main", s.pool), stat("auth", s.authPool), stat("commit", s.commitPool)}
}

// Ping implements store.Store: it checks that the store is open and that
// the database accepts writes, which a standby (a replica, or a former
// primary after a failover) does not.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var readOnly string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('transaction_read_only')`).Scan(&readOnly); err != nil {
		return s.fail(ctx, err)
	}
	if readOnly != "off" {
		return errors.New("postgres: the database is read-only (a standby?)")
	}
	return nil
}

// check returns the error a call must return before doing anything: ctx's
// if it is done, store.ErrClosed after Close.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// fail maps a database error to the store's: ctx's error when ctx ended
// (pgx wraps it in its own), store.ErrClosed when the store was closed
// under the call.
func (s *Store) fail(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrInvalid):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return store.ErrClosed
	}
	return err
}

// inTx runs fn in a READ COMMITTED transaction and commits it if fn
// returns nil. The level is set rather than inherited because the
// statements are written for it (each sees what committed before it
// started), whatever default_transaction_isolation the server has.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.fail(ctx, pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn))
}

// SQLSTATEs the store acts on.
const (
	codeFKViolation   = "23503"
	codeSerialization = "40001"
	codeDeadlock      = "40P01"
)

// sqlState returns err's SQLSTATE, or "" if the server did not report it.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// missingApp turns the foreign key violation of a row naming an app that
// does not exist into store.ErrNotFound. Writes rely on the foreign key
// instead of checking the app first: one statement fewer, and no window
// between the check and the write.
func missingApp(err error) error {
	if sqlState(err) == codeFKViolation {
		return store.ErrNotFound
	}
	return err
}

// msec stores t as Unix milliseconds; the zero time as 0.
func msec(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMsec is msec's inverse.
func fromMsec(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// seqArg clamps a seq to what a BIGINT column holds. Real seqs never come
// near the limit; a caller's "everything" value (math.MaxUint64) may.
func seqArg(v uint64) int64 {
	return int64(min(v, math.MaxInt64))
}
