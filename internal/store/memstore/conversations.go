package memstore

import (
	"context"
	"fmt"
	"sort"

	"github.com/floodgate/floodgate/internal/store"
)

// CreateConversation implements store.Store. Kind must be group or room
// (direct conversations are made by EnsureDirect, which keeps them one per
// user pair); a zero CreatedAt is set to now. Duplicate member ids are
// stored once. ErrNotFound if the app does not exist.
func (s *Store) CreateConversation(ctx context.Context, c store.Conversation, members []string) (store.Conversation, error) {
	if c.Kind != store.KindGroup && c.Kind != store.KindRoom {
		return store.Conversation{}, fmt.Errorf("%w: cannot create a %q conversation", store.ErrInvalid, c.Kind)
	}
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return store.Conversation{}, err
	}
	defer unlock()
	if _, ok := s.apps[c.App]; !ok {
		return store.Conversation{}, store.ErrNotFound
	}
	if _, ok := s.convs[key{c.App, c.ID}]; ok {
		return store.Conversation{}, store.ErrConflict
	}
	c.CreatedAt = ms(c.CreatedAt)
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.clock()
	}
	c.LastSeq, c.LastAt = 0, c.CreatedAt
	cv := s.insertConv(c)
	if c.Kind == store.KindGroup {
		for _, u := range members {
			s.addMember(cv, u)
		}
	}
	return c, nil
}

// EnsureDirect implements store.Store. a and b must differ. ErrConflict if
// id is taken by a conversation that is not the direct conversation of a and
// b; ErrNotFound if the app does not exist.
func (s *Store) EnsureDirect(ctx context.Context, app, id, a, b string) (store.Conversation, error) {
	if a == b {
		return store.Conversation{}, fmt.Errorf("%w: a direct conversation needs two distinct users", store.ErrInvalid)
	}
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return store.Conversation{}, err
	}
	defer unlock()
	if _, ok := s.apps[app]; !ok {
		return store.Conversation{}, store.ErrNotFound
	}
	if cv, ok := s.convs[key{app, id}]; ok {
		if cv.c.Kind != store.KindDirect || cv.members[a] == nil || cv.members[b] == nil {
			return store.Conversation{}, store.ErrConflict
		}
		return cv.c, nil
	}
	now := s.clock()
	cv := s.insertConv(store.Conversation{
		App: app, ID: id, Kind: store.KindDirect, Creator: a,
		CreatedAt: now, LastAt: now,
	})
	s.addMember(cv, a)
	s.addMember(cv, b)
	return cv.c, nil
}

func (s *Store) insertConv(c store.Conversation) *conv {
	cv := &conv{
		c:       c,
		members: make(map[string]*store.Member),
		dedupe:  make(map[dedupeKey]uint64),
	}
	s.convs[key{c.App, c.ID}] = cv
	return cv
}

// addMember makes user a member joining now and reports whether it was not
// one already. A new member has read everything before it joined: those
// messages are not its to read, and counting them unread would be wrong.
func (s *Store) addMember(cv *conv, user string) bool {
	if cv.members[user] != nil {
		return false
	}
	cv.members[user] = &store.Member{User: user, JoinedSeq: cv.c.LastSeq, ReadSeq: cv.c.LastSeq}
	uk := key{cv.c.App, user}
	if s.byUser[uk] == nil {
		s.byUser[uk] = make(map[string]struct{})
	}
	s.byUser[uk][cv.c.ID] = struct{}{}
	return true
}

func (s *Store) removeMember(cv *conv, user string) bool {
	if cv.members[user] == nil {
		return false
	}
	delete(cv.members, user)
	uk := key{cv.c.App, user}
	delete(s.byUser[uk], cv.c.ID)
	if len(s.byUser[uk]) == 0 {
		delete(s.byUser, uk)
	}
	return true
}

// Conversation implements store.Store.
func (s *Store) Conversation(ctx context.Context, app, id string) (store.Conversation, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return store.Conversation{}, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, id}]
	if !ok {
		return store.Conversation{}, store.ErrNotFound
	}
	return cv.c, nil
}

// Member implements store.Store.
func (s *Store) Member(ctx context.Context, app, conv, user string) (store.Member, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return store.Member{}, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, conv}]
	if !ok || cv.members[user] == nil {
		return store.Member{}, store.ErrNotFound
	}
	return *cv.members[user], nil
}

// Members implements store.Store. ErrNotFound if conv does not exist.
func (s *Store) Members(ctx context.Context, app, conv string, limit int) ([]store.Member, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, conv}]
	if !ok {
		return nil, store.ErrNotFound
	}
	if limit <= 0 {
		return nil, nil
	}
	out := make([]store.Member, 0, len(cv.members))
	for _, m := range cv.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out[:min(limit, len(out))], nil
}

// MemberCount implements store.Store. ErrNotFound if conv does not exist.
func (s *Store) MemberCount(ctx context.Context, app, conv string) (int, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return 0, err
	}
	defer unlock()
	cv, ok := s.convs[key{app, conv}]
	if !ok {
		return 0, store.ErrNotFound
	}
	return len(cv.members), nil
}

// group returns the group conversation conv; the caller holds the write lock.
func (s *Store) group(app, conv string) (*conv, error) {
	cv, ok := s.convs[key{app, conv}]
	if !ok {
		return nil, store.ErrNotFound
	}
	if cv.c.Kind != store.KindGroup {
		return nil, fmt.Errorf("%w: %s is a %s conversation, not a group", store.ErrInvalid, conv, cv.c.Kind)
	}
	return cv, nil
}

// AddMembers implements store.Store. A new member's ReadSeq is its
// JoinedSeq. The result keeps the order of users, without repeats.
// ErrNotFound if conv does not exist; an error if it is not a group.
func (s *Store) AddMembers(ctx context.Context, app, conv string, users []string) ([]string, error) {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cv, err := s.group(app, conv)
	if err != nil {
		return nil, err
	}
	var added []string
	for _, u := range users {
		if s.addMember(cv, u) {
			added = append(added, u)
		}
	}
	return added, nil
}

// RemoveMembers implements store.Store. The result keeps the order of
// users, without repeats. ErrNotFound if conv does not exist; an error if it
// is not a group.
func (s *Store) RemoveMembers(ctx context.Context, app, conv string, users []string) ([]string, error) {
	unlock, err := s.begin(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cv, err := s.group(app, conv)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, u := range users {
		if s.removeMember(cv, u) {
			removed = append(removed, u)
		}
	}
	return removed, nil
}

// ListConversations implements store.Store. Entries are ordered by LastAt
// descending, then id ascending; the cursor is the (LastAt, ID) of the last
// entry of the previous page.
func (s *Store) ListConversations(ctx context.Context, app, user string, cursor store.ListCursor, limit int) ([]store.Summary, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if limit <= 0 {
		return nil, nil
	}
	start := cursor.LastAt.IsZero() && cursor.ID == ""
	after := ms(cursor.LastAt)
	var convs []*conv
	for id := range s.byUser[key{app, user}] {
		cv := s.convs[key{app, id}]
		la := cv.c.LastAt
		if start || la.Before(after) || (la.Equal(after) && cv.c.ID > cursor.ID) {
			convs = append(convs, cv)
		}
	}
	sort.Slice(convs, func(i, j int) bool {
		a, b := convs[i].c, convs[j].c
		if !a.LastAt.Equal(b.LastAt) {
			return a.LastAt.After(b.LastAt)
		}
		return a.ID < b.ID
	})
	convs = convs[:min(limit, len(convs))]
	out := make([]store.Summary, len(convs))
	for i, cv := range convs {
		out[i] = store.Summary{Conversation: cv.c, ReadSeq: cv.members[user].ReadSeq}
		if n := len(cv.msgs); n > 0 {
			m := copyMessage(cv.msgs[n-1])
			out[i].LastMessage = &m
		}
	}
	return out, nil
}

// UserConversations implements store.Store.
func (s *Store) UserConversations(ctx context.Context, app, user string, limit int) ([]store.ConvState, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if limit <= 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(s.byUser[key{app, user}]))
	for id := range s.byUser[key{app, user}] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	ids = ids[:min(limit, len(ids))]
	out := make([]store.ConvState, len(ids))
	for i, id := range ids {
		out[i] = s.convState(s.convs[key{app, id}], user)
	}
	return out, nil
}

// ConvStates implements store.Store. The result is ordered by id, with no
// repeats.
func (s *Store) ConvStates(ctx context.Context, app, user string, ids []string) ([]store.ConvState, error) {
	unlock, err := s.begin(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	seen := make(map[string]bool, len(ids))
	var out []store.ConvState
	for _, id := range ids {
		cv, ok := s.convs[key{app, id}]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, s.convState(cv, user))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *Store) convState(cv *conv, user string) store.ConvState {
	st := store.ConvState{ID: cv.c.ID, Kind: cv.c.Kind, LastSeq: cv.c.LastSeq}
	if m := cv.members[user]; m != nil {
		st.JoinedSeq, st.ReadSeq, st.Member = m.JoinedSeq, m.ReadSeq, true
	}
	return st
}

// ConversationMembers implements store.Store.
func (s *Store) ConversationMembers(ctx context.Context, app, id string, limit int) (store.Conversation, []string, error) {
	return store.ConversationMembersOf(ctx, s, app, id, limit)
}
