// Package bench is `floodgate bench`, the load tool: it drives a running
// Floodgate (one node or a cluster, ws:// or wss://) through the public
// client protocol the way real clients do, and reports what the clients
// saw (rates, latency percentiles, loss and duplicates) next to what the
// servers paid (RSS, heap, goroutines, CPU, file descriptors, from their
// ops listener's /metrics or from /proc) and what the tool itself paid,
// since both share the machine.
//
// # Scenarios
//
//   - idle: N authenticated connections held until the server's RSS stops
//     dropping; connection rate, handshake latency, memory and goroutines
//     per connection.
//   - connect: connection + auth rate; a second wave resumes TLS sessions
//     (--tls) and/or syncs after auth (--resume).
//   - direct, room, group: paced messages (open loop, so a slow server
//     does not slow the offered load); ack and delivery latency, loss and
//     duplicates.
//   - storm: SDK clients (package client: its back-off and resume are what
//     is tested) through a server restart; time until every client is
//     back and has resumed.
//
// Every scenario but storm uses a lean hand-written client (rawConn): one
// socket, a 1 KiB read buffer and one reader goroutine per connection, so
// that the tool costs less per connection than the server it measures.
//
// # Processes
//
// One process may hold about 19,000 connections (file descriptors), so
// --procs N splits the plan into N shards of contiguous units (a unit is
// what must stay together: a pair, a group, a storm pair) and runs each in
// a child: the same binary re-executed as `floodgate bench --bench-child`.
// The coordinator and a shard exchange JSON lines: on the child's stdin
// the shard, then commands (go, stop, expect, abort); on its stdout
// progress every 250 ms, phases (ready, running, quiesced) and the
// result. A shard in the coordinator's own process speaks the same
// messages over channels (or, in tests, over in-memory pipes, RunChild
// and all). Every shard, in whatever process, stops by itself at the
// plan's deadline, and a child also when its stdin closes; on Linux the
// kernel kills children whose coordinator died (Pdeathsig).
//
// # Measurement
//
// Latencies go into log-linear histograms (HdrHistogram style, under 1 %
// error) that merge exactly, bucket by bucket, across processes: the
// report's percentiles are those of every recording, never averages of
// per-process percentiles. Senders stamp their wall clock in the message
// body; receivers (in the same process for direct and group, on the same
// machine for rooms) subtract it from theirs.
//
// Loss and duplicates are accounted by sequence number: seqs are gapless
// per conversation, so each receiving connection tracks per conversation
// the seq it had before the run, the contiguous watermark and the few
// seqs above it. When the measured phase ends the shards stop sending and
// report the last seq acknowledged per conversation; the coordinator
// takes the maximum over all shards and sends it back; each receiver then
// waits for everything up to it, heals what is still missing with a sync
// as a real client would (counted separately), and counts what remains
// missing as lost and any seq received twice as a duplicate. Both must be
// zero for the run to pass.
package bench
