package bench

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// sendWorkers is how many goroutines per shard write paced sends. Writes
// rarely block (the kernel buffers them), so a few suffice.
const sendWorkers = 8

// maxRetries bounds resending one message after rate_limited or
// unavailable.
const maxRetries = 5

// member is a simulated user of a traffic scenario: its connection and
// the conversations it follows.
type member struct {
	c    *rawConn
	user string

	mu       sync.Mutex
	trackers map[string]*seqTracker
}

func (m *member) follow(conv string, base uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.trackers == nil {
		m.trackers = make(map[string]*seqTracker)
	}
	if m.trackers[conv] == nil {
		m.trackers[conv] = newSeqTracker(base)
	}
}

func (m *member) tracker(conv string) *seqTracker {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.trackers[conv]
}

// sendSlot is one (sender, conversation) the pacer sends through.
type sendSlot struct {
	m    *member
	conv string
}

// traffic is what the direct, room and group scenarios share: members
// whose receptions are timed and accounted, and paced sends through slots
// whose acknowledgements are timed and remembered.
type traffic struct {
	env     *shardEnv
	conns   *connSet
	members []*member // by the shard's local index; nil when not connected
	slots   []sendSlot
	pad     string
	msgID   atomic.Uint64

	inflight atomic.Int64 // sends awaiting their reply, retries included
	stopping atomic.Bool  // quiesce began: no more retries

	mu      sync.Mutex
	acked   map[string]uint64      // conversation → last acknowledged seq
	retries map[*time.Timer]func() // pending resends → undo of their inflight count
}

func newTraffic(env *shardEnv) *traffic {
	pad := max(env.plan.BodyBytes-len(`{"t":1763800000000000000,"p":""}`), 0)
	return &traffic{env: env, pad: strings.Repeat("x", pad), acked: make(map[string]uint64),
		retries: make(map[*time.Timer]func())}
}

// connect opens a member for each global user index in idx.
func (t *traffic) connect(ctx context.Context, idx []int) {
	t.members = make([]*member, len(idx))
	t.conns = newConnSet(t.env, len(idx))
	t.conns.keepalive()
	ms := make([]*member, len(idx))
	for k, i := range idx {
		ms[k] = &member{user: t.env.plan.User(i)}
	}
	t.env.openAll(ctx, idx, func(k int) dialOpts {
		m := ms[k]
		return dialOpts{setup: func(c *rawConn) {
			c.onMessage = func(_ *rawConn, ev msgEvent) { t.received(m, ev) }
		}}
	}, func(k int, c *rawConn, _ timing) {
		ms[k].c = c
		t.conns.set(k, c)
	})
	for k, m := range ms {
		if m.c != nil {
			t.members[k] = m
		}
	}
}

// received accounts one message event; it runs on the member's reader.
func (t *traffic) received(m *member, ev msgEvent) {
	now := time.Now().UnixNano()
	t.env.ctr.delivered.Add(1)
	if ev.SentNS > 0 {
		t.env.hists[histDeliver].Record(time.Duration(now - ev.SentNS))
	}
	tr := m.tracker(ev.Conv)
	if tr == nil {
		t.env.errs.add("untracked_message")
		return
	}
	tr.Live(ev.Seq)
}

// run sends at the shard's rate through the slots until stop.
func (t *traffic) run(ctx context.Context, stop <-chan struct{}) error {
	if len(t.slots) == 0 {
		t.env.note("shard %d: no sender connected; nothing sent", t.env.shard.Index)
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Both stop and the end of ctx stop the pacer.
	halt := make(chan struct{})
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
		}
		close(halt)
	}()
	prefix := t.env.plan.UserPrefix + "s" + strconv.Itoa(t.env.shard.Index) + "-"
	pace(halt, t.env.shard.ShardRate, sendWorkers, func(k uint64) {
		s := t.slots[k%uint64(len(t.slots))]
		t.send(s, prefix+strconv.FormatUint(t.msgID.Add(1), 10), 0)
	}, &t.env.ctr.skipped)
	return ctx.Err()
}

// send sends one message; attempt > 0 is a resend with the same client
// message id, which the server deduplicates.
func (t *traffic) send(s sendSlot, cmid string, attempt int) {
	sentAt := time.Now()
	args := make([]byte, 0, 96+len(t.pad)+len(s.conv)+len(cmid))
	args = append(args, `{"conv":"`...)
	args = append(args, s.conv...)
	args = append(args, `","client_msg_id":"`...)
	args = append(args, cmid...)
	args = append(args, `","body":{"t":`...)
	args = strconv.AppendInt(args, sentAt.UnixNano(), 10)
	args = append(args, `,"p":"`...)
	args = append(args, t.pad...)
	args = append(args, `"}}`...)
	t.inflight.Add(1)
	err := s.m.c.Post(protocol.OpSend, args, func(f *protocol.Frame, err error) {
		t.acknowledged(s, cmid, attempt, sentAt, f, err)
	})
	if err != nil {
		t.inflight.Add(-1)
		t.env.errs.add("send:" + classify(err))
		return
	}
	if attempt == 0 {
		t.env.ctr.sent.Add(1)
	}
}

// acknowledged handles a send's reply on the sender's reader goroutine.
func (t *traffic) acknowledged(s sendSlot, cmid string, attempt int, sentAt time.Time, f *protocol.Frame, err error) {
	defer t.inflight.Add(-1)
	if err != nil {
		t.env.errs.add("send:" + classify(err))
		return
	}
	if f.Error != nil {
		t.env.ctr.refused.Add(1)
		t.env.errs.add("send:" + f.Error.Code)
		if (f.Error.Code == protocol.CodeRateLimited || f.Error.Code == protocol.CodeUnavailable) && attempt < maxRetries {
			t.retry(s, cmid, attempt+1, time.Duration(max(f.Error.RetryAfterMS, 1))*time.Millisecond)
		}
		return
	}
	seq, _, ok := uintField(f.Result, `"seq":`)
	if !ok {
		t.env.errs.add("send:bad_result")
		return
	}
	t.env.hists[histAck].Record(time.Since(sentAt))
	t.env.ctr.acked.Add(1)
	t.mu.Lock()
	t.acked[s.conv] = max(t.acked[s.conv], seq)
	t.mu.Unlock()
}

// retry resends after wait, unless quiesce has begun. The resend counts as
// in flight from now, so quiesce waits for it.
func (t *traffic) retry(s sendSlot, cmid string, attempt int, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping.Load() {
		return
	}
	t.inflight.Add(1)
	var tm *time.Timer
	tm = time.AfterFunc(wait, func() {
		t.mu.Lock()
		_, mine := t.retries[tm]
		delete(t.retries, tm)
		t.mu.Unlock()
		if !mine {
			return
		}
		defer t.inflight.Add(-1)
		if !t.stopping.Load() {
			t.send(s, cmid, attempt)
		}
	})
	t.retries[tm] = func() { t.inflight.Add(-1) }
}

// quiesce waits (within the drain timeout) for every send in flight, then
// returns the last acknowledged seq per conversation.
func (t *traffic) quiesce(ctx context.Context) map[string]uint64 {
	t.stopping.Store(true)
	deadline := time.Now().Add(t.env.plan.DrainTimeout)
	for t.inflight.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for tm, undo := range t.retries {
		// A timer that already fired is its callback's to account.
		if tm.Stop() {
			undo()
			delete(t.retries, tm)
		}
	}
	if n := t.inflight.Load(); n > 0 {
		t.env.note("shard %d: %d sends still unanswered after the %s drain", t.env.shard.Index, n, t.env.plan.DrainTimeout)
	}
	return maps.Clone(t.acked)
}

// finish waits (within the drain timeout) for every member to have
// received every acknowledged seq, heals what is still missing with a
// sync as a real client would, and accounts.
func (t *traffic) finish(ctx context.Context, expect map[string]uint64, res *ShardResult) {
	type follow struct {
		m    *member
		conv string
		tr   *seqTracker
	}
	var all []follow
	for _, m := range t.members {
		if m == nil {
			continue
		}
		m.mu.Lock()
		for conv, tr := range m.trackers {
			all = append(all, follow{m, conv, tr})
		}
		m.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, t.env.plan.DrainTimeout)
	defer cancel()
	for pending := all; len(pending) > 0 && ctx.Err() == nil; {
		next := pending[:0]
		for _, f := range pending {
			if f.tr.Contig() < expect[f.conv] && f.m.c.Alive() {
				next = append(next, f)
			}
		}
		pending = next
		if len(pending) > 0 {
			sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
		}
	}
	// The drain may have used the whole timeout: the healing syncs get a
	// few seconds of their own.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	var tally Tally
	for _, f := range all {
		exp := expect[f.conv]
		missing := f.tr.Missing(exp)
		if missing > 0 && f.m.c.Alive() {
			if err := healBySync(sctx, f.m.c, f.conv, f.tr, exp); err != nil {
				t.env.errs.add("sync:" + classify(err))
			}
		}
		tally = tally.Add(f.tr.tally(exp, missing))
	}
	res.Tally = tally
}

// healBySync fetches what tr misses of conv up to upto.
func healBySync(ctx context.Context, c *rawConn, conv string, tr *seqTracker, upto uint64) error {
	for range 1000 {
		from := tr.Contig()
		if from >= upto {
			return nil
		}
		var res protocol.SyncResult
		if err := c.Call(ctx, protocol.OpSync, protocol.SyncArgs{Convs: map[string]uint64{conv: from}, Limit: 100}, &res); err != nil {
			return err
		}
		for _, sc := range res.Convs {
			if sc.Conv != conv {
				continue
			}
			for _, m := range sc.Messages {
				tr.Recover(m.Seq)
			}
		}
		if tr.Contig() == from {
			return nil // the server has nothing to fill the gap: it is lost
		}
	}
	return errors.New("sync did not converge")
}

func (t *traffic) close() {
	if t.conns != nil {
		t.conns.closeAll()
	}
}
