package memstore

import (
	"bytes"
	"context"

	"github.com/floodgate/floodgate/internal/store"
)

// AppendMessage implements store.Store. There is no queue to batch into (the
// mutex serialises appends), so it never returns store.ErrBusy.
func (s *Store) AppendMessage(ctx context.Context, m store.NewMessage) (store.Appended, error) {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return store.Appended{}, err
	}
	defer unlock()
	cv, ok := s.convs[key{m.App, m.Conv}]
	if !ok {
		return store.Appended{}, store.ErrNotFound
	}
	dk := dedupeKey{m.Sender, m.ClientMsgID}
	if m.ClientMsgID != "" {
		if seq, ok := cv.dedupe[dk]; ok {
			return store.Appended{Message: copyMessage(cv.msgs[seq-1]), Duplicate: true}, nil
		}
	}
	msg := store.Message{
		App:         m.App,
		Conv:        m.Conv,
		Seq:         cv.c.LastSeq + 1,
		At:          s.clock(),
		Sender:      m.Sender,
		ClientMsgID: m.ClientMsgID,
		// Copied so the caller may reuse its buffer.
		Body: bytes.Clone(m.Body),
	}
	if msg.Body == nil {
		msg.Body = []byte{}
	}
	cv.msgs = append(cv.msgs, msg)
	cv.c.LastSeq, cv.c.LastAt = msg.Seq, msg.At
	if m.ClientMsgID != "" {
		cv.dedupe[dk] = msg.Seq
	}
	if mem := cv.members[m.Sender]; m.Sender != "" && mem != nil && mem.ReadSeq < msg.Seq {
		mem.ReadSeq = msg.Seq
	}
	return store.Appended{Message: copyMessage(msg)}, nil
}

// copyMessage returns m with a body the caller may modify.
func copyMessage(m store.Message) store.Message {
	m.Body = bytes.Clone(m.Body)
	return m
}

// MessagesAfter implements store.Store. ErrNotFound if conv does not exist.
func (s *Store) MessagesAfter(ctx context.Context, app, conv string, after uint64, limit int) ([]store.Message, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, conv}]
	if !ok {
		return nil, store.ErrNotFound
	}
	n := uint64(len(cv.msgs))
	if limit <= 0 || after >= n {
		return nil, nil
	}
	end := min(n, after+uint64(limit))
	return copyMessages(cv.msgs[after:end]), nil
}

// MessagesBefore implements store.Store. ErrNotFound if conv does not exist.
func (s *Store) MessagesBefore(ctx context.Context, app, conv string, before uint64, limit int) ([]store.Message, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, conv}]
	if !ok {
		return nil, store.ErrNotFound
	}
	n := uint64(len(cv.msgs))
	// Seqs below before are 1..before-1, the first before-1 entries.
	end := n
	if before != 0 && before-1 < n {
		end = before - 1
	}
	if limit <= 0 || end == 0 {
		return nil, nil
	}
	start := end - min(end, uint64(limit))
	return copyMessages(cv.msgs[start:end]), nil
}

func copyMessages(ms []store.Message) []store.Message {
	out := make([]store.Message, len(ms))
	for i, m := range ms {
		out[i] = copyMessage(m)
	}
	return out
}

// SetReadSeq implements store.Store. ErrNotFound also when conv does not
// exist.
func (s *Store) SetReadSeq(ctx context.Context, app, conv, user string, seq uint64) (uint64, error) {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return 0, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, conv}]
	if !ok || cv.members[user] == nil {
		return 0, store.ErrNotFound
	}
	mem := cv.members[user]
	mem.ReadSeq = max(mem.ReadSeq, min(seq, cv.c.LastSeq))
	return mem.ReadSeq, nil
}
