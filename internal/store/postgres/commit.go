package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate/internal/store"
)

// maxRetries is how many times a batch is run again after failing with a
// serialization failure or a deadlock. The batch's locking order rules out
// deadlocks between batches, so a retry is for what the store does not
// control (a server with another isolation level forced on it, an
// operator's transaction holding rows); a few attempts are enough to get
// past a transient conflict, and more would only delay the failure.
const maxRetries = 3

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

// AppendMessage implements store.Store with group commit that stays
// correct when several nodes (Stores in different processes) append to the
// same conversations at once.
//
// The request joins a bounded queue (store.ErrBusy at once when it is full;
// store.ErrClosed after Close) and waits. The committer goroutine takes
// every waiting request, up to MaxBatch, and writes them in one READ
// COMMITTED transaction, one WAL flush for the whole batch:
//
//  1. Requests whose ctx has ended are skipped (they get ctx's error).
//  2. The rest are grouped by (app, conversation), keeping queue order
//     within each conversation.
//  3. The batch's conversation rows are locked with one SELECT … FOR UPDATE
//     ORDER BY app_id, id, so every batch of every node takes its locks in
//     the same global order. A conversation without a row fails its
//     requests with store.ErrNotFound; the rest of the batch goes on.
//  4. Only then are the batch's client ids looked up in messages. Under READ
//     COMMITTED this statement sees everything committed before it started,
//     including the messages of another node's batch that held the lock
//     just before; duplicates within the batch are found in memory. A
//     duplicate is answered with the stored message (Duplicate set) and
//     writes nothing.
//  5. Each conversation with k new messages gets them seqs last_seq+1 …
//     last_seq+k in queue order, from the last_seq read under the lock, and
//     one UPDATE raises last_seq by k (and sets last_at) for every
//     conversation, checking with RETURNING that each landed on last_seq+k.
//  6. All new messages are inserted by one INSERT … SELECT FROM unnest, and
//     each sender's read cursor moves once per conversation, to its highest
//     new seq (never backwards; system messages move none).
//  7. The transaction commits and every waiter is answered.
//
// Why this cannot gap, duplicate or deadlock across nodes: a seq is
// assigned only by the holder of the conversation's row lock, from the
// last_seq committed by the previous holder, and it is written in the same
// transaction as the message, so it commits with its message or not at all.
// The dedupe lookup runs after the lock, so the previous holder's messages
// are visible to it, and the unique index on (app, conv, sender, client id)
// backs it up. Conversation locks are taken in one global order in one
// statement, and everything else a batch locks (member rows, message index
// entries) belongs to conversations it already holds, so no two batches can
// wait for each other in a cycle.
//
// A batch fails as a whole: if the transaction fails, every append in it
// gets the error and none is written. A serialization failure or deadlock
// (SQLSTATE 40001/40P01) is retried up to maxRetries times first, skipping
// the requests whose ctx has ended meanwhile. The whole batch, retries
// included, is bounded by Options.CommitTimeout. If the connection is lost
// while committing, the outcome is unknown: the callers get an error but
// the messages may be stored.
//
// If ctx ends while the request waits, AppendMessage returns ctx.Err() at
// once. A request already in a transaction is committed all the same, so a
// caller that gave up, or got an error, may find its message stored.
// Resending it with the same ClientMsgID is the recovery: it returns the
// stored message.
func (s *Store) AppendMessage(ctx context.Context, m store.NewMessage) (store.Appended, error) {
	if err := ctx.Err(); err != nil {
		return store.Appended{}, err
	}
	// The committer reads the body after this call may have returned (on
	// ctx), when the caller is free to reuse its buffer; and pgx would send
	// a nil slice as NULL.
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
// one commits, new requests queue up, and the next batch takes them all. No
// timer delays a lone append. It returns when Close has closed the queue
// and every queued request has been answered.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*appendReq, 0, s.maxBatch)
	for {
		r, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], r)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
		// Let answered requests (and their bodies) be collected.
		clear(batch)
	}
}

// commit writes batch and answers every request in it.
func (s *Store) commit(batch []*appendReq) {
	start := time.Now()
	err := s.writeBatch(batch)
	took := time.Since(start)
	if err != nil {
		s.log.Error("postgres: group commit failed", "batch", len(batch), "err", err)
	}
	// Waiters first: the hook is bookkeeping and must not delay an ack.
	for _, r := range batch {
		close(r.done)
	}
	if err == nil && s.onCommit != nil {
		s.onCommit(len(batch), took)
	}
}

// writeBatch commits batch, retrying a serialization failure or deadlock,
// and sets every request's result. An error means nothing was written and
// every request of the last attempt has that error.
func (s *Store) writeBatch(batch []*appendReq) error {
	// Not a caller's ctx: the batch belongs to all its callers, and Close
	// relies on it finishing. CommitTimeout bounds it instead.
	ctx, cancel := context.WithTimeout(context.Background(), s.commitTimeout)
	defer cancel()
	live := make([]*appendReq, 0, len(batch))
	for attempt := 0; ; attempt++ {
		live = live[:0]
		for _, r := range batch {
			r.res = store.Appended{}
			if r.err = r.ctx.Err(); r.err == nil {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			return nil
		}
		err := s.tryBatch(ctx, live)
		if err == nil {
			return nil
		}
		code := sqlState(err)
		if (code == codeSerialization || code == codeDeadlock) && attempt < maxRetries && ctx.Err() == nil {
			s.retries.Add(1)
			s.log.Warn("postgres: group commit conflicted; retrying", "batch", len(live), "attempt", attempt+1, "err", err)
			continue
		}
		for _, r := range live {
			r.res, r.err = store.Appended{}, err
		}
		return err
	}
}

// convKey names a conversation.
type convKey struct{ app, conv string }

// dupKey is the dedupe key of a message within its conversation.
type dupKey struct{ sender, cid string }

// convBatch is the part of a batch that goes to one conversation.
type convBatch struct {
	convKey
	reqs []*appendReq // in queue order
	// Set from the locked row.
	found   bool
	lastSeq int64
	lastAt  int64
}

// tryBatch runs reqs in one transaction, as AppendMessage describes, and
// sets their results if it commits. It returns an error, and the results
// are meaningless, if it does not.
func (s *Store) tryBatch(ctx context.Context, reqs []*appendReq) (err error) {
	convs := groupByConv(reqs)

	tx, err := s.commitPool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()

	stored, err := lockAndFindDuplicates(ctx, tx, convs)
	if err != nil {
		return err
	}
	now := msec(s.now())
	var w batchWrites
	for _, c := range convs {
		w.assign(c, now, stored[c.convKey])
	}
	if err := w.write(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// groupByConv groups reqs by conversation, keeping queue order within
// each, and returns the groups sorted by (app, conv): the lock order.
func groupByConv(reqs []*appendReq) []*convBatch {
	byKey := make(map[convKey]*convBatch)
	var convs []*convBatch
	for _, r := range reqs {
		k := convKey{r.m.App, r.m.Conv}
		c := byKey[k]
		if c == nil {
			c = &convBatch{convKey: k}
			byKey[k] = c
			convs = append(convs, c)
		}
		c.reqs = append(c.reqs, r)
	}
	slices.SortFunc(convs, func(a, b *convBatch) int {
		return cmp.Or(cmp.Compare(a.app, b.app), cmp.Compare(a.conv, b.conv))
	})
	return convs
}

// lockAndFindDuplicates locks the rows of convs (steps 3 and 4 of
// AppendMessage), recording in each whether it exists and its last_seq and
// last_at, and returns the stored messages that the batch's client ids
// duplicate. The two statements go in one round trip, but the server runs
// the second only after the first has its locks, and takes the second's
// snapshot then.
func lockAndFindDuplicates(ctx context.Context, tx pgx.Tx, convs []*convBatch) (map[convKey]map[dupKey]store.Message, error) {
	var apps, ids, dApps, dIDs, dSenders, dCids []string
	for _, c := range convs {
		apps, ids = append(apps, c.app), append(ids, c.conv)
		for _, r := range c.reqs {
			if r.m.ClientMsgID != "" {
				dApps, dIDs = append(dApps, c.app), append(dIDs, c.conv)
				dSenders, dCids = append(dSenders, r.m.Sender), append(dCids, r.m.ClientMsgID)
			}
		}
	}
	b := &pgx.Batch{}
	// The batch's statements are prepared once per connection, and a
	// generic plan, made when messages was small (or before it was first
	// analyzed), would hash-join every batch against a sequential scan of
	// messages long after it has grown. Custom plans see the arrays' real
	// lengths and the tables' current sizes, and cost little next to the
	// commit.
	b.Queue(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`)
	// ORDER BY puts the sort below the row locking, so rows are locked in
	// this order (byte order: the columns are COLLATE "C"); after waiting
	// for a lock, FOR UPDATE returns the row as its last holder committed
	// it.
	b.Queue(`SELECT app_id, id, last_seq, last_at FROM conversations
		WHERE (app_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		ORDER BY app_id, id
		FOR UPDATE`, apps, ids)
	if len(dCids) > 0 {
		b.Queue(`SELECT m.app_id, m.conv_id, m.sender, m.client_msg_id, m.seq, m.at, m.body
			FROM messages AS m
			JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k (app_id, conv_id, sender, cid)
			  ON m.app_id = k.app_id AND m.conv_id = k.conv_id AND m.sender = k.sender AND m.client_msg_id = k.cid
			WHERE m.client_msg_id <> ''`, dApps, dIDs, dSenders, dCids)
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("plan_cache_mode: %w", err)
	}
	locked := make(map[convKey][2]int64, len(convs))
	rows, _ := br.Query()
	var (
		k           convKey
		seq, lastAt int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&k.app, &k.conv, &seq, &lastAt}, func() error {
		locked[k] = [2]int64{seq, lastAt}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock conversations: %w", err)
	}
	for _, c := range convs {
		v, ok := locked[c.convKey]
		c.found, c.lastSeq, c.lastAt = ok, v[0], v[1]
	}

	stored := make(map[convKey]map[dupKey]store.Message)
	if len(dCids) > 0 {
		rows, _ := br.Query()
		var m store.Message
		var at int64
		if _, err := pgx.ForEachRow(rows, []any{&m.App, &m.Conv, &m.Sender, &m.ClientMsgID, &m.Seq, &at, &m.Body}, func() error {
			m.At = fromMsec(at)
			k := convKey{m.App, m.Conv}
			if stored[k] == nil {
				stored[k] = make(map[dupKey]store.Message)
			}
			stored[k][dupKey{m.Sender, m.ClientMsgID}] = m
			return nil
		}); err != nil {
			return nil, fmt.Errorf("find duplicates: %w", err)
		}
	}
	return stored, br.Close()
}

// batchWrites collects a batch's writes as columns, for statements that
// take each column as one array.
type batchWrites struct {
	// conversations to bump: last_seq += k, last_at = at, expecting want.
	bApp, bConv       []string
	bK, bAt, bWant    []int64
	msgApp, msgConv   []string
	msgSeq, msgAt     []int64
	msgSender, msgCid []string
	msgBody           [][]byte
	// read cursors to move.
	curApp, curConv, curUser []string
	curSeq                   []int64
}

// assign gives c's requests their results (step 5 of AppendMessage): a
// duplicate of a stored message or of an earlier request of the batch, or
// the conversation's next seq. stored holds c's stored duplicates. Message
// times are now, or the conversation's last_at if that is later (another
// node's clock ahead of this one's), so they never go backwards within a
// conversation.
func (w *batchWrites) assign(c *convBatch, now int64, stored map[dupKey]store.Message) {
	if !c.found {
		for _, r := range c.reqs {
			r.err = store.ErrNotFound
		}
		return
	}
	at := max(now, c.lastAt)
	seq := c.lastSeq
	fresh := map[dupKey]*appendReq{}
	cursors := map[string]int64{}
	for _, r := range c.reqs {
		key := dupKey{r.m.Sender, r.m.ClientMsgID}
		if r.m.ClientMsgID != "" {
			if m, ok := stored[key]; ok {
				m.Body = bytes.Clone(m.Body)
				r.res = store.Appended{Message: m, Duplicate: true}
				continue
			}
			if first, ok := fresh[key]; ok {
				r.res = store.Appended{Message: first.res.Message, Duplicate: true}
				// Each caller owns the body it gets.
				r.res.Body = bytes.Clone(first.res.Body)
				continue
			}
			fresh[key] = r
		}
		seq++
		r.res = store.Appended{Message: store.Message{
			App: c.app, Conv: c.conv, Seq: uint64(seq), At: fromMsec(at),
			Sender: r.m.Sender, ClientMsgID: r.m.ClientMsgID, Body: r.m.Body,
		}}
		w.msgApp, w.msgConv = append(w.msgApp, c.app), append(w.msgConv, c.conv)
		w.msgSeq, w.msgAt = append(w.msgSeq, seq), append(w.msgAt, at)
		w.msgSender, w.msgCid = append(w.msgSender, r.m.Sender), append(w.msgCid, r.m.ClientMsgID)
		w.msgBody = append(w.msgBody, r.m.Body)
		if r.m.Sender != "" {
			cursors[r.m.Sender] = seq
		}
	}
	if k := seq - c.lastSeq; k > 0 {
		w.bApp, w.bConv = append(w.bApp, c.app), append(w.bConv, c.conv)
		w.bK, w.bAt, w.bWant = append(w.bK, k), append(w.bAt, at), append(w.bWant, seq)
	}
	for user, seq := range cursors {
		w.curApp, w.curConv = append(w.curApp, c.app), append(w.curConv, c.conv)
		w.curUser, w.curSeq = append(w.curUser, user), append(w.curSeq, seq)
	}
}

// write sends the batch's writes (step 6 of AppendMessage) in one round
// trip. Every row they touch belongs to a conversation the transaction has
// locked, so they wait for no other batch.
func (w *batchWrites) write(ctx context.Context, tx pgx.Tx) error {
	if len(w.bApp) == 0 {
		return nil // only duplicates and missing conversations
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE conversations AS c SET last_seq = c.last_seq + v.k, last_at = v.at
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v (app_id, id, k, at)
		WHERE c.app_id = v.app_id AND c.id = v.id
		RETURNING c.app_id, c.id, c.last_seq`, w.bApp, w.bConv, w.bK, w.bAt)
	b.Queue(`INSERT INTO messages (app_id, conv_id, seq, at, sender, client_msg_id, body)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bytea[])`,
		w.msgApp, w.msgConv, w.msgSeq, w.msgAt, w.msgSender, w.msgCid, w.msgBody)
	if len(w.curUser) > 0 {
		b.Queue(`UPDATE members AS m SET read_seq = v.seq
			FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v (app_id, conv_id, user_id, seq)
			WHERE m.app_id = v.app_id AND m.conv_id = v.conv_id AND m.user_id = v.user_id AND m.read_seq < v.seq`,
			w.curApp, w.curConv, w.curUser, w.curSeq)
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()

	want := make(map[convKey]int64, len(w.bApp))
	for i := range w.bApp {
		want[convKey{w.bApp[i], w.bConv[i]}] = w.bWant[i]
	}
	rows, _ := br.Query()
	var (
		k       convKey
		lastSeq int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&k.app, &k.conv, &lastSeq}, func() error {
		if want[k] != lastSeq {
			// Impossible while the row lock holds; refuse to commit seqs
			// that would not match the counter if it ever does not.
			return fmt.Errorf("conversation %s/%s: last_seq %d, want %d", k.app, k.conv, lastSeq, want[k])
		}
		delete(want, k)
		return nil
	}); err != nil {
		return fmt.Errorf("bump conversations: %w", err)
	}
	if len(want) != 0 {
		return errors.New("bump conversations: a locked conversation was not updated")
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("insert messages: %w", err)
	}
	if len(w.curUser) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("move read cursors: %w", err)
		}
	}
	return br.Close()
}
