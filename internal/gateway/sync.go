package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/protocol"
)

// A sync reply stops growing at these bounds so that it stays a reasonable
// frame however far behind the client is; the client asks again.
const (
	syncMaxMessages = 1000
	syncMaxBytes    = 1 << 20
	pageMax         = 100
)

func wireConv(c store.Conversation) protocol.Conversation {
	return protocol.Conversation{ID: c.ID, Kind: c.Kind, Name: c.Name, Creator: c.Creator,
		CreatedAt: c.CreatedAt.UnixMilli(), LastSeq: c.LastSeq}
}

func wireMsg(m store.Message) protocol.Message {
	return protocol.Message{Conv: m.Conv, Seq: m.Seq, TS: m.At.UnixMilli(), Sender: m.Sender,
		ClientMsgID: m.ClientMsgID, Body: m.Body}
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms) }

// syncTarget is a conversation a sync reads from seq from.
type syncTarget struct {
	id, kind string
	from     uint64
	last     uint64
}

func (g *Gateway) sync(ctx context.Context, c Caller, a protocol.SyncArgs) (protocol.SyncResult, *protocol.Error) {
	res := protocol.SyncResult{Convs: []protocol.SyncConv{}}
	if len(a.Convs) > g.o.Limits.MaxSyncConvs {
		g.m.LimitHits.WithLabelValues("sync_convs").Inc()
		return res, &protocol.Error{Code: protocol.CodeLimit, Message: "too many conversations in one sync"}
	}
	limit := a.Limit
	if limit <= 0 || limit > pageMax {
		limit = pageMax
	}
	ids := make([]string, 0, len(a.Convs))
	for id := range a.Convs {
		if protocol.ValidID(id) {
			ids = append(ids, id)
		} else {
			res.Convs = append(res.Convs, protocol.SyncConv{Conv: id, Gone: true, Messages: []protocol.Message{}})
		}
	}
	slices.Sort(ids)
	started := g.now()
	// With all, the user's conversations are read first: they usually
	// cover every listed id too, so that one query answers the whole sync.
	// Only the listed ids it does not cover (rooms, conversations the user
	// left, anything past maxUserConvs) are read by id.
	var ucs []store.ConvState
	if a.All {
		var err error
		if ucs, err = g.st.UserConversations(ctx, c.App, c.User, maxUserConvs); err != nil {
			return res, g.storeError("sync", err)
		}
	}
	byID := make(map[string]store.ConvState, len(ucs)+len(ids))
	for _, st := range ucs {
		byID[st.ID] = st
	}
	var rest []string
	for _, id := range ids {
		if _, ok := byID[id]; !ok {
			rest = append(rest, id)
		}
	}
	if len(rest) > 0 {
		states, err := g.st.ConvStates(ctx, c.App, c.User, rest)
		if err != nil {
			return res, g.storeError("sync", err)
		}
		for _, st := range states {
			byID[st.ID] = st
		}
	}
	var targets []syncTarget
	for _, id := range ids {
		st, ok := byID[id]
		readable := ok && (st.Member || (st.Kind == store.KindRoom && c.sess != nil && c.sess.inRoom(id)))
		if !readable {
			res.Convs = append(res.Convs, protocol.SyncConv{Conv: id, Gone: true, Messages: []protocol.Message{}})
			continue
		}
		targets = append(targets, syncTarget{id: id, kind: st.Kind, from: a.Convs[id], last: st.LastSeq})
	}
	for _, uc := range ucs {
		if _, listed := a.Convs[uc.ID]; !listed {
			targets = append(targets, syncTarget{id: uc.ID, kind: uc.Kind, from: uc.JoinedSeq, last: uc.LastSeq})
		}
	}
	msgs, bytes := 0, 0
	for _, t := range targets {
		if t.last <= t.from {
			continue
		}
		if msgs >= syncMaxMessages || bytes >= syncMaxBytes {
			res.More = true
			break
		}
		page, err := g.st.MessagesAfter(ctx, c.App, t.id, t.from, min(limit, syncMaxMessages-msgs))
		if err != nil {
			return res, g.storeError("sync", err)
		}
		sc := protocol.SyncConv{Conv: t.id, Kind: t.kind, LastSeq: t.last, Messages: make([]protocol.Message, 0, len(page))}
		for _, m := range page {
			// Always take one message per conversation so a reply makes
			// progress even next to a large one.
			if len(sc.Messages) > 0 && bytes+len(m.Body) > syncMaxBytes {
				break
			}
			bytes += len(m.Body) + 128
			sc.Messages = append(sc.Messages, wireMsg(m))
		}
		msgs += len(sc.Messages)
		if n := len(sc.Messages); n > 0 {
			sc.HasMore = sc.Messages[n-1].Seq < t.last
			if last := sc.Messages[n-1].Seq; last > sc.LastSeq {
				sc.LastSeq = last // committed since ConvStates read it
			}
		}
		res.Convs = append(res.Convs, sc)
	}
	if a.All && !res.More && c.sess != nil && c.sess.roomsListed(a.Convs) {
		c.sess.fullSync.Store(started.UnixNano())
	}
	return res, nil
}

// History pages through a conversation's messages.
func (g *Gateway) History(ctx context.Context, c Caller, a protocol.HistoryArgs) (protocol.HistoryResult, *protocol.Error) {
	var zero protocol.HistoryResult
	limit := a.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 0 || limit > pageMax {
		return zero, badRequest("limit must be 1..100")
	}
	if _, perr := g.access(ctx, c, a.Conv); perr != nil {
		return zero, perr
	}
	var (
		page []store.Message
		err  error
	)
	// One more than asked tells whether there is more.
	switch a.Direction {
	case "", protocol.Before:
		page, err = g.st.MessagesBefore(ctx, c.App, a.Conv, a.Seq, limit+1)
	case protocol.After:
		page, err = g.st.MessagesAfter(ctx, c.App, a.Conv, a.Seq, limit+1)
	default:
		return zero, badRequest(`direction must be "before" or "after"`)
	}
	if err != nil {
		return zero, g.storeError("history", err)
	}
	res := protocol.HistoryResult{HasMore: len(page) > limit}
	if res.HasMore {
		if a.Direction == protocol.After {
			page = page[:limit]
		} else {
			page = page[1:]
		}
	}
	res.Messages = make([]protocol.Message, len(page))
	for i, m := range page {
		res.Messages[i] = wireMsg(m)
	}
	return res, nil
}
