// Package sqlite is Floodgate's embedded store.Store engine: one SQLite
// database file, through the pure-Go modernc.org/sqlite driver (no cgo).
//
// The database runs in WAL mode with one writer connection and a pool of
// reader connections: readers never wait for the writer, and the writer is
// never contended inside the process. Appends go through group commit (see
// AppendMessage): many concurrent appends share one transaction and one
// fsync, which is where an embedded store's write throughput comes from.
// Every other write takes the same single writer connection in turn.
//
// The schema is created and upgraded at Open by the versioned migrations
// embedded in the package. One process at a time should open a database:
// SQLite's locks keep a second one correct, but it would contend with the
// first for the write lock.
//
// The package follows the conventions storetest pins for every engine:
// millisecond times, limit <= 0 returns nothing, store.ErrNotFound for a
// missing conversation in every method taking one, a done ctx changes
// nothing, and store.ErrClosed after Close.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/internal/store"

	// The driver registers itself as "sqlite".
	_ "modernc.org/sqlite"
)

// Options configures Open. Only Path is required.
type Options struct {
	// Path is the database file, created if missing (its directory must
	// exist). SQLite keeps Path-wal and Path-shm beside it.
	Path string
	// Sync is how durable a commit is before an append is acknowledged:
	// "full" (the default) survives power loss; "normal" survives a crash of
	// the process but may lose the last commits on power loss or an OS
	// crash, for a large gain in commit rate.
	Sync string
	// MaxBatch is the most appends committed in one transaction; default 512.
	MaxBatch int
	// CommitWindow is how long the committer waits, after taking the first
	// append of a batch that is not full, for more to join it; 0 commits at
	// once. Under a moderate load most of a commit's cost is fixed (the WAL
	// pages it writes and the fsync), so a window of a millisecond turns
	// many one-message commits into a few larger ones, for that much more
	// latency.
	CommitWindow time.Duration
	// QueueSize bounds the appends waiting for the committer; when it is
	// full, AppendMessage returns store.ErrBusy at once. Default 16384.
	QueueSize int
	// Now is the clock for every time the store assigns; default time.Now.
	Now func() time.Time
	// Logger receives commit failures and migrations; default slog.Default().
	Logger *slog.Logger
	// OnCommit, when set, is called by the committer after each successful
	// group commit with the number of appends in the batch (duplicates and
	// appends to missing conversations included) and how long the
	// transaction took. It runs on the committer goroutine after the
	// batch's callers have been answered; it must be quick, as nothing is
	// committed while it runs.
	OnCommit func(batch int, took time.Duration)
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection or process before failing; default 5s.
	BusyTimeout time.Duration
}

// Store is a store.Store on a SQLite database. It is safe for concurrent
// use. It owns one goroutine, the committer, which Close stops.
type Store struct {
	w, r    *sql.DB // the one writer connection; the reader pool
	ckpt    *sql.DB // one connection for background checkpoints
	commits atomic.Uint64
	// ckptStop ends checkpointLoop, which closes ckptDone as it returns.
	ckptStop, ckptDone chan struct{}
	now                func() time.Time
	log                *slog.Logger
	onCommit           func(int, time.Duration)
	maxBatch           int
	window             time.Duration
	windowTimer        *time.Timer // the committer's, reused for every batch

	// mu orders AppendMessage's enqueue against Close's close of queue, so
	// no request is sent on a closed channel or left in it unanswered.
	mu     sync.RWMutex
	closed atomic.Bool
	queue  chan *appendReq
	// done is closed when the committer has drained the queue and exited.
	done  chan struct{}
	stmts appendStmts
	seqs  seqCache // the committer's

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at o.Path, brings its schema
// up to date and starts the committer. ctx bounds the opening only.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("sqlite: Options.Path is required")
	}
	// The driver takes everything after '?' as parameters, and a "file:"
	// prefix would switch it to URI parsing; neither can be a plain path.
	if strings.ContainsRune(o.Path, '?') || strings.HasPrefix(o.Path, "file:") {
		return nil, fmt.Errorf("sqlite: unsupported database path %q", o.Path)
	}
	var syncMode string
	switch strings.ToLower(o.Sync) {
	case "", "full":
		syncMode = "FULL"
	case "normal":
		syncMode = "NORMAL"
	default:
		return nil, fmt.Errorf("sqlite: Options.Sync %q: want \"full\" or \"normal\"", o.Sync)
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	steps, err := loadMigrations(migrationFiles)
	if err != nil {
		return nil, err
	}

	// Pragmas go in the DSN so that every connection the pools open gets
	// them, including ones opened after a connection is dropped.
	busy := fmt.Sprintf("busy_timeout(%d)", o.BusyTimeout.Milliseconds())
	// A 64 MiB page cache for the writer: a group commit touches a row of
	// every conversation and member it writes to, and with the default 2 MB
	// cache those pages are read back from the file on every batch.
	// The writer checkpoints only as a backstop: see checkpoint.go.
	w, err := sql.Open("sqlite", dsn(o.Path, "immediate",
		busy, "journal_mode(WAL)", "synchronous("+syncMode+")", "foreign_keys(1)", "cache_size(-65536)",
		fmt.Sprintf("wal_autocheckpoint(%d)", walBackstopPages)))
	if err != nil {
		return nil, err
	}
	// One connection: SQLite has one writer anyway, and queueing for it in
	// the pool (which honours ctx) beats failing on its lock. BEGIN
	// IMMEDIATE takes the write lock at the start of each transaction, so a
	// transaction that reads first cannot fail to upgrade later.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	applied, err := migrate(ctx, w, steps, o.Now())
	if err != nil {
		w.Close()
		return nil, err
	}
	for _, name := range applied {
		o.Logger.Info("sqlite: applied migration", "path", o.Path, "migration", name)
	}

	r, err := sql.Open("sqlite", dsn(o.Path, "deferred", busy, "query_only(1)"))
	if err != nil {
		w.Close()
		return nil, err
	}
	ckpt, err := sql.Open("sqlite", dsn(o.Path, "deferred", busy, "synchronous("+syncMode+")"))
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	ckpt.SetMaxOpenConns(1)
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	if err := r.PingContext(ctx); err != nil {
		ckpt.Close()
		r.Close()
		w.Close()
		return nil, err
	}

	s := &Store{
		w: w, r: r, ckpt: ckpt,
		ckptStop: make(chan struct{}),
		ckptDone: make(chan struct{}),
		now:      o.Now,
		log:      o.Logger,
		onCommit: o.OnCommit,
		maxBatch: o.MaxBatch,
		window:   o.CommitWindow,
		queue:    make(chan *appendReq, o.QueueSize),
		done:     make(chan struct{}),
	}
	if err := s.stmts.prepare(ctx, w); err != nil {
		s.stmts.close()
		ckpt.Close()
		r.Close()
		w.Close()
		return nil, err
	}
	go s.commitLoop()
	go s.checkpointLoop()
	return s, nil
}

// dsn returns the driver's data source name for path with the given
// transaction lock mode and pragmas.
func dsn(path, txlock string, pragmas ...string) string {
	q := url.Values{}
	q.Set("_txlock", txlock)
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return path + "?" + q.Encode()
}

// Close stops accepting appends, commits those already queued (answering
// their callers), stops the committer and closes the database. Calls made
// after Close return store.ErrClosed; a second Close returns nil.
// Concurrent calls all return once the store is released.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed.Store(true)
		close(s.queue)
		s.mu.Unlock()

		<-s.done
		close(s.ckptStop)
		<-s.ckptDone
		s.stmts.close()
		// When the last connection closes, SQLite checkpoints everything
		// and removes the WAL. database/sql lets calls already running finish on their
		// connections, and closes each as it is released.
		s.closeErr = errors.Join(s.ckpt.Close(), s.r.Close(), s.w.Close())
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// Ping implements store.Store: it checks both pools and that the store is
// open.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.r.PingContext(ctx); err != nil {
		return s.fail(ctx, err)
	}
	// The writer may be busy with a batch: waiting for it is the point, as
	// a writer stuck for longer than ctx allows is not serving writes.
	return s.fail(ctx, s.w.PingContext(ctx))
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
// (the driver reports an interrupt in its own words), store.ErrClosed when
// the store was closed under the call.
func (s *Store) fail(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return store.ErrClosed
	}
	return err
}

// inWriteTx runs fn in a transaction on the writer connection and commits
// it if fn returns nil.
func (s *Store) inWriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(ctx, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.fail(ctx, err)
	}
	return s.fail(ctx, tx.Commit())
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

// seqArg clamps a seq to what an INTEGER column holds. Real seqs never come
// near the limit; a caller's "everything" value (math.MaxUint64) may.
func seqArg(v uint64) int64 {
	return int64(min(v, math.MaxInt64))
}

// PoolStats implements store.Pooled: the writer's and the readers' pools
// (the checkpointer's single connection is its own business).
func (s *Store) PoolStats() []store.PoolStats {
	stat := func(name string, db *sql.DB) store.PoolStats {
		st := db.Stats()
		return store.PoolStats{Name: name, MaxConns: st.MaxOpenConnections, InUse: st.InUse, Idle: st.Idle,
			Waits: st.WaitCount, WaitTime: st.WaitDuration}
	}
	return []store.PoolStats{stat("writer", s.w), stat("reader", s.r)}
}
