package bench

import (
	"context"

	"github.com/floodgate/floodgate/protocol"
)

// directShard runs pairs of users exchanging 1:1 messages. Both users of a
// pair live in this shard, so the sender's timestamp and the receiver's
// clock are the same clock, and both ends of the accounting are here.
// Each user sends half of its pair's share of the rate; every message is
// delivered to both connections of the pair (the server echoes a sender's
// own messages), and each accounts for it.
type directShard struct {
	*traffic
}

func newDirectShard(env *shardEnv) *directShard { return &directShard{newTraffic(env)} }

func (s *directShard) setup(ctx context.Context) error {
	p := s.env.shard
	pairs := p.Hi - p.Lo
	idx := make([]int, 0, 2*pairs)
	for q := p.Lo; q < p.Hi; q++ {
		idx = append(idx, 2*q, 2*q+1)
	}
	s.connect(ctx, idx)
	convs := make([]string, pairs)
	forEach(ctx, pairs, p.ShardConcurrency, func(q int) {
		a, b := s.members[2*q], s.members[2*q+1]
		if a == nil || b == nil {
			return // a user of the pair could not connect (counted as failed)
		}
		var res protocol.ConvResult
		if err := a.c.Call(ctx, protocol.OpConvDirect, protocol.DirectArgs{User: b.user}, &res); err != nil {
			s.env.errs.add("conv.direct:" + classify(err))
			return
		}
		conv := res.Conversation.ID
		a.follow(conv, res.Conversation.LastSeq)
		b.follow(conv, res.Conversation.LastSeq)
		convs[q] = conv
	})
	// First every pair's first user, then every pair's second: consecutive
	// sends go to different pairs.
	for side := range 2 {
		for q, conv := range convs {
			if conv != "" {
				s.slots = append(s.slots, sendSlot{m: s.members[2*q+side], conv: conv})
			}
		}
	}
	return ctx.Err()
}

func (s *directShard) finish(ctx context.Context, expect map[string]uint64, _ int64, res *ShardResult) {
	s.traffic.finish(ctx, expect, res)
}
