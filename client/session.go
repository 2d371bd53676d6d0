package client

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// session runs an authenticated connection: it joins the rooms again,
// subscribes presence again, syncs everything, then syncs whenever the
// state machine or a resync event asks, until the connection ends or Close.
func (c *Client) session(cn *wsConn) {
	// Rooms first: sync lists a room only once it is joined on this
	// connection (the server would answer "gone" otherwise).
	if !c.rejoin(cn) || !c.resubscribe(cn) {
		return
	}
	c.mu.Lock()
	c.seq.RequestFullSync()
	c.mu.Unlock()
	var (
		timer  *time.Timer
		timerC <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if !c.runSync(cn) {
			return
		}
		select {
		case <-cn.readDone:
			return
		case <-c.ctx.Done():
			return
		case <-c.syncKick:
			c.mu.Lock()
			at := cn.resyncAt
			c.mu.Unlock()
			if !at.IsZero() {
				if timer != nil {
					timer.Stop()
				}
				timer = time.NewTimer(time.Until(at))
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			c.mu.Lock()
			cn.resyncAt = time.Time{}
			c.seq.RequestFullSync()
			c.mu.Unlock()
		}
	}
}

// rejoin joins again, on a new connection, the rooms the application
// joined. The joins are pipelined; a room the server now refuses is dropped
// and reported with EventGone.
func (c *Client) rejoin(cn *wsConn) bool {
	c.mu.Lock()
	rooms := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		// A JoinRoom may have beaten this loop to the new connection.
		if !c.seq.RoomJoined(r) {
			rooms = append(rooms, r)
		}
	}
	c.mu.Unlock()
	slices.Sort(rooms)
	ps := make([]*pending, len(rooms))
	for i, r := range rooms {
		ps[i] = c.post(cn, protocol.OpRoomJoin, mustArgs(protocol.ConvArgs{Conv: r}), c.joining(r), c.joined(r))
	}
	for i, r := range rooms {
		p := ps[i]
		for {
			res, err := c.await(c.ctx, p)
			if err != nil || res.lost {
				return false
			}
			if res.err == nil {
				break
			}
			if retryable(res.err, true) {
				if !c.pauseConn(cn, c.retryDelay(res.err)) {
					return false
				}
				p = c.post(cn, protocol.OpRoomJoin, mustArgs(protocol.ConvArgs{Conv: r}), c.joining(r), c.joined(r))
				continue
			}
			c.log.Warn("floodgate: room not joined again", "room", r, "err", res.err)
			c.mu.Lock()
			delete(c.rooms, r)
			c.seq.Forget(r, false)
			c.emit(Event{Type: EventGone, Gone: &Gone{Conv: r, Err: res.err}})
			c.mu.Unlock()
			break
		}
	}
	return true
}

// resubscribe subscribes presence again on a new connection and reports
// who is online now, since presence events were missed meanwhile.
func (c *Client) resubscribe(cn *wsConn) bool {
	c.mu.Lock()
	convs := make([]string, 0, len(c.presence))
	for conv, on := range c.presence {
		// A SubscribePresence may have beaten this loop to the connection.
		if on != cn {
			convs = append(convs, conv)
		}
	}
	c.mu.Unlock()
	slices.Sort(convs)
	for _, conv := range convs {
		for {
			p := c.post(cn, protocol.OpPresenceSub, mustArgs(protocol.ConvArgs{Conv: conv}), nil, nil)
			res, err := c.await(c.ctx, p)
			if err != nil || res.lost {
				return false
			}
			if res.err != nil && retryable(res.err, true) {
				if !c.pauseConn(cn, c.retryDelay(res.err)) {
					return false
				}
				continue
			}
			var (
				pr     protocol.PresenceResult
				failed error
			)
			if res.err != nil {
				failed = res.err
			} else {
				failed = decodeResult(res.result, &pr)
			}
			c.mu.Lock()
			if _, still := c.presence[conv]; still {
				if failed != nil {
					c.log.Warn("floodgate: presence not subscribed again", "conv", conv, "err", failed)
					delete(c.presence, conv)
				} else {
					c.presence[conv] = cn
					c.emit(Event{Type: EventOnline, Online: &Online{Conv: conv, Users: pr.Online}})
				}
			}
			c.mu.Unlock()
			break
		}
	}
	return true
}

// runSync sends sync requests until the state machine wants none. It
// returns false when the connection ended.
func (c *Client) runSync(cn *wsConn) bool {
	for {
		// What a sync brings is queued for the application: wait for it to
		// catch up first, so that a client far behind does not grow its
		// queue without bound.
		if !c.q.waitBelow(c.opts.EventBuffer, cn.readDone, c.ctx.Done()) {
			return false
		}
		c.mu.Lock()
		args, ok := c.seq.BeginSync(c.limits.MaxSyncConvs)
		c.mu.Unlock()
		if !ok {
			return true
		}
		p := c.post(cn, protocol.OpSync, mustArgs(args), nil, c.applySync)
		res, err := c.await(c.ctx, p)
		if err != nil || res.lost {
			c.mu.Lock()
			c.seq.AbortSync()
			c.mu.Unlock()
			return false
		}
		if res.err != nil {
			if !retryable(res.err, true) {
				c.log.Error("floodgate: sync refused", "err", res.err)
				return true
			}
			if !c.pauseConn(cn, c.retryDelay(res.err)) {
				return false
			}
		}
	}
}

// applySync feeds a sync reply to the state machine. It runs on the reader
// goroutine, so the reply is applied in order with the live events around
// it.
func (c *Client) applySync(result json.RawMessage, perr *protocol.Error) {
	var res protocol.SyncResult
	if perr == nil {
		if err := json.Unmarshal(result, &res); err != nil {
			perr = &protocol.Error{Code: protocol.CodeInternal, Message: "undecodable sync result: " + err.Error()}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if perr != nil {
		if retryable(perr, true) {
			c.seq.AbortSync()
		} else {
			c.seq.DropSync()
		}
		return
	}
	out, gone := c.seq.ApplySync(res)
	c.emitMessages(out)
	for _, conv := range gone {
		delete(c.rooms, conv)
		delete(c.presence, conv)
		c.emit(Event{Type: EventGone, Gone: &Gone{Conv: conv}})
	}
}

// pauseConn waits d on an internal request's behalf, or until the
// connection ends or Close.
func (c *Client) pauseConn(cn *wsConn, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-cn.readDone:
		return false
	case <-c.ctx.Done():
		return false
	}
}
