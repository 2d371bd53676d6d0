package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/floodgate/floodgate/internal/store"
)

// appendReq is one AppendMessage waiting for the committer. The committer
// sets res and err, then closes done; the caller reads them only after done
// is closed.
type appendReq struct {
	ctx  context.Context
	m    store.NewMessage
	res  store.Appended
	err  error
	done chan struct{}
}

// AppendMessage implements store.Store with group commit.
//
// The request joins a bounded queue (store.ErrBusy at once when it is full;
// store.ErrClosed after Close) and waits. The committer goroutine takes every
// waiting request, up to MaxBatch, and writes them in one transaction: one
// fsync for the whole batch, which is why concurrent appends scale and a
// lone append costs one commit. Within the batch, appends are applied in
// queue order, each one assigned the conversation's next seq. The call
// returns when the batch has committed: an acknowledged message is durable
// under the configured Sync mode.
//
// A batch fails as a whole: if the transaction cannot commit, every append
// in it gets the error and none is written. An append to a missing
// conversation gets store.ErrNotFound alone; the rest of its batch goes on.
//
// If ctx ends while the request waits, AppendMessage returns ctx.Err() at
// once. A request whose ctx has ended by the time the committer takes it is
// skipped; one already in a transaction is committed all the same, so a
// caller that gave up may find its message stored. Resending it with the
// same ClientMsgID is the recovery: it returns the stored message.
func (s *Store) AppendMessage(ctx context.Context, m store.NewMessage) (store.Appended, error) {
	if err := ctx.Err(); err != nil {
		return store.Appended{}, err
	}
	// The committer reads the body after this call may have returned (on
	// ctx), when the caller is free to reuse its buffer.
	m.Body = bytes.Clone(m.Body)
	if m.Body == nil {
		m.Body = []byte{}
	}
	r := &appendReq{ctx: ctx, m: m, done: make(chan struct{})}
	if err := s.enqueue(r); err != nil {
		return store.Appended{}, err
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		// Prefer the result when both are ready: the message is stored.
		select {
		case <-r.done:
			return r.res, r.err
		default:
			return store.Appended{}, ctx.Err()
		}
	}
}

// enqueue hands r to the committer without blocking.
func (s *Store) enqueue(r *appendReq) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	select {
	case s.queue <- r:
		return nil
	default:
		return store.ErrBusy
	}
}

// commitLoop is the committer goroutine. Batches form by themselves: while
// one commits (mostly waiting for fsync), new requests queue up, and the
// next batch takes them all. No timer delays a lone append. It returns when
// Close has closed the queue and every queued request has been answered.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*appendReq, 0, s.maxBatch)
	for {
		r, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		batch = s.fill(batch)
		s.commit(batch)
		// Let answered requests (and their bodies) be collected.
		clear(batch)
	}
}

// fill adds to batch what is queued, then, with a commit window, what
// arrives within it, until the batch is full or the queue closed.
func (s *Store) fill(batch []*appendReq) []*appendReq {
	var window <-chan time.Time // set once the queue is first found empty
	for len(batch) < s.maxBatch {
		var (
			r  *appendReq
			ok bool
		)
		select {
		case r, ok = <-s.queue:
		default:
			if s.window <= 0 {
				return batch
			}
			if window == nil {
				// Since Go 1.23 Reset and Stop leave no stale tick behind.
				if s.windowTimer == nil {
					s.windowTimer = time.NewTimer(s.window)
				} else {
					s.windowTimer.Reset(s.window)
				}
				defer s.windowTimer.Stop()
				window = s.windowTimer.C
			}
			select {
			case r, ok = <-s.queue:
			case <-window:
				return batch
			}
		}
		if !ok {
			return batch
		}
		batch = append(batch, r)
	}
	return batch
}

// commit writes batch in one transaction and answers every request in it.
func (s *Store) commit(batch []*appendReq) {
	start := time.Now()
	err := s.writeBatch(batch)
	took := time.Since(start)
	if err != nil {
		s.log.Error("sqlite: group commit failed", "batch", len(batch), "err", err)
		for _, r := range batch {
			r.res, r.err = store.Appended{}, err
		}
	}
	if err == nil {
		s.commits.Add(1)
	}
	// Waiters first: the hook is bookkeeping and must not delay an ack.
	for _, r := range batch {
		close(r.done)
	}
	if err == nil && s.onCommit != nil {
		s.onCommit(len(batch), took)
	}
}

// writeBatch applies batch in one transaction, setting each request's
// result, and commits. An error means nothing was written.
//
// The work is done per conversation: one counter update per conversation
// and one read-cursor update per sender, whatever the number of messages;
// each message is one INSERT OR IGNORE, whose "ignored" is how a duplicate
// client id shows (the rare duplicate is then looked up). The counters
// themselves come from seqCache, so a conversation already written to costs
// no read.
func (s *Store) writeBatch(batch []*appendReq) (err error) {
	// Not a caller's ctx: the batch belongs to all its callers, and Close
	// relies on it finishing. Lock waits are bounded by busy_timeout.
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	st := s.stmts.in(ctx, tx)
	// One time for the batch: its messages are committed at one instant.
	at := msec(s.now())
	groups := groupByConv(batch)
	for _, g := range groups {
		if err := st.applyConv(ctx, g, at, &s.seqs); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Only committed counters enter the cache.
	for _, g := range groups {
		if g.last > 0 {
			s.seqs.put(convKey{g.app, g.conv}, g.last)
		}
	}
	return nil
}

// convKey identifies a conversation.
type convKey struct{ app, conv string }

// seqCache remembers the last seq of conversations written to, so the
// committer need not read it back. It is correct because the committer is
// the only writer of last_seq in this database, and only committed values
// enter it. Bounded: beyond maxSeqCache entries an arbitrary one is
// dropped and read again when needed. Used by the committer goroutine only.
type seqCache struct {
	m map[convKey]int64
}

const maxSeqCache = 100000

func (c *seqCache) get(k convKey) (int64, bool) {
	v, ok := c.m[k]
	return v, ok
}

func (c *seqCache) put(k convKey, v int64) {
	if c.m == nil {
		c.m = make(map[convKey]int64)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxSeqCache {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

// convGroup is the requests of a batch for one conversation, in queue order.
type convGroup struct {
	app, conv string
	reqs      []*appendReq
	// last is the conversation's last seq after the batch, 0 if the batch
	// wrote nothing to it.
	last int64
}

// groupByConv groups the live requests of batch by conversation, keeping
// queue order within each; a request whose caller gave up is answered with
// its context's error and left out.
func groupByConv(batch []*appendReq) []*convGroup {
	index := make(map[convKey]*convGroup)
	var groups []*convGroup
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		k := convKey{r.m.App, r.m.Conv}
		g := index[k]
		if g == nil {
			g = &convGroup{app: k.app, conv: k.conv}
			index[k] = g
			groups = append(groups, g)
		}
		g.reqs = append(g.reqs, r)
	}
	return groups
}

// appendStmts are the statements of an append, prepared once on the writer
// connection.
type appendStmts struct {
	last, dup, bump, insert, cursor *sql.Stmt
}

func (a *appendStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&a.last, `SELECT last_seq FROM conversations WHERE app_id = ? AND id = ?`},
		// Shaped to use the partial unique index messages_dedupe, whose
		// condition must appear in the query for SQLite to consider it.
		{&a.dup, `SELECT seq, at, body FROM messages
			WHERE app_id = ? AND conv_id = ? AND sender = ? AND client_msg_id = ? AND client_msg_id <> ''`},
		// The conversation row is the seq counter: updating it in the
		// transaction that inserts the messages keeps seqs gap-free.
		{&a.bump, `UPDATE conversations SET last_seq = ?, last_at = ? WHERE app_id = ? AND id = ?`},
		// OR IGNORE: a duplicate client id (the unique dedupe index) is
		// skipped rather than failing the batch.
		{&a.insert, `INSERT OR IGNORE INTO messages (app_id, conv_id, seq, at, sender, client_msg_id, body)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&a.cursor, `UPDATE members SET read_seq = ?
			WHERE app_id = ? AND conv_id = ? AND user_id = ? AND read_seq < ?`},
	} {
		var err error
		if *p.stmt, err = db.PrepareContext(ctx, p.query); err != nil {
			return err
		}
	}
	return nil
}

func (a *appendStmts) close() {
	for _, st := range []*sql.Stmt{a.last, a.dup, a.bump, a.insert, a.cursor} {
		if st != nil {
			st.Close()
		}
	}
}

// in returns the statements bound to tx; database/sql closes them with it.
func (a *appendStmts) in(ctx context.Context, tx *sql.Tx) appendStmts {
	return appendStmts{
		last:   tx.StmtContext(ctx, a.last),
		dup:    tx.StmtContext(ctx, a.dup),
		bump:   tx.StmtContext(ctx, a.bump),
		insert: tx.StmtContext(ctx, a.insert),
		cursor: tx.StmtContext(ctx, a.cursor),
	}
}

// dupKey identifies a message for deduplication within a conversation.
type dupKey struct{ sender, clientID string }

// applyConv writes one conversation's appends of the batch. A missing
// conversation answers its requests with ErrNotFound and writes nothing;
// any other error aborts the batch.
func (a *appendStmts) applyConv(ctx context.Context, g *convGroup, at int64, seqs *seqCache) error {
	last, ok := seqs.get(convKey{g.app, g.conv})
	if !ok {
		err := a.last.QueryRowContext(ctx, g.app, g.conv).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			for _, r := range g.reqs {
				r.err = store.ErrNotFound
			}
			return nil
		} else if err != nil {
			return err
		}
	}
	var (
		inBatch map[dupKey]store.Message
		wrote   bool
	)
	cursors := make(map[string]int64) // sender → its highest new seq
	for _, r := range g.reqs {
		m := r.m
		r.res = store.Appended{Message: store.Message{App: m.App, Conv: m.Conv, Sender: m.Sender,
			ClientMsgID: m.ClientMsgID, Body: m.Body}}
		k := dupKey{m.Sender, m.ClientMsgID}
		if prev, ok := inBatch[k]; ok && m.ClientMsgID != "" {
			r.res.Message, r.res.Duplicate = prev, true
			continue
		}
		res, err := a.insert.ExecContext(ctx, m.App, m.Conv, last+1, at, m.Sender, m.ClientMsgID, m.Body)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			// Ignored: the client id was stored by an earlier batch.
			prev, err := a.stored(ctx, g, m)
			if err != nil {
				return err
			}
			r.res.Message, r.res.Duplicate = prev, true
			continue
		}
		last++
		wrote = true
		r.res.Seq, r.res.At = uint64(last), fromMsec(at)
		if m.ClientMsgID != "" {
			if inBatch == nil {
				inBatch = make(map[dupKey]store.Message)
			}
			inBatch[k] = r.res.Message
		}
		if m.Sender != "" {
			cursors[m.Sender] = last
		}
	}
	if !wrote {
		return nil
	}
	if _, err := a.bump.ExecContext(ctx, last, at, g.app, g.conv); err != nil {
		return err
	}
	for sender, seq := range cursors {
		if _, err := a.cursor.ExecContext(ctx, seq, g.app, g.conv, sender, seq); err != nil {
			return err
		}
	}
	g.last = last
	return nil
}

// stored returns the message already stored under m's client id. An insert
// ignored for any other reason than that id (a seq conflict would be a
// bug) finds nothing here, and fails the batch rather than lose the
// message.
func (a *appendStmts) stored(ctx context.Context, g *convGroup, m store.NewMessage) (store.Message, error) {
	prev := store.Message{App: g.app, Conv: g.conv, Sender: m.Sender, ClientMsgID: m.ClientMsgID}
	if m.ClientMsgID == "" {
		return prev, fmt.Errorf("sqlite: insert of %s/%s ignored without a client id", g.app, g.conv)
	}
	var at int64
	err := a.dup.QueryRowContext(ctx, g.app, g.conv, m.Sender, m.ClientMsgID).Scan(&prev.Seq, &at, &prev.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return prev, fmt.Errorf("sqlite: insert of %s/%s ignored, but no message has its client id", g.app, g.conv)
	}
	prev.At = fromMsec(at)
	return prev, err
}
