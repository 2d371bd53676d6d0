package client

import (
	"slices"

	"github.com/floodgate/floodgate/protocol"
)

// This file is the client's sequencing state machine: per conversation, the
// highest seq handed to the application ("delivered") and what to do with
// each message that arrives, live or from sync. It does no I/O, starts no
// goroutine and reads no clock, so every rule can be tested as a table; the
// Client feeds it under its mutex and turns its answers into events and sync
// requests. The rules (docs/protocol.md, "Sequence numbers, sync and
// resume", made precise):
//
// 1. Once a conversation has started, a message with seq == delivered+1 is
// delivered, followed by the buffered messages that now follow on; seq <=
// delivered is a duplicate and dropped; seq > delivered+1 is buffered (at
// most maxBuf per conversation: on overflow the buffer is dropped, sync
// brings its messages again) and a sync of that conversation is wanted.
//
// 2. Where a conversation starts is only ever decided by the server or the
// app, never guessed from a live message. A conversation restored from
// Options.Cursors starts where the app says. A room starts at the last_seq
// returned by room.join: the server subscribes before it reads last_seq, so
// the live stream starts right after it; live messages that arrive while
// the join is in flight are held until the reply says where to start. A
// direct or group conversation the machine has never seen starts with the
// first message a sync returns for it: sync's "all" starts every
// conversation the request does not list at the seq the user joined it (0
// for direct conversations), which the client cannot know. A live message
// for such a conversation is held and a full sync is wanted; the exception
// is seq 1, delivered at once, since nothing can precede it.
//
// 3. Live messages may have gaps (the bus may drop); sync replies do not:
// the server returns every message after the requested seq, in order. A
// hole inside a sync reply therefore means the messages do not exist (any
// more), and the machine skips it instead of asking again forever.
//
// 4. A complete full sync ("all", no "more") that does not mention a
// never-seen conversation whose live messages were held before it began
// means the user cannot read that conversation (removed meanwhile): the
// held messages are dropped.

// syncLimit is the per-conversation page size asked of sync: the protocol's
// maximum, so that catching up takes as few round trips as possible.
const syncLimit = 100

// convSeq is the machine's state for one conversation.
type convSeq struct {
	delivered uint64
	// started is false until the server has said where the conversation
	// starts for this client; delivered is meaningless until then.
	started bool
	// room is true for rooms: they are listed in sync only while joined on
	// the current connection (the server answers "gone" otherwise).
	room bool
	// joined is true when the room is joined on the current connection.
	joined bool
	// joining is true while a room.join for a conversation that has not
	// started is in flight: its live messages wait for the reply.
	joining bool
	// left marks a room the application left: late live messages of the
	// old subscription are ignored until it is joined again or the
	// connection ends.
	left bool
	// buf holds messages above delivered+1 (or, before the start, every
	// held message), ascending by seq, without repeats.
	buf []protocol.Message
	// overflowed is true when buf was dropped for being too long before the
	// conversation started: the start will need a sync to fill it.
	overflowed bool
	// heldSince is the number of syncs begun when the first message was
	// held for a conversation that has not started.
	heldSince uint64
}

// eligible reports whether the conversation may be listed in a sync.
func (st *convSeq) eligible() bool {
	return st.started && !st.left && (!st.room || st.joined)
}

// syncRequest is the sync in flight; the machine allows one at a time so a
// reply is always applied against the request it answers.
type syncRequest struct {
	id   uint64
	args protocol.SyncArgs
}

// sequencer is the per-conversation sequencing state of one Client.
type sequencer struct {
	convs  map[string]*convSeq
	maxBuf int

	// want lists conversations to sync; wantAll asks for a sync of every
	// conversation with "all" (discovering new ones). allPending carries
	// "all" to the last chunk when a full sync is split to respect
	// max_sync_convs.
	want       map[string]struct{}
	wantAll    bool
	allPending bool

	begun    uint64 // syncs begun
	inflight *syncRequest
}

// newSequencer returns a machine that starts the conversations in cursors
// at the given delivered seqs. maxBuf bounds each conversation's buffer.
func newSequencer(cursors map[string]uint64, maxBuf int) *sequencer {
	s := &sequencer{convs: make(map[string]*convSeq), maxBuf: max(maxBuf, 1), want: make(map[string]struct{})}
	for conv, seq := range cursors {
		s.convs[conv] = &convSeq{delivered: seq, started: true}
	}
	return s
}

// Live takes a message that arrived as a "message" event and returns the
// messages to deliver now, in order.
func (s *sequencer) Live(m protocol.Message) []protocol.Message {
	st := s.convs[m.Conv]
	if st == nil {
		st = &convSeq{}
		if m.Seq == 1 {
			st.started = true
		}
		s.convs[m.Conv] = st
	}
	switch {
	case st.left:
		return nil
	case !st.started:
		if len(st.buf) == 0 && !st.joining && !st.overflowed {
			st.heldSince = s.begun
		}
		s.hold(st, m)
		if !st.joining {
			s.wantAll = true
		}
		return nil
	}
	out, gap := s.accept(st, m, nil)
	if gap {
		s.want[m.Conv] = struct{}{}
	}
	return out
}

// accept applies the live rule to a started conversation; gap reports that
// m was buffered (or dropped on overflow) and a sync is needed.
func (s *sequencer) accept(st *convSeq, m protocol.Message, out []protocol.Message) ([]protocol.Message, bool) {
	switch {
	case m.Seq <= st.delivered:
		return out, false
	case m.Seq == st.delivered+1:
		out = append(out, m)
		st.delivered = m.Seq
		return st.drain(out), false
	default:
		s.hold(st, m)
		return out, true
	}
}

// acceptSync applies a message from a sync reply, which is complete from
// the requested seq: anything below m that was not delivered does not exist
// on the server, so buffered live messages below it are delivered and the
// rest skipped.
func (st *convSeq) acceptSync(m protocol.Message, out []protocol.Message) []protocol.Message {
	if m.Seq <= st.delivered {
		return out
	}
	for len(st.buf) > 0 && st.buf[0].Seq < m.Seq {
		if b := st.buf[0]; b.Seq > st.delivered {
			out = append(out, b)
			st.delivered = b.Seq
		}
		st.buf = st.buf[1:]
	}
	out = append(out, m)
	st.delivered = m.Seq
	return st.drain(out)
}

// drain delivers the buffered messages that follow delivered.
func (st *convSeq) drain(out []protocol.Message) []protocol.Message {
	i := 0
	for ; i < len(st.buf); i++ {
		b := st.buf[i]
		if b.Seq <= st.delivered {
			continue
		}
		if b.Seq != st.delivered+1 {
			break
		}
		out = append(out, b)
		st.delivered = b.Seq
	}
	st.buf = st.buf[i:]
	if len(st.buf) == 0 {
		st.buf = nil // let the backing array go
	}
	return out
}

// hold inserts m into st's buffer, keeping it sorted and without repeats.
// On overflow the buffer is dropped: a sync will bring its messages again.
func (s *sequencer) hold(st *convSeq, m protocol.Message) {
	i, found := slices.BinarySearchFunc(st.buf, m.Seq, func(b protocol.Message, seq uint64) int {
		switch {
		case b.Seq < seq:
			return -1
		case b.Seq > seq:
			return 1
		}
		return 0
	})
	if found {
		return
	}
	if len(st.buf) >= s.maxBuf {
		st.buf = nil
		st.overflowed = true
		return
	}
	st.buf = slices.Insert(st.buf, i, m)
}

// Joining records that a room.join for conv is about to be sent. Call it
// before the request is written, so that no live message of the room can
// be processed before it.
func (s *sequencer) Joining(conv string) {
	st := s.convs[conv]
	if st == nil || st.left {
		st = &convSeq{}
		s.convs[conv] = st
	}
	st.room = true
	if !st.started {
		st.joining = true
	}
}

// Joined applies a successful room.join: a room that has not started starts
// at lastSeq, where its live stream starts; one that has (a re-join after a
// reconnect, or cursors restored by the app) keeps its delivered seq, and a
// sync is wanted if the room moved on since.
func (s *sequencer) Joined(conv string, lastSeq uint64) []protocol.Message {
	st := s.convs[conv]
	if st == nil {
		st = &convSeq{}
		s.convs[conv] = st
	}
	st.room, st.joined, st.joining, st.left = true, true, false, false
	if st.started {
		if st.delivered < lastSeq {
			s.want[conv] = struct{}{}
		}
		return nil
	}
	st.started, st.delivered = true, lastSeq
	if st.overflowed {
		st.overflowed = false
		s.want[conv] = struct{}{}
	}
	held := st.buf
	st.buf = nil
	var out []protocol.Message
	for _, m := range held {
		var gap bool
		if out, gap = s.accept(st, m, out); gap {
			s.want[conv] = struct{}{}
		}
	}
	return out
}

// RoomJoined reports whether conv is a room joined on the current
// connection.
func (s *sequencer) RoomJoined(conv string) bool {
	st := s.convs[conv]
	return st != nil && st.joined
}

// JoinFailed undoes Joining after the server refused the join.
func (s *sequencer) JoinFailed(conv string) {
	st := s.convs[conv]
	if st == nil {
		return
	}
	st.joining = false
	if !st.started {
		delete(s.convs, conv)
	}
}

// Forget stops following conv. With tombstone (a room the app left), live
// messages of conv still in flight are ignored until it is joined again.
func (s *sequencer) Forget(conv string, tombstone bool) {
	delete(s.want, conv)
	if tombstone {
		s.convs[conv] = &convSeq{left: true}
		return
	}
	delete(s.convs, conv)
}

// RequestSync asks for a sync of conv, for instance because a live message
// of it could not be taken. A conversation that has not started can only be
// discovered by a full sync.
func (s *sequencer) RequestSync(conv string) {
	if st := s.convs[conv]; st != nil && st.eligible() {
		s.want[conv] = struct{}{}
		return
	}
	s.wantAll = true
}

// RequestFullSync asks for a sync of everything the client follows, with
// "all" to discover new conversations (after a reconnect, on resync).
func (s *sequencer) RequestFullSync() { s.wantAll = true }

// SyncWanted reports whether BeginSync has something to ask.
func (s *sequencer) SyncWanted() bool {
	return s.inflight == nil && (s.wantAll || s.allPending || len(s.want) > 0)
}

// BeginSync returns the arguments of the next sync request, listing at most
// maxConvs conversations (0: no limit), or false if none is wanted or one is
// in flight. The request is in flight until ApplySync or AbortSync.
func (s *sequencer) BeginSync(maxConvs int) (protocol.SyncArgs, bool) {
	if s.inflight != nil {
		return protocol.SyncArgs{}, false
	}
	if s.wantAll {
		s.wantAll, s.allPending = false, true
		for conv, st := range s.convs {
			if st.eligible() {
				s.want[conv] = struct{}{}
			}
		}
	}
	list := make([]string, 0, len(s.want))
	for conv := range s.want {
		if st := s.convs[conv]; st != nil && st.eligible() {
			list = append(list, conv)
		} else {
			// Not listable now (a room not joined on this connection):
			// the sync that follows its join covers it.
			delete(s.want, conv)
		}
	}
	if len(list) == 0 && !s.allPending {
		return protocol.SyncArgs{}, false
	}
	slices.Sort(list)
	if maxConvs > 0 && len(list) > maxConvs {
		list = list[:maxConvs]
	}
	args := protocol.SyncArgs{Limit: syncLimit}
	if len(list) > 0 {
		args.Convs = make(map[string]uint64, len(list))
		for _, conv := range list {
			args.Convs[conv] = s.convs[conv].delivered
			delete(s.want, conv)
		}
	}
	// "all" goes with the last chunk only: it adds every conversation the
	// request does not list, so sending it earlier would re-read the
	// conversations of the later chunks from where the user joined them.
	if s.allPending && len(s.want) == 0 {
		args.All, s.allPending = true, false
	}
	s.begun++
	s.inflight = &syncRequest{id: s.begun, args: args}
	return args, true
}

// AbortSync gives up the sync in flight (its connection was lost, or the
// server refused it) and wants what it asked for again.
func (s *sequencer) AbortSync() {
	r := s.inflight
	if r == nil {
		return
	}
	s.inflight = nil
	for conv := range r.args.Convs {
		s.want[conv] = struct{}{}
	}
	if r.args.All {
		s.wantAll = true
	}
}

// DropSync forgets the sync in flight without asking for it again: the
// server refused it for a reason that asking again would not change. Gaps
// stay buffered and ask again when their next message arrives.
func (s *sequencer) DropSync() { s.inflight = nil }

// ApplySync applies the reply to the sync in flight and returns the
// messages to deliver, in order, and the conversations the server says are
// gone, which the machine no longer follows.
func (s *sequencer) ApplySync(res protocol.SyncResult) (out []protocol.Message, gone []string) {
	req := s.inflight
	s.inflight = nil
	if req == nil {
		req = &syncRequest{id: s.begun}
	}
	mentioned := make(map[string]bool, len(res.Convs))
	for _, sc := range res.Convs {
		mentioned[sc.Conv] = true
		st := s.convs[sc.Conv]
		if st != nil && st.left {
			continue
		}
		if sc.Gone {
			if st != nil {
				delete(s.convs, sc.Conv)
				delete(s.want, sc.Conv)
				gone = append(gone, sc.Conv)
			}
			continue
		}
		if len(sc.Messages) == 0 {
			continue
		}
		if st == nil {
			st = &convSeq{}
			s.convs[sc.Conv] = st
		}
		if sc.Kind != "" {
			st.room = sc.Kind == protocol.KindRoom
		}
		if !st.started {
			if st.joining {
				// The join's reply decides where a room starts.
				continue
			}
			st.started, st.delivered, st.overflowed = true, sc.Messages[0].Seq-1, false
		}
		for _, m := range sc.Messages {
			if m.Conv == "" {
				m.Conv = sc.Conv
			}
			out = st.acceptSync(m, out)
		}
		if sc.HasMore || len(st.buf) > 0 {
			s.want[sc.Conv] = struct{}{}
		}
	}
	if res.More {
		if req.args.All {
			s.wantAll = true
		} else {
			for conv := range req.args.Convs {
				if !mentioned[conv] {
					s.want[conv] = struct{}{}
				}
			}
		}
	}
	if req.args.All && !res.More {
		for conv, st := range s.convs {
			if !st.started && !st.joining && !st.left && !mentioned[conv] && st.heldSince < req.id {
				delete(s.convs, conv)
			}
		}
	}
	return out, gone
}

// Disconnected resets what depends on the connection: no room is joined any
// more, buffers and held messages are dropped (the sync after the next auth
// brings them again), tombstones of left rooms too (their subscription died
// with the connection) and a full sync is wanted.
func (s *sequencer) Disconnected() {
	for conv, st := range s.convs {
		if !st.started {
			delete(s.convs, conv)
			continue
		}
		st.joined, st.joining, st.buf, st.overflowed = false, false, nil, false
	}
	clear(s.want)
	s.inflight, s.allPending, s.wantAll = nil, false, true
}

// Cursors returns the delivered seq of every started conversation.
func (s *sequencer) Cursors() map[string]uint64 {
	m := make(map[string]uint64, len(s.convs))
	for conv, st := range s.convs {
		if st.started && !st.left {
			m[conv] = st.delivered
		}
	}
	return m
}
