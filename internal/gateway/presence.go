package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/floodgate/floodgate/internal/bus"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/protocol"
)

// presenceQueryTimeout bounds how long presence.sub waits for other nodes'
// answers; a node that does not answer in time counts as having nobody.
const presenceQueryTimeout = time.Second

// watch is one connection's presence subscription to one conversation: it
// follows the Presence topic of each member.
type watch struct {
	s     *Session
	conv  string
	users []string
}

func (s *Session) watchPresence(ctx context.Context, conv string) (any, *protocol.Error) {
	g := s.g
	if w, ok := s.watches[conv]; ok {
		return protocol.PresenceResult{Online: g.queryOnline(ctx, s.app, w.users)}, nil
	}
	if len(s.watches) >= g.o.Limits.MaxPresence {
		g.m.LimitHits.WithLabelValues("presence").Inc()
		return nil, &protocol.Error{Code: protocol.CodeLimit, Message: "too many presence subscriptions"}
	}
	ci, perr := g.access(ctx, s.caller(), conv)
	if perr != nil {
		return nil, perr
	}
	if ci.conv.Kind == store.KindRoom {
		return nil, badRequest("presence is offered for direct and group conversations")
	}
	if len(ci.members) > g.o.Limits.PresenceMembers {
		g.m.LimitHits.WithLabelValues("presence_members").Inc()
		return nil, &protocol.Error{Code: protocol.CodeLimit, Message: "conversation too large for presence"}
	}
	w := &watch{s: s, conv: conv, users: slices.Clone(ci.members)}
	if s.watches == nil {
		s.watches = make(map[string]*watch)
	}
	s.watches[conv] = w
	for _, u := range w.users {
		if _, err := g.hub.follow(ctx, bus.Topic{Kind: bus.Presence, App: s.app, ID: u}, nil, w); err != nil {
			g.log.Warn("presence: subscribe", "err", err)
		}
	}
	return protocol.PresenceResult{Online: g.queryOnline(ctx, s.app, w.users)}, nil
}

func (s *Session) unwatchPresence(conv string) {
	w, ok := s.watches[conv]
	if !ok {
		return
	}
	delete(s.watches, conv)
	for _, u := range w.users {
		s.g.hub.unfollow(bus.Topic{Kind: bus.Presence, App: s.app, ID: u}, nil, w)
	}
}

// queryOnline asks every node which of users are connected there, seeds the
// presence state of those users, and returns the online ones.
func (g *Gateway) queryOnline(ctx context.Context, app string, users []string) []string {
	q, _ := json.Marshal(presenceQuery{App: app, Users: users})
	ctx, cancel := context.WithTimeout(ctx, presenceQueryTimeout)
	defer cancel()
	answers, err := g.bus.Gather(ctx, q, g.nodes())
	if err != nil {
		g.log.Warn("presence query", "err", err)
	}
	nodes := make(map[string][]string)
	for _, raw := range answers {
		var a presenceAnswer
		if json.Unmarshal(raw, &a) != nil {
			continue
		}
		for _, u := range a.Online {
			nodes[u] = append(nodes[u], a.Node)
		}
	}
	online := []string{}
	for _, u := range users {
		g.hub.seedPresence(bus.Topic{Kind: bus.Presence, App: app, ID: u}, nodes[u])
		if len(nodes[u]) > 0 {
			online = append(online, u)
		}
	}
	return online
}

// nodes returns how many nodes answer presence queries.
func (g *Gateway) nodes() int {
	if g.o.Nodes != nil {
		if n := g.o.Nodes(); n > 0 {
			return n
		}
	}
	return 1
}

func (g *Gateway) publishPresence(app, user string, online bool) {
	g.publish(bus.Topic{Kind: bus.Presence, App: app, ID: user},
		jsonMsg(msgPresence, presenceChange{Node: g.o.Node, Online: online}))
}

// NodeGone tells the gateway that node left the cluster without saying
// goodbye (it died): the users it had online are offline as far as it
// counts, and their watchers are told.
func (g *Gateway) NodeGone(node string) {
	for t, ws := range g.hub.nodeGone(node) {
		g.notifyPresence(t, ws, false)
	}
}

// presenceChanged applies another node's (or this one's) presence change
// and tells the watchers when the user's overall state flipped.
func (g *Gateway) presenceChanged(t bus.Topic, p presenceChange) {
	notify, online := g.hub.presence(t, p.Node, p.Online)
	g.notifyPresence(t, notify, online)
}

func (g *Gateway) notifyPresence(t bus.Topic, notify []*watch, online bool) {
	for _, w := range notify {
		if w.s.user == t.ID || !w.s.live() {
			continue
		}
		if f, err := protocol.EncodeEvent(protocol.EvPresence, protocol.PresenceEvent{Conv: w.conv, User: t.ID, Online: online}); err == nil {
			w.s.send(f)
		}
	}
}
