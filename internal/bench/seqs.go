package bench

import "sync"

// seqTracker is the loss and duplicate accounting of one conversation as
// one connection receives it. Seqs are gapless per conversation (the store
// assigns 1, 2, 3… with no gap and no reuse), so a receiver that knows the
// last seq before the run (base) and the last seq acknowledged to any
// sender (told at the end) knows exactly which seqs it must have seen:
// one not seen is lost, one seen twice is a duplicate.
//
// It keeps the contiguous watermark plus the few seqs received above it,
// so its size depends on the disorder in flight, not on the message count.
// Its methods are safe for concurrent use: the connection's reader records
// while the finishing step reads.
type seqTracker struct {
	mu        sync.Mutex
	base      uint64              // seqs up to base predate the run
	contig    uint64              // every seq in (base, contig] was received
	above     map[uint64]struct{} // received seqs > contig+1, until the gap fills
	maxSeen   uint64
	live      uint64 // distinct seqs received as live events
	dups      uint64 // live events for a seq already received
	recovered uint64 // seqs received only from the final sync
	// late holds seqs taken from the final sync that may still arrive
	// live, queued behind the sync at the server: such an event is late,
	// not a second delivery. At most recovered entries.
	late map[uint64]struct{}
}

func newSeqTracker(base uint64) *seqTracker {
	return &seqTracker{base: base, contig: base}
}

// has reports whether seq was received; t.mu held.
func (t *seqTracker) has(seq uint64) bool {
	if seq <= t.contig {
		return true
	}
	_, ok := t.above[seq]
	return ok
}

// add records seq as received; t.mu held and !t.has(seq).
func (t *seqTracker) add(seq uint64) {
	t.maxSeen = max(t.maxSeen, seq)
	if seq != t.contig+1 {
		if t.above == nil {
			t.above = make(map[uint64]struct{})
		}
		t.above[seq] = struct{}{}
		return
	}
	t.contig = seq
	for len(t.above) > 0 {
		if _, ok := t.above[t.contig+1]; !ok {
			break
		}
		delete(t.above, t.contig+1)
		t.contig++
	}
}

// Live records a message event and reports whether it was a duplicate.
// An event at or below base is a duplicate too: the server re-sent
// something from before the run.
func (t *seqTracker) Live(seq uint64) (dup bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.late[seq]; ok {
		delete(t.late, seq)
		t.recovered--
		t.live++
		return false
	}
	if seq == 0 || t.has(seq) {
		t.dups++
		return true
	}
	t.add(seq)
	t.live++
	return false
}

// Recover records a message fetched by sync: it fills a gap, or is
// ignored when it had already arrived live (sync and live events overlap
// by design, so that is not a duplicate). A live event for it may still
// follow, and is not a duplicate either.
func (t *seqTracker) Recover(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq == 0 || t.has(seq) {
		return
	}
	t.add(seq)
	t.recovered++
	if t.late == nil {
		t.late = make(map[uint64]struct{})
	}
	t.late[seq] = struct{}{}
}

// Contig returns the seq up to which everything was received.
func (t *seqTracker) Contig() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.contig
}

// Missing returns how many seqs in (base, upto] were not received.
func (t *seqTracker) Missing(upto uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if upto <= t.contig {
		return 0
	}
	n := upto - t.contig
	for s := range t.above {
		if s <= upto {
			n--
		}
	}
	return n
}

// Tally is the accounting of one or more trackers against what the
// senders had acknowledged.
type Tally struct {
	// Expected is the number of (receiver, seq) pairs that had to arrive.
	Expected uint64 `json:"expected"`
	// Lost were still missing after the final sync.
	Lost uint64 `json:"lost"`
	// Duplicates are live events for a seq already received.
	Duplicates uint64 `json:"duplicates"`
	// LiveMissing were missing from the live stream when the drain ended,
	// before the final sync: the bus may drop, and clients heal that by
	// sync, so they are not a failure unless they stay Lost.
	LiveMissing uint64 `json:"live_missing"`
	// Recovered arrived only through the final sync.
	Recovered uint64 `json:"recovered"`
	// Beyond are seqs received above the last acknowledged one: sends whose
	// ack did not arrive in time but that the server did commit.
	Beyond uint64 `json:"beyond"`
}

// Add sums two tallies.
func (a Tally) Add(b Tally) Tally {
	return Tally{Expected: a.Expected + b.Expected, Lost: a.Lost + b.Lost, Duplicates: a.Duplicates + b.Duplicates,
		LiveMissing: a.LiveMissing + b.LiveMissing, Recovered: a.Recovered + b.Recovered, Beyond: a.Beyond + b.Beyond}
}

// tally accounts t against expect, the last acknowledged seq; liveMissing
// is what Missing(expect) returned before the final sync.
func (t *seqTracker) tally(expect, liveMissing uint64) Tally {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r Tally
	if expect > t.base {
		r.Expected = expect - t.base
	}
	r.Duplicates, r.Recovered, r.LiveMissing = t.dups, t.recovered, liveMissing
	if expect > t.contig {
		r.Lost = expect - t.contig
	}
	for s := range t.above {
		if s <= expect {
			r.Lost--
		} else {
			r.Beyond++
		}
	}
	if t.contig > expect {
		r.Beyond += t.contig - max(expect, t.base)
	}
	return r
}
