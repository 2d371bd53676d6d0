package transport

import "sync/atomic"

// Stats is a snapshot of a Server's counters, taken by Server.Stats. Every
// field but Conns only grows. The fields are read one at a time, so a
// snapshot taken while connections are busy need not be consistent across
// fields.
type Stats struct {
	// Conns is the number of established connections whose Session.Closed
	// has not returned yet.
	Conns int64
	// Accepted counts established WebSocket connections.
	Accepted uint64
	// Rejected counts upgrades refused with HTTP 503 because MaxConns
	// connections were being served.
	Rejected uint64
	// UpgradeErrors counts requests whose WebSocket handshake failed.
	UpgradeErrors uint64
	// FramesIn counts complete messages delivered to Session.Frame.
	FramesIn uint64
	// BytesIn counts bytes of client frames read, headers included;
	// payloads of frames refused as too big are not counted.
	BytesIn uint64
	// FramesOut counts frames from Send written to a socket.
	FramesOut uint64
	// BytesOut counts bytes written to sockets, headers and control frames
	// included.
	BytesOut uint64
	// SlowConsumerCloses counts connections closed because a Send
	// overflowed QueueBytes.
	SlowConsumerCloses uint64
	// OversizeCloses counts connections closed with 1009 because a client
	// message exceeded MaxFrameBytes.
	OversizeCloses uint64
	// IdleCloses counts connections closed by their idle timeout.
	IdleCloses uint64
	// WriteErrors counts socket writes that failed or missed their
	// deadline.
	WriteErrors uint64
}

// counters are the live values behind Stats.
type counters struct {
	conns         atomic.Int64
	accepted      atomic.Uint64
	rejected      atomic.Uint64
	upgradeErrors atomic.Uint64
	framesIn      atomic.Uint64
	bytesIn       atomic.Uint64
	framesOut     atomic.Uint64
	bytesOut      atomic.Uint64
	slowConsumers atomic.Uint64
	oversize      atomic.Uint64
	idle          atomic.Uint64
	writeErrors   atomic.Uint64
	// evented counts connections served by the event loops, for tests.
	evented atomic.Uint64
}

// Stats returns a snapshot of the server's counters. It is cheap enough to
// call on every metrics scrape.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Conns:              c.conns.Load(),
		Accepted:           c.accepted.Load(),
		Rejected:           c.rejected.Load(),
		UpgradeErrors:      c.upgradeErrors.Load(),
		FramesIn:           c.framesIn.Load(),
		BytesIn:            c.bytesIn.Load(),
		FramesOut:          c.framesOut.Load(),
		BytesOut:           c.bytesOut.Load(),
		SlowConsumerCloses: c.slowConsumers.Load(),
		OversizeCloses:     c.oversize.Load(),
		IdleCloses:         c.idle.Load(),
		WriteErrors:        c.writeErrors.Load(),
	}
}
