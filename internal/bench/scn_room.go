package bench

import (
	"context"

	"github.com/floodgate/floodgate/protocol"
)

// roomShard holds a share of one room's members (the coordinator created
// the room). Every member joins it and accounts for every message; the
// members chosen as senders (spread over the member list, so over the
// processes) also send at their share of the rate. Rooms have no
// persisted membership: what is measured is the fan-out to joined
// connections, on one node or, with --spread, across the --url list.
type roomShard struct {
	*traffic
}

func newRoomShard(env *shardEnv) *roomShard { return &roomShard{newTraffic(env)} }

func (s *roomShard) setup(ctx context.Context) error {
	p := s.env.shard
	idx := make([]int, 0, p.Hi-p.Lo)
	for i := p.Lo; i < p.Hi; i++ {
		idx = append(idx, i)
	}
	s.connect(ctx, idx)
	forEach(ctx, len(idx), p.ShardConcurrency, func(k int) {
		m := s.members[k]
		if m == nil {
			return
		}
		var res protocol.ConvResult
		if err := m.c.Call(ctx, protocol.OpRoomJoin, protocol.ConvArgs{Conv: p.Room}, &res); err != nil {
			s.env.errs.add("room.join:" + classify(err))
			s.members[k] = nil // not a member: it receives nothing
			return
		}
		m.follow(p.Room, res.Conversation.LastSeq)
	})
	for _, i := range p.SenderIdx {
		if m := s.members[i-p.Lo]; m != nil {
			s.slots = append(s.slots, sendSlot{m: m, conv: p.Room})
		}
	}
	return ctx.Err()
}

func (s *roomShard) finish(ctx context.Context, expect map[string]uint64, _ int64, res *ShardResult) {
	s.traffic.finish(ctx, expect, res)
}
