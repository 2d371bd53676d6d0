// Package client is the Go SDK of Floodgate, a real-time messaging server.
// It implements the client side of protocol v1 (docs/protocol.md): one
// WebSocket to a gateway, kept up across network failures, node restarts
// and whole-cluster outages, with every conversation resumed exactly where
// the application left it. It connects to a gateway given by URL, or finds
// one through a cluster's router (see Routing).
//
// # Usage
//
//	c, err := client.Dial(ctx, client.Options{
//		URL: "wss://chat.example.com/v1/ws", // or, for a cluster, Router: "https://route.example.com"
//		App: "app_3kq9",
//		Token: func(ctx context.Context) (string, error) {
//			return myBackend.FloodgateToken(ctx) // a fresh JWT on every connect
//		},
//		Cursors: loadCursors(), // where the previous run stopped, if any
//	})
//	if err != nil {
//		return err // *client.CloseError: refused for good (bad token, app disabled)
//	}
//	defer c.Close()
//
//	go func() {
//		for ev := range c.Events() {
//			if ev.Type == client.EventMessage {
//				show(ev.Message)
//				saveCursors(c.Cursors())
//			}
//		}
//	}()
//	conv, err := c.Direct(ctx, "bob")
//	if err != nil {
//		return err
//	}
//	_, err = c.Send(ctx, conv.ID, map[string]string{"text": "hi"})
//
// # Delivery
//
// Messages of each conversation arrive on Events exactly once and in seq
// order, including the application's own (the server echoes them), whether
// they arrive live or are fetched by sync after a reconnect, a gap on the
// server's bus, or a "resync" from the server. Cursors returns how far each
// conversation has been delivered, for the application to persist.
//
// Per conversation, the client keeps the seq of the last message it
// delivered. A live message that follows it is delivered; an older one is a
// duplicate and dropped; a newer one reveals a gap: it is held, and that
// conversation is synced from the last delivered seq before delivery goes
// on. Where a conversation starts is never guessed from a live message: it
// is given by Options.Cursors, by the last_seq a room join returns, or, for
// a direct or group conversation the client has never seen, by the first
// message sync returns for it (the server starts it where the user joined
// it; a message with seq 1 is its own start).
//
// # Reconnection
//
// A single goroutine owns the connection and never holds two at once. It
// follows the server's directives (reconnect, backoff, redirect, stop) and,
// without one, the close code's range; between attempts it waits an
// exponential back-off with full jitter (BackoffMin doubling up to
// BackoffMax, each wait uniform between zero and that bound), which is
// reset only once a connection has stayed up for a while, so a fleet of
// clients comes back gently after an outage. After each authentication it
// joins the application's rooms again, renews presence subscriptions, and
// syncs every conversation it follows. An upgrade refused with HTTP 503
// and Retry-After is the exception: the client comes back after
// Retry-After plus up to as much again, and the back-off neither adds to
// that nor grows, so a node shedding a reconnect storm sets its clients'
// schedule.
//
// # Routing
//
// A cluster's clients set Options.Router instead of URL: before each
// connection attempt the client asks the router (GET
// {Router}/v1/route?app=App) for a gateway, and dials the answer's primary,
// then its secondary if the primary cannot be reached or refuses the
// upgrade (HTTP 503); a session that ended after auth starts over from the
// primary. The answer is cached for its ttl_ms, so a client that reconnects
// often does not ask the router each time. A redirect (the "redirect"
// directive, or a close in 4200–4299) drops the cached answer: the client
// dials the directive's url if it has one, and otherwise (or if that
// fails) asks the router again, skipping, for that attempt, the node that
// sent it away even if the router still names it. A route none of whose
// gateways can be dialled is dropped too, ahead of its TTL. A "reconnect"
// (4000–4099), a back-off or a broken connection keeps it.
//
// The router is a hint, never a single point of failure: when it is
// unreachable, answers an error, or answers 503, the client dials the
// gateways of the last answer it received, however old, and asks the
// router again only after the 503's Retry-After plus jitter (or a
// back-off), so that a dead router costs reconnections nothing. Only a
// client that never received an answer waits for the router: the usual
// full-jitter back-off, or Retry-After plus up to as much again after a
// 503. An https router may only name wss gateways: an answer (or a
// redirect) that would send the token over plain ws is refused.
//
// # Calls
//
// Every method takes a context that bounds it, including the wait for a
// connection. Calls that are safe to repeat (Send and SendWithID thanks to
// the client message id, reads, Direct, JoinRoom, MarkRead…) are resent on
// the next connection if the reply is lost; the others (CreateGroup,
// CreateRoom, AddMembers, RemoveMembers, Leave, Call) then fail with
// ErrConnectionLost, because their outcome is unknown.
package client
