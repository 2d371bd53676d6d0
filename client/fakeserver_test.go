package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/floodgate/floodgate/protocol"
)

// fakeServer is a small Floodgate gateway for the SDK's tests: auth, ping,
// send (per-conversation seq, client_msg_id dedupe), sync (has_more and
// more paging, gone, all), room.join/leave, conv.create/get, presence.sub,
// directives, close codes and HTTP 503 refusals. Its store survives down()
// and up(), like a cluster's database survives the cluster's gateways.
//
// It also checks the SDK's one-connection-at-a-time rule: a user never
// holds two authenticated connections at once.
type fakeServer struct {
	t    *testing.T
	addr string
	wg   sync.WaitGroup // connection goroutines

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	convs    map[string]*fakeConv
	conns    map[*fakeConn]struct{}
	active   map[string]int
	gone     chan struct{} // closed and replaced when a connection ends
	maxConns int
	errs     []string

	// Behaviour, set by tests (under mu).
	pingMS     int64
	pageLimit  int               // messages per conversation per sync reply
	replyConvs int               // conversations per sync reply before "more"
	refuse     int               // upgrades still to refuse with 503
	retryAfter string            // the 503's Retry-After
	tokens     map[string]string // token → user, or "!code" for an auth error
	dropLive   func(m protocol.Message) bool
	// beforeReply may act on a request after it was carried out and before
	// its reply; returning true drops the connection instead of replying.
	beforeReply func(fc *fakeConn, req protocol.Request) bool
	// refuse may refuse a request before it is carried out, as the rate
	// limiter or an unavailable store do.
	refuseOp func(req protocol.Request) *protocol.Error
	// closeAfterAuth: connections still to close (4000) right after their
	// auth reply.
	closeAfterAuth int

	// Observations.
	auths   int
	sendIDs []string
	syncs   []protocol.SyncArgs
	joins   []string
	ops     []string
}

type fakeConv struct {
	id, kind string
	msgs     []protocol.Message
	sent     map[string]protocol.SendResult // by client_msg_id
	joined   map[string]uint64              // member → seq at which they joined
}

type fakeConn struct {
	s      *fakeServer
	nc     net.Conn
	out    chan fakeOut
	user   string
	authed bool
	silent bool // ignore the client: no reply, no event (a dead peer)
	rooms  map[string]bool
	presub map[string]bool
	ended  bool
}

// fakeOut is a frame to write, or a close (code != 0) after the frames
// queued before it.
type fakeOut struct {
	frame []byte
	code  int
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{
		t:          t,
		convs:      make(map[string]*fakeConv),
		conns:      make(map[*fakeConn]struct{}),
		active:     make(map[string]int),
		gone:       make(chan struct{}),
		pingMS:     25000,
		pageLimit:  100,
		replyConvs: 1000,
		tokens:     map[string]string{"tok-alice": "alice", "tok-bob": "bob"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(func() {
		s.down()
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.errs {
			t.Error("fake server: " + e)
		}
	})
	return s
}

func (s *fakeServer) URL() string { return "ws://" + s.addr + "/v1/ws" }

func (s *fakeServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.ln, s.srv = ln, srv
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// down stops the gateway abruptly, as a crash would: no directive, no close
// frame. The store stays.
func (s *fakeServer) down() {
	s.mu.Lock()
	srv := s.srv
	s.srv, s.ln = nil, nil
	conns := make([]*fakeConn, 0, len(s.conns))
	for fc := range s.conns {
		conns = append(conns, fc)
	}
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	for _, fc := range conns {
		_ = fc.nc.Close()
	}
}

// up starts the gateway again on the same address.
func (s *fakeServer) up() {
	s.t.Helper()
	var (
		ln  net.Listener
		err error
	)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ln, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the port is released asynchronously
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(ln)
}

func (s *fakeServer) fail(format string, args ...any) {
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// addConv creates a conversation; members join at seq 0.
func (s *fakeServer) addConv(id, kind string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &fakeConv{id: id, kind: kind, sent: make(map[string]protocol.SendResult), joined: make(map[string]uint64)}
	for _, m := range members {
		c.joined[m] = 0
	}
	s.convs[id] = c
}

// addMember adds user to conv at its current seq.
func (s *fakeServer) addMember(conv, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[conv]
	c.joined[user] = uint64(len(c.msgs))
}

// inject commits a message from another user (or another node) and fans
// it out live.
func (s *fakeServer) inject(conv string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		c := s.convs[conv]
		id := fmt.Sprintf("inj-%s-%d", conv, len(c.msgs)+1)
		s.commitLocked(c, "carol", id, json.RawMessage(`{"text":"x"}`))
	}
}

func (s *fakeServer) commitLocked(c *fakeConv, sender, clientMsgID string, body json.RawMessage) protocol.SendResult {
	m := protocol.Message{Conv: c.id, Seq: uint64(len(c.msgs)) + 1, TS: time.Now().UnixMilli(), Sender: sender, ClientMsgID: clientMsgID, Body: body}
	c.msgs = append(c.msgs, m)
	res := protocol.SendResult{Conv: c.id, Seq: m.Seq, TS: m.TS}
	c.sent[clientMsgID] = res
	if s.dropLive != nil && s.dropLive(m) {
		return res
	}
	frame, _ := protocol.EncodeEvent(protocol.EvMessage, m)
	for fc := range s.conns {
		if fc.authed && !fc.silent && s.canReadLocked(fc, c) {
			fc.sendLocked(frame)
		}
	}
	return res
}

func (s *fakeServer) canReadLocked(fc *fakeConn, c *fakeConv) bool {
	if c.kind == protocol.KindRoom {
		return fc.rooms[c.id]
	}
	_, ok := c.joined[fc.user]
	return ok
}

// connsOf returns user's live connections.
func (s *fakeServer) connsOf(user string) []*fakeConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fakeConn
	for fc := range s.conns {
		if fc.user == user && fc.authed {
			out = append(out, fc)
		}
	}
	return out
}

// kick sends user's connections a directive (if d is not nil) and closes
// them with code.
func (s *fakeServer) kick(user string, d *protocol.Directive, code int) {
	for _, fc := range s.connsOf(user) {
		if d != nil {
			f, _ := protocol.EncodeEvent(protocol.EvDirective, d)
			fc.send(f)
		}
		fc.closeWith(code)
	}
}

// drop breaks user's connections without a close frame.
func (s *fakeServer) drop(user string) {
	for _, fc := range s.connsOf(user) {
		_ = fc.nc.Close()
	}
}

// silence makes user's current connections ignore everything: a dead peer.
func (s *fakeServer) silence(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fc := range s.conns {
		if fc.user == user {
			fc.silent = true
		}
	}
}

func (s *fakeServer) resync(user string, delayMS int64) {
	f, _ := protocol.EncodeEvent(protocol.EvResync, protocol.ResyncEvent{DelayMS: delayMS})
	for _, fc := range s.connsOf(user) {
		fc.send(f)
	}
}

func (s *fakeServer) stats() (auths int, sendIDs []string, syncs []protocol.SyncArgs, joins []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths, slices.Clone(s.sendIDs), slices.Clone(s.syncs), slices.Clone(s.joins)
}

func (s *fakeServer) set(f func(s *fakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// ServeHTTP upgrades /v1/ws, or refuses with 503 while refuse > 0.
func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.refuse > 0 {
		s.refuse--
		ra := s.retryAfter
		s.mu.Unlock()
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		http.Error(w, "node full", http.StatusServiceUnavailable)
		return
	}
	s.mu.Unlock()
	nc, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	fc := &fakeConn{s: s, nc: nc, out: make(chan fakeOut, 4096), rooms: map[string]bool{}, presub: map[string]bool{}}
	s.mu.Lock()
	if s.srv == nil { // went down meanwhile
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[fc] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		fc.writeLoop()
	}()
	defer s.wg.Done()
	fc.readLoop()
}

// send queues a frame; a client too slow to take 4096 frames is dropped,
// as a slow consumer.
func (fc *fakeConn) send(frame []byte) {
	fc.s.mu.Lock()
	defer fc.s.mu.Unlock()
	fc.sendLocked(frame)
}

func (fc *fakeConn) sendLocked(frame []byte) {
	if fc.ended {
		return
	}
	select {
	case fc.out <- fakeOut{frame: frame}:
	default:
		fc.ended = true
		close(fc.out)
	}
}

func (fc *fakeConn) closeWith(code int) {
	fc.s.mu.Lock()
	defer fc.s.mu.Unlock()
	if fc.ended {
		return
	}
	fc.ended = true
	select {
	case fc.out <- fakeOut{code: code}:
	default: // too far behind for a clean close
	}
	close(fc.out)
}

// writeLoop writes queued frames; after a close it half-closes the socket
// so that the client reads every frame before it sees the end.
func (fc *fakeConn) writeLoop() {
	for o := range fc.out {
		_ = fc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if o.code != 0 {
			body := ws.NewCloseFrameBody(ws.StatusCode(o.code), "")
			_ = ws.WriteFrame(fc.nc, ws.NewCloseFrame(body))
			if tc, ok := fc.nc.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			_ = fc.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
			return
		}
		if err := wsutil.WriteServerText(fc.nc, o.frame); err != nil {
			_ = fc.nc.Close()
			return
		}
	}
	// Closed without a close frame: a slow consumer or a dropped queue.
	_ = fc.nc.Close()
}

func (fc *fakeConn) readLoop() {
	s := fc.s
	defer func() {
		_ = fc.nc.Close()
		s.mu.Lock()
		delete(s.conns, fc)
		if !fc.ended {
			fc.ended = true
			close(fc.out)
		}
		if fc.authed {
			s.active[fc.user]--
		}
		close(s.gone)
		s.gone = make(chan struct{})
		s.mu.Unlock()
	}()
	// The SDK sends no WebSocket pings, and its close frame needs no
	// answer (it drops the socket right after), so control frames are read
	// and left unanswered rather than written behind the write loop's back.
	for {
		data, _, err := wsutil.ReadClientData(readOnly{fc.nc})
		if err != nil {
			return
		}
		s.handle(fc, data)
	}
}

// readOnly keeps wsutil from writing control replies on the socket behind
// the write loop's back.
type readOnly struct{ r io.Reader }

func (r readOnly) Read(p []byte) (int, error)  { return r.r.Read(p) }
func (r readOnly) Write(p []byte) (int, error) { return len(p), nil }

func (s *fakeServer) handle(fc *fakeConn, data []byte) {
	req, perr := protocol.ParseRequest(data)
	s.mu.Lock()
	if fc.silent {
		s.mu.Unlock()
		return
	}
	s.ops = append(s.ops, req.Op)
	s.mu.Unlock()
	if perr != nil {
		fc.send(protocol.EncodeError(req.ID, perr))
		return
	}
	if req.Op == protocol.OpAuth {
		s.auth(fc, req)
		return
	}
	if !fc.authed {
		fc.send(protocol.EncodeError(req.ID, &protocol.Error{Code: protocol.CodeAuthRequired, Message: "auth first"}))
		return
	}
	s.mu.Lock()
	var (
		res any
		e   *protocol.Error
	)
	if s.refuseOp != nil {
		e = s.refuseOp(req)
	}
	if e == nil {
		res, e = s.opLocked(fc, req)
	}
	hook := s.beforeReply
	s.mu.Unlock()
	if hook != nil && hook(fc, req) {
		_ = fc.nc.Close()
		return
	}
	if req.ID == 0 {
		return
	}
	if e != nil {
		fc.send(protocol.EncodeError(req.ID, e))
		return
	}
	b, _ := protocol.EncodeReply(req.ID, res)
	fc.send(b)
}

func (s *fakeServer) auth(fc *fakeConn, req protocol.Request) {
	var a protocol.AuthArgs
	_ = protocol.DecodeArgs(req.Args, &a)
	s.mu.Lock()
	s.auths++
	who := s.tokens[a.Token]
	s.mu.Unlock()
	if who == "" {
		who = "!" + protocol.CodeTokenInvalid
	}
	if code, refused := strings.CutPrefix(who, "!"); refused {
		fc.send(protocol.EncodeError(req.ID, &protocol.Error{Code: code, Message: "refused"}))
		closeCode := protocol.AuthCloseCode(code)
		action := protocol.ActionStop
		if protocol.CloseAction(closeCode) == protocol.AfterRefresh {
			action = protocol.ActionReconnect
		}
		f, _ := protocol.EncodeEvent(protocol.EvDirective, protocol.Directive{Action: action, Code: closeCode, Reason: code})
		fc.send(f)
		fc.closeWith(closeCode)
		return
	}
	// One connection per user at a time. The previous connection's socket
	// is closed before the client dials, but this goroutine may see the new
	// connection before the old one's reader saw the end: give it a moment.
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	s.mu.Lock()
	for s.active[who] > 0 {
		gone := s.gone
		s.mu.Unlock()
		timedOut := false
		select {
		case <-gone:
		case <-deadline.C:
			timedOut = true
		}
		s.mu.Lock()
		if timedOut && s.active[who] > 0 {
			s.fail("user %s holds %d connections at once", who, s.active[who]+1)
			break
		}
	}
	s.active[who]++
	s.maxConns = max(s.maxConns, s.active[who])
	fc.user, fc.authed = who, true
	res := protocol.AuthResult{User: who, Session: "s_1", Node: "fake", PingIntervalMS: s.pingMS,
		Limits: protocol.Limits{MaxFrameBytes: 65536, MaxBodyBytes: 16384, MaxRooms: 100, MaxSyncConvs: 1000, Rate: 50, Burst: 100}}
	b, _ := protocol.EncodeReply(req.ID, res)
	fc.sendLocked(b)
	closeNow := s.closeAfterAuth > 0
	if closeNow {
		s.closeAfterAuth--
	}
	s.mu.Unlock()
	if closeNow {
		fc.closeWith(protocol.CloseShutdown)
	}
}

func (s *fakeServer) opLocked(fc *fakeConn, req protocol.Request) (any, *protocol.Error) {
	notFound := &protocol.Error{Code: protocol.CodeNotFound, Message: "no such conversation"}
	switch req.Op {
	case protocol.OpPing:
		return protocol.PingResult{TS: time.Now().UnixMilli()}, nil
	case protocol.OpSend:
		var a protocol.SendArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		s.sendIDs = append(s.sendIDs, a.ClientMsgID)
		c := s.convs[a.Conv]
		if c == nil {
			return nil, notFound
		}
		if !s.canReadLocked(fc, c) {
			return nil, &protocol.Error{Code: protocol.CodeForbidden, Message: "not a member"}
		}
		if res, ok := c.sent[a.ClientMsgID]; ok {
			res.Duplicate = true
			return res, nil
		}
		return s.commitLocked(c, fc.user, a.ClientMsgID, a.Body), nil
	case protocol.OpSync:
		var a protocol.SyncArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		s.syncs = append(s.syncs, a)
		return s.syncLocked(fc, a), nil
	case protocol.OpRoomJoin:
		var a protocol.ConvArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		s.joins = append(s.joins, a.Conv)
		c := s.convs[a.Conv]
		if c == nil {
			return nil, notFound
		}
		if c.kind != protocol.KindRoom {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "not a room"}
		}
		fc.rooms[c.id] = true
		return protocol.ConvResult{Conversation: protocol.Conversation{ID: c.id, Kind: c.kind, LastSeq: uint64(len(c.msgs))}}, nil
	case protocol.OpRoomLeave:
		var a protocol.ConvArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		delete(fc.rooms, a.Conv)
		return struct{}{}, nil
	case protocol.OpConvGet:
		var a protocol.ConvArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		c := s.convs[a.Conv]
		if c == nil {
			return nil, notFound
		}
		return protocol.ConvGetResult{Conversation: protocol.Conversation{ID: c.id, Kind: c.kind, LastSeq: uint64(len(c.msgs))}}, nil
	case protocol.OpConvCreate:
		var a protocol.CreateArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		id := a.ID
		if id == "" {
			id = fmt.Sprintf("g:%d", len(s.convs)+1)
		}
		if s.convs[id] != nil {
			return nil, &protocol.Error{Code: protocol.CodeConflict, Message: "id taken"}
		}
		c := &fakeConv{id: id, kind: a.Kind, sent: map[string]protocol.SendResult{}, joined: map[string]uint64{fc.user: 0}}
		for _, m := range a.Members {
			c.joined[m] = 0
		}
		s.convs[id] = c
		return protocol.ConvResult{Conversation: protocol.Conversation{ID: id, Kind: a.Kind, Name: a.Name, Creator: fc.user}}, nil
	case protocol.OpPresenceSub:
		var a protocol.ConvArgs
		_ = protocol.DecodeArgs(req.Args, &a)
		c := s.convs[a.Conv]
		if c == nil {
			return nil, notFound
		}
		fc.presub[a.Conv] = true
		online := []string{}
		for u := range c.joined {
			if s.active[u] > 0 {
				online = append(online, u)
			}
		}
		slices.Sort(online)
		return protocol.PresenceResult{Online: online}, nil
	}
	return nil, &protocol.Error{Code: protocol.CodeUnknownOp, Message: "unknown op " + req.Op}
}

// syncLocked answers sync as docs/protocol.md says, with the fake's small
// page sizes so that tests exercise has_more and more.
func (s *fakeServer) syncLocked(fc *fakeConn, a protocol.SyncArgs) protocol.SyncResult {
	from := make(map[string]uint64, len(a.Convs))
	for conv, seq := range a.Convs {
		from[conv] = seq
	}
	if a.All {
		for id, c := range s.convs {
			if _, listed := from[id]; !listed && c.kind != protocol.KindRoom {
				if j, ok := c.joined[fc.user]; ok {
					from[id] = j
				}
			}
		}
	}
	ids := make([]string, 0, len(from))
	for id := range from {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	limit := s.pageLimit
	if a.Limit > 0 {
		limit = min(limit, a.Limit)
	}
	res := protocol.SyncResult{Convs: []protocol.SyncConv{}}
	for _, id := range ids {
		c := s.convs[id]
		if c == nil || !s.canReadLocked(fc, c) {
			if _, listed := a.Convs[id]; listed {
				res.Convs = append(res.Convs, protocol.SyncConv{Conv: id, Gone: true})
			}
			continue
		}
		seq := from[id]
		if seq >= uint64(len(c.msgs)) {
			continue
		}
		if len(res.Convs) >= s.replyConvs {
			res.More = true
			break
		}
		end := min(seq+uint64(limit), uint64(len(c.msgs)))
		res.Convs = append(res.Convs, protocol.SyncConv{
			Conv: id, Kind: c.kind, LastSeq: uint64(len(c.msgs)),
			Messages: slices.Clone(c.msgs[seq:end]), HasMore: end < uint64(len(c.msgs)),
		})
	}
	return res
}
