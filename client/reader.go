package client

import (
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/floodgate/floodgate/protocol"
)

// readLoop reads cn until it breaks, handling every frame in order.
func (c *Client) readLoop(cn *wsConn) {
	defer close(cn.readDone)
	defer c.connLost(cn)
	cn.lastRecv.Store(time.Now().UnixNano())
	for {
		if !c.waitForRoom(cn) {
			return
		}
		data, err := cn.readMessage()
		if err != nil {
			c.mu.Lock()
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				cn.code, cn.reason = int(ce.Code), ce.Reason
			}
			if cn.err == nil {
				cn.err = err
			}
			c.mu.Unlock()
			return
		}
		c.handleFrame(cn, data)
	}
}

// waitForRoom parks the reader while the application has EventBuffer
// events waiting, which is how a slow application slows the server down.
// It reads on while a reply is awaited, so that a call made from the
// goroutine consuming events cannot deadlock. It returns false when the
// connection is being closed.
func (c *Client) waitForRoom(cn *wsConn) bool {
	for {
		c.mu.Lock()
		awaited := cn.inflight > 0
		c.mu.Unlock()
		if awaited {
			return true
		}
		ok, space := c.q.below(c.opts.EventBuffer)
		if ok {
			return true
		}
		cn.parked.Store(true)
		select {
		case <-space:
		case <-cn.kick:
		case <-cn.closed:
			return false
		}
		cn.parked.Store(false)
		cn.lastRecv.Store(time.Now().UnixNano())
	}
}

// connLost runs when cn's reader exits: the socket is closed, cn stops
// being the current connection, and its pending requests learn that their
// reply will never come.
func (c *Client) connLost(cn *wsConn) {
	cn.abort()
	c.mu.Lock()
	defer c.mu.Unlock()
	cn.dead = true
	for id, p := range cn.pending {
		delete(cn.pending, id)
		p.ch <- replyResult{lost: true}
	}
	cn.inflight = 0
	if c.cur == cn {
		c.cur = nil
		c.ready = make(chan struct{})
	}
}

// handleFrame handles one frame from the server.
func (c *Client) handleFrame(cn *wsConn, data []byte) {
	var f protocol.Frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.log.Warn("floodgate: undecodable frame from the server", "err", err)
		return
	}
	if f.Ev == "" {
		c.handleReply(cn, f)
		return
	}
	c.handleEvent(cn, f.Ev, f.Data)
}

func (c *Client) handleReply(cn *wsConn, f protocol.Frame) {
	c.mu.Lock()
	p := cn.pending[f.ID]
	if p != nil {
		delete(cn.pending, f.ID)
		cn.inflight--
	}
	c.mu.Unlock()
	if p == nil {
		if f.Error != nil {
			c.log.Warn("floodgate: error reply to no pending request", "id", f.ID, "err", f.Error)
		}
		return // a ping's reply, or a request whose caller gave up
	}
	if p.apply != nil {
		p.apply(f.Result, f.Error)
	}
	p.ch <- replyResult{result: f.Result, err: f.Error}
}

func (c *Client) handleEvent(cn *wsConn, ev string, data json.RawMessage) {
	switch ev {
	case protocol.EvMessage:
		var m protocol.Message
		if err := json.Unmarshal(data, &m); err != nil || m.Conv == "" || m.Seq == 0 {
			c.log.Warn("floodgate: invalid message event", "err", err)
			return
		}
		c.mu.Lock()
		if c.q.len() >= c.opts.EventBuffer {
			// The reader only reads on because a reply is awaited: the
			// application is behind, so take this message later, from sync.
			c.seq.RequestSync(m.Conv)
		} else {
			c.emitMessages(c.seq.Live(m))
		}
		c.kickSync()
		c.mu.Unlock()
	case protocol.EvRead:
		var e protocol.ReadEvent
		if json.Unmarshal(data, &e) == nil {
			c.mu.Lock()
			c.emit(Event{Type: EventRead, Read: &e})
			c.mu.Unlock()
		}
	case protocol.EvTyping:
		var e protocol.TypingEvent
		if json.Unmarshal(data, &e) == nil && c.q.len() < c.opts.EventBuffer {
			c.mu.Lock()
			c.emit(Event{Type: EventTyping, Typing: &e})
			c.mu.Unlock()
		}
	case protocol.EvPresence:
		var e protocol.PresenceEvent
		if json.Unmarshal(data, &e) == nil && c.q.len() < c.opts.EventBuffer {
			c.mu.Lock()
			c.emit(Event{Type: EventPresence, Presence: &e})
			c.mu.Unlock()
		}
	case protocol.EvMember:
		var e protocol.MemberEvent
		if json.Unmarshal(data, &e) != nil {
			return
		}
		c.mu.Lock()
		if (e.Action == protocol.MemberRemoved || e.Action == protocol.MemberLeft) && slices.Contains(e.Users, c.user) {
			c.seq.Forget(e.Conv, false)
			delete(c.presence, e.Conv)
		}
		c.emit(Event{Type: EventMember, Member: &e})
		c.mu.Unlock()
	case protocol.EvResync:
		var e protocol.ResyncEvent
		if json.Unmarshal(data, &e) != nil {
			return
		}
		at := time.Now().Add(jitter(c.rand, time.Duration(e.DelayMS)*time.Millisecond))
		c.mu.Lock()
		if cn.resyncAt.IsZero() || at.Before(cn.resyncAt) {
			cn.resyncAt = at
		}
		c.mu.Unlock()
		select {
		case c.syncKick <- struct{}{}:
		default:
		}
	case protocol.EvDirective:
		var d protocol.Directive
		if json.Unmarshal(data, &d) != nil {
			return
		}
		c.log.Info("floodgate: directive", "action", d.Action, "code", d.Code, "reason", d.Reason, "retry_after_ms", d.RetryAfterMS, "url", d.URL)
		c.mu.Lock()
		cn.directive = &d
		c.mu.Unlock()
		cn.expectClose()
	}
}
