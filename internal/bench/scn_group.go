package bench

import (
	"context"
	"strconv"

	"github.com/floodgate/floodgate/protocol"
)

// groupShard runs whole groups (each group's members live in this
// shard): the first member creates the group with the others, and the
// members take turns sending at the group's share of the rate. Every
// message is persisted and acknowledged before delivery, so the
// acknowledged rate and latency measure the store's group commit under
// many small conversations; deliveries are accounted as in the other
// scenarios.
type groupShard struct {
	*traffic
}

func newGroupShard(env *shardEnv) *groupShard { return &groupShard{newTraffic(env)} }

func (s *groupShard) setup(ctx context.Context) error {
	p := s.env.shard
	m := p.Members
	groups := p.Hi - p.Lo
	idx := make([]int, 0, groups*m)
	for g := p.Lo; g < p.Hi; g++ {
		for j := range m {
			idx = append(idx, g*m+j)
		}
	}
	s.connect(ctx, idx)
	convs := make([]string, groups)
	forEach(ctx, groups, p.ShardConcurrency, func(q int) {
		ms := s.members[q*m : (q+1)*m]
		if ms[0] == nil {
			return
		}
		others := make([]string, 0, m-1)
		for j := 1; j < m; j++ {
			others = append(others, p.User((p.Lo+q)*m+j))
		}
		var res protocol.ConvResult
		args := protocol.CreateArgs{Kind: protocol.KindGroup, Name: p.UserPrefix + "g" + strconv.Itoa(p.Lo+q), Members: others}
		if err := ms[0].c.Call(ctx, protocol.OpConvCreate, args, &res); err != nil {
			s.env.errs.add("conv.create:" + classify(err))
			return
		}
		for _, mb := range ms {
			if mb != nil {
				mb.follow(res.Conversation.ID, res.Conversation.LastSeq)
			}
		}
		convs[q] = res.Conversation.ID
	})
	// Member-major order: consecutive sends go to different groups, and
	// each group's members take turns.
	for j := range m {
		for q, conv := range convs {
			if conv != "" && s.members[q*m+j] != nil {
				s.slots = append(s.slots, sendSlot{m: s.members[q*m+j], conv: conv})
			}
		}
	}
	return ctx.Err()
}

func (s *groupShard) finish(ctx context.Context, expect map[string]uint64, _ int64, res *ShardResult) {
	s.traffic.finish(ctx, expect, res)
}
