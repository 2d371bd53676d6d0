package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// applyFunc sees a reply on the reader goroutine, before its caller does,
// so that state a reply changes (a room joined, a sync applied) changes in
// order with the events around it. It runs without Client.mu held.
type applyFunc func(result json.RawMessage, perr *protocol.Error)

// pending is a request waiting for its reply.
type pending struct {
	ch    chan replyResult // buffered: the reader never waits for the caller
	apply applyFunc
}

// replyResult is a reply, or lost when the connection broke first. unsent
// says the request was never written (its connection was already dead), so
// it is safe to send on the next connection whatever it is.
type replyResult struct {
	result json.RawMessage
	err    *protocol.Error
	lost   bool
	unsent bool
}

// callOpts say how a call behaves across failures.
type callOpts struct {
	// idempotent: repeating the request cannot do harm, so it is resent on
	// the next connection when its connection breaks, and retried on
	// "unavailable". Other requests fail with ErrConnectionLost instead.
	// rate_limited is retried for every request: the server refuses it
	// before looking at it.
	idempotent bool
	// before runs under Client.mu just before the request is written.
	before func()
	apply  applyFunc
}

// post registers a request on cn and writes it. The reply (or the loss of
// the connection) arrives on the returned pending's channel. A request whose
// caller gives up stays registered, so that its apply still runs if the
// reply comes: the server did act on it.
func (c *Client) post(cn *wsConn, op string, args json.RawMessage, before func(), apply applyFunc) *pending {
	p := &pending{ch: make(chan replyResult, 1), apply: apply}
	c.mu.Lock()
	if cn.dead {
		c.mu.Unlock()
		p.ch <- replyResult{lost: true, unsent: true}
		return p
	}
	c.nextID++
	id := c.nextID
	cn.pending[id] = p
	cn.inflight++
	if before != nil {
		before()
	}
	c.mu.Unlock()
	cn.wakeReader()
	frame, err := json.Marshal(protocol.Request{ID: id, Op: op, Args: args})
	if err != nil {
		// Args are always valid JSON here; a failure is a bug, and breaking
		// the connection is the one way to fail the request consistently.
		c.log.Error("floodgate: encoding a request", "op", op, "err", err)
		cn.abort()
		return p
	}
	_ = cn.write(frame) // a failed write breaks the connection, which fails p
	return p
}

// await waits for p's reply, or ctx.
func (c *Client) await(ctx context.Context, p *pending) (replyResult, error) {
	select {
	case r := <-p.ch:
		return r, nil
	case <-ctx.Done():
		return replyResult{}, ctx.Err()
	}
}

// call runs an application request: it waits for a slot and a connection,
// sends, and handles the failures as o says, until ctx ends or Close.
func (c *Client) call(ctx context.Context, op string, args, result any, o callOpts) error {
	payload, err := marshalArgs(args)
	if err != nil {
		return fmt.Errorf("floodgate: %s: encoding the arguments: %w", op, err)
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-c.slots }()
	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return err
		}
		r, err := c.await(ctx, c.post(cn, op, payload, o.before, o.apply))
		if err != nil {
			return err
		}
		if r.lost {
			if err := c.terminal(); err != nil {
				return err
			}
			if o.idempotent || r.unsent {
				continue
			}
			return fmt.Errorf("floodgate: %s: %w", op, ErrConnectionLost)
		}
		if r.err != nil {
			if !retryable(r.err, o.idempotent) {
				return r.err
			}
			if err := c.pause(ctx, c.retryDelay(r.err)); err != nil {
				return err
			}
			continue
		}
		if result != nil {
			if err := decodeResult(r.result, result); err != nil {
				return fmt.Errorf("floodgate: %s: %w", op, err)
			}
		}
		return nil
	}
}

// acquire takes one of the MaxInFlight slots.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.term:
		return c.terminal()
	}
}

// waitConn returns the authenticated connection, waiting for one if the
// client is between connections.
func (c *Client) waitConn(ctx context.Context) (*wsConn, error) {
	for {
		c.mu.Lock()
		err, cn, ready := c.termErr, c.cur, c.ready
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-c.term:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pause waits d, or until ctx ends or Close.
func (c *Client) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.term:
		return c.terminal()
	}
}

// retryable reports whether a refused request may simply be sent again
// later.
func retryable(e *protocol.Error, idempotent bool) bool {
	return e.Code == protocol.CodeRateLimited || (idempotent && e.Code == protocol.CodeUnavailable)
}

// retryDelay is how long to wait before retrying after e.
func (c *Client) retryDelay(e *protocol.Error) time.Duration {
	if e.RetryAfterMS > 0 {
		return time.Duration(e.RetryAfterMS) * time.Millisecond
	}
	return c.opts.BackoffMin
}

func marshalArgs(args any) (json.RawMessage, error) {
	if args == nil {
		return nil, nil
	}
	if raw, ok := args.(json.RawMessage); ok {
		return raw, nil
	}
	return json.Marshal(args)
}

// mustArgs encodes the SDK's own argument types, which cannot fail.
func mustArgs(args any) json.RawMessage {
	b, err := json.Marshal(args)
	if err != nil {
		panic("floodgate: encoding protocol args: " + err.Error())
	}
	return b
}

func decodeResult(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding the result: %w", err)
	}
	return nil
}
