package client

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/protocol"
)

// A seq step acts on the machine and says what it must deliver ("conv:seq",
// in order) and, optionally, what else must hold afterwards.
type seqStep struct {
	desc  string
	act   func(s *sequencer) []protocol.Message
	want  []string
	check func(s *sequencer) error
}

func msg(conv string, seq uint64) protocol.Message {
	return protocol.Message{Conv: conv, Seq: seq, Body: []byte(`{}`)}
}

func msgs(conv string, seqs ...uint64) []protocol.Message {
	out := make([]protocol.Message, len(seqs))
	for i, s := range seqs {
		out[i] = msg(conv, s)
	}
	return out
}

func live(conv string, seq uint64, want ...string) seqStep {
	return seqStep{desc: fmt.Sprintf("live %s:%d", conv, seq), act: func(s *sequencer) []protocol.Message { return s.Live(msg(conv, seq)) }, want: want}
}

func joining(conv string) seqStep {
	return seqStep{desc: "joining " + conv, act: func(s *sequencer) []protocol.Message { s.Joining(conv); return nil }}
}

func joined(conv string, last uint64, want ...string) seqStep {
	return seqStep{desc: fmt.Sprintf("joined %s at %d", conv, last), act: func(s *sequencer) []protocol.Message { return s.Joined(conv, last) }, want: want}
}

// begin checks the next sync request; nil args means none is wanted.
func begin(maxConvs int, args *protocol.SyncArgs) seqStep {
	return seqStep{desc: "begin sync", act: func(*sequencer) []protocol.Message { return nil }, check: func(s *sequencer) error {
		got, ok := s.BeginSync(maxConvs)
		if args == nil {
			if ok {
				return fmt.Errorf("BeginSync = %+v, want none", got)
			}
			return nil
		}
		want := *args
		want.Limit = syncLimit
		if !ok || !reflect.DeepEqual(got, want) {
			return fmt.Errorf("BeginSync = %+v, %v; want %+v", got, ok, want)
		}
		return nil
	}}
}

func apply(res protocol.SyncResult, want ...string) seqStep {
	return seqStep{desc: "apply sync", want: want, act: func(s *sequencer) []protocol.Message {
		out, _ := s.ApplySync(res)
		return out
	}}
}

func applyGone(res protocol.SyncResult, gone ...string) seqStep {
	return seqStep{desc: "apply sync with gone", act: func(*sequencer) []protocol.Message { return nil }, check: func(s *sequencer) error {
		_, g := s.ApplySync(res)
		if !slices.Equal(g, gone) {
			return fmt.Errorf("gone = %v, want %v", g, gone)
		}
		return nil
	}}
}

func do(desc string, f func(s *sequencer)) seqStep {
	return seqStep{desc: desc, act: func(s *sequencer) []protocol.Message { f(s); return nil }}
}

func cursorsAre(want map[string]uint64) seqStep {
	return seqStep{desc: "cursors", act: func(*sequencer) []protocol.Message { return nil }, check: func(s *sequencer) error {
		if got := s.Cursors(); !maps.Equal(got, want) {
			return fmt.Errorf("Cursors = %v, want %v", got, want)
		}
		return nil
	}}
}

func syncWanted(want bool) seqStep {
	return seqStep{desc: "sync wanted?", act: func(*sequencer) []protocol.Message { return nil }, check: func(s *sequencer) error {
		if got := s.SyncWanted(); got != want {
			return fmt.Errorf("SyncWanted = %v, want %v", got, want)
		}
		return nil
	}}
}

func sc(conv string, seqs ...uint64) protocol.SyncConv {
	c := protocol.SyncConv{Conv: conv, Kind: protocol.KindGroup, Messages: msgs(conv, seqs...)}
	if len(seqs) > 0 {
		c.LastSeq = seqs[len(seqs)-1]
	}
	return c
}

func hasMore(c protocol.SyncConv) protocol.SyncConv { c.HasMore = true; return c }

func syncRes(more bool, convs ...protocol.SyncConv) protocol.SyncResult {
	return protocol.SyncResult{Convs: convs, More: more}
}

func TestSequencer(t *testing.T) {
	tests := []struct {
		name    string
		cursors map[string]uint64
		maxBuf  int
		steps   []seqStep
	}{
		{
			name:  "in order from seq 1 of a new conversation",
			steps: []seqStep{live("a", 1, "a:1"), live("a", 2, "a:2"), live("a", 3, "a:3"), syncWanted(false), cursorsAre(map[string]uint64{"a": 3})},
		},
		{
			name:    "duplicates are dropped",
			cursors: map[string]uint64{"a": 5},
			steps:   []seqStep{live("a", 5), live("a", 4), live("a", 6, "a:6"), live("a", 6), syncWanted(false)},
		},
		{
			name:    "live gap is buffered, asks a sync of the conversation, and drains in order",
			cursors: map[string]uint64{"a": 5},
			steps: []seqStep{
				live("a", 7), live("a", 8), live("a", 7), syncWanted(true),
				live("a", 6, "a:6", "a:7", "a:8"),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 8}}),
			},
		},
		{
			name:    "live gap healed by sync",
			cursors: map[string]uint64{"a": 5, "b": 1},
			steps: []seqStep{
				live("a", 8),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 5}}),
				live("a", 9),
				apply(syncRes(false, sc("a", 6, 7, 8)), "a:6", "a:7", "a:8", "a:9"),
				cursorsAre(map[string]uint64{"a": 9, "b": 1}),
				// 9 asked for a sync while one was in flight; asking once
				// more is cheaper than proving it unnecessary.
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 9}}),
				apply(syncRes(false)),
				syncWanted(false),
			},
		},
		{
			name:    "buffer overflow drops the buffer and sync brings it back",
			cursors: map[string]uint64{"a": 0},
			maxBuf:  2,
			steps: []seqStep{
				live("a", 3), live("a", 4), live("a", 5),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 0}}),
				apply(syncRes(false, sc("a", 1, 2, 3, 4, 5)), "a:1", "a:2", "a:3", "a:4", "a:5"),
			},
		},
		{
			name: "unknown group starts with the first message sync returns",
			steps: []seqStep{
				live("g", 10), live("g", 12), syncWanted(true),
				cursorsAre(map[string]uint64{}),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(false, sc("g", 10, 11)), "g:10", "g:11", "g:12"),
				cursorsAre(map[string]uint64{"g": 12}),
			},
		},
		{
			name: "held messages below the start sync gives are dropped",
			steps: []seqStep{
				live("g", 4),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(false, sc("g", 5, 6)), "g:5", "g:6"),
			},
		},
		{
			name: "unknown conversation not in a complete full sync is dropped",
			steps: []seqStep{
				live("g", 10),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(false)),
				cursorsAre(map[string]uint64{}),
				syncWanted(false),
				live("g", 11), syncWanted(true),
			},
		},
		{
			name: "a hold that arrived after the full sync began survives it",
			steps: []seqStep{
				do("full sync wanted", (*sequencer).RequestFullSync),
				begin(0, &protocol.SyncArgs{All: true}),
				live("g", 10),
				apply(syncRes(false)),
				syncWanted(true),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(false, sc("g", 10)), "g:10"),
			},
		},
		{
			name: "a full sync with more does not drop holds",
			steps: []seqStep{
				live("g", 10),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(true, sc("h", 1)), "h:1"),
				begin(0, &protocol.SyncArgs{All: true, Convs: map[string]uint64{"h": 1}}),
				apply(syncRes(false, sc("g", 10)), "g:10"),
			},
		},
		{
			name: "room starts at the join's last_seq; messages during the join wait for it",
			steps: []seqStep{
				joining("r"),
				live("r", 6), live("r", 5), syncWanted(false),
				joined("r", 5, "r:6"),
				live("r", 7, "r:7"),
				cursorsAre(map[string]uint64{"r": 7}),
			},
		},
		{
			name: "room joined with a gap after last_seq asks a sync",
			steps: []seqStep{
				joining("r"), live("r", 8),
				joined("r", 5), syncWanted(true),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"r": 5}}),
				apply(syncRes(false, sc("r", 6, 7)), "r:6", "r:7", "r:8"),
			},
		},
		{
			name:    "re-joined room keeps its cursor and syncs from it",
			cursors: map[string]uint64{"r": 3},
			steps: []seqStep{
				joining("r"), joined("r", 10), syncWanted(true),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"r": 3}}),
			},
		},
		{
			name: "a room not joined on this connection is not listed",
			steps: []seqStep{
				joining("r"), joined("r", 2), live("r", 3, "r:3"),
				do("disconnect", (*sequencer).Disconnected),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(false)),
				joining("r"), joined("r", 9), begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"r": 3}}),
			},
		},
		{
			name: "failed join forgets a room that never started",
			steps: []seqStep{
				joining("r"), live("r", 3), do("join failed", func(s *sequencer) { s.JoinFailed("r") }),
				cursorsAre(map[string]uint64{}), syncWanted(false),
			},
		},
		{
			name: "a left room ignores late messages until joined again",
			steps: []seqStep{
				joining("r"), joined("r", 0), live("r", 1, "r:1"),
				do("leave", func(s *sequencer) { s.Forget("r", true) }),
				live("r", 2), live("r", 3), syncWanted(false),
				cursorsAre(map[string]uint64{}),
				joining("r"), joined("r", 5), live("r", 6, "r:6"),
				do("leave", func(s *sequencer) { s.Forget("r", true) }),
				do("disconnect", (*sequencer).Disconnected),
				syncWanted(true),
				begin(0, &protocol.SyncArgs{All: true}), // the left room is not listed
			},
		},
		{
			name:    "gone conversations are dropped",
			cursors: map[string]uint64{"g": 3, "h": 1},
			steps: []seqStep{
				begin(0, nil),
				do("want full", (*sequencer).RequestFullSync),
				begin(0, &protocol.SyncArgs{All: true, Convs: map[string]uint64{"g": 3, "h": 1}}),
				applyGone(syncRes(false, protocol.SyncConv{Conv: "g", Gone: true}), "g"),
				cursorsAre(map[string]uint64{"h": 1}),
			},
		},
		{
			name:    "has_more pages until done",
			cursors: map[string]uint64{"a": 0},
			steps: []seqStep{
				do("want", func(s *sequencer) { s.RequestSync("a") }),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 0}}),
				apply(syncRes(false, hasMore(sc("a", 1, 2))), "a:1", "a:2"),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 2}}),
				apply(syncRes(false, sc("a", 3)), "a:3"),
				syncWanted(false),
			},
		},
		{
			name:    "more on a partial sync asks again the conversations left out",
			cursors: map[string]uint64{"a": 0, "b": 0},
			steps: []seqStep{
				do("want", func(s *sequencer) { s.RequestSync("a"); s.RequestSync("b") }),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 0, "b": 0}}),
				apply(syncRes(true, sc("a", 1)), "a:1"),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"b": 0}}),
			},
		},
		{
			name:    "a hole inside a sync reply is skipped, not asked forever",
			cursors: map[string]uint64{"a": 0},
			steps: []seqStep{
				live("a", 5),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 0}}),
				apply(syncRes(false, sc("a", 2, 3)), "a:2", "a:3"),
				syncWanted(true),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 3}}),
				apply(syncRes(false, sc("a", 7)), "a:5", "a:7"),
				syncWanted(false),
			},
		},
		{
			name:    "a full sync is split by max_sync_convs, all on the last chunk",
			cursors: map[string]uint64{"a": 1, "b": 2, "c": 3},
			steps: []seqStep{
				do("want full", (*sequencer).RequestFullSync),
				begin(2, &protocol.SyncArgs{Convs: map[string]uint64{"a": 1, "b": 2}}),
				begin(2, nil), // one at a time
				apply(syncRes(false)),
				begin(2, &protocol.SyncArgs{Convs: map[string]uint64{"c": 3}, All: true}),
				apply(syncRes(false)),
				syncWanted(false),
			},
		},
		{
			name:    "an aborted sync is asked again",
			cursors: map[string]uint64{"a": 1},
			steps: []seqStep{
				live("a", 3),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 1}}),
				do("abort", (*sequencer).AbortSync),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"a": 1}}),
				do("drop", (*sequencer).DropSync),
				syncWanted(false),
			},
		},
		{
			name:    "disconnect drops buffers and unstarted conversations, and wants a full sync",
			cursors: map[string]uint64{"a": 1},
			steps: []seqStep{
				live("a", 3), live("g", 5), joining("r"),
				do("disconnect", (*sequencer).Disconnected),
				cursorsAre(map[string]uint64{"a": 1}),
				begin(0, &protocol.SyncArgs{All: true, Convs: map[string]uint64{"a": 1}}),
				apply(syncRes(false, sc("a", 2, 3)), "a:2", "a:3"),
			},
		},
		{
			name: "sync does not start a room whose join is in flight",
			steps: []seqStep{
				joining("r"),
				do("want full", (*sequencer).RequestFullSync),
				begin(0, &protocol.SyncArgs{All: true}),
				apply(syncRes(false, sc("r", 4, 5))),
				joined("r", 5), live("r", 6, "r:6"),
			},
		},
		{
			name:   "overflow while joining asks a sync after the join",
			maxBuf: 1,
			steps: []seqStep{
				joining("r"), live("r", 7), live("r", 8),
				joined("r", 5), syncWanted(true),
				begin(0, &protocol.SyncArgs{Convs: map[string]uint64{"r": 5}}),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxBuf := tt.maxBuf
			if maxBuf == 0 {
				maxBuf = 16
			}
			s := newSequencer(tt.cursors, maxBuf)
			for i, st := range tt.steps {
				got := st.act(s)
				if g := fmtMsgs(got); !slices.Equal(g, st.want) {
					t.Fatalf("step %d (%s): delivered %v, want %v", i, st.desc, g, st.want)
				}
				if st.check != nil {
					if err := st.check(s); err != nil {
						t.Fatalf("step %d (%s): %v", i, st.desc, err)
					}
				}
			}
		})
	}
}

func fmtMsgs(ms []protocol.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Conv+":"+strconv.FormatUint(m.Seq, 10))
	}
	return out
}

// TestSequencerExactlyOnceInOrder throws live messages with drops,
// duplicates and reordering at the machine, heals with syncs, and checks
// that every message is delivered exactly once and in order.
func TestSequencerExactlyOnceInOrder(t *testing.T) {
	const n = 200
	s := newSequencer(map[string]uint64{"a": 0}, 8)
	var got []string
	deliver := func(ms []protocol.Message) {
		for _, m := range ms {
			got = append(got, strconv.FormatUint(m.Seq, 10))
		}
	}
	syncNow := func(upTo uint64) {
		for {
			args, ok := s.BeginSync(0)
			if !ok {
				return
			}
			from := args.Convs["a"]
			var res protocol.SyncResult
			if from < upTo {
				last := min(from+syncLimit/10, upTo) // small pages, to exercise has_more
				var seqs []uint64
				for q := from + 1; q <= last; q++ {
					seqs = append(seqs, q)
				}
				c := sc("a", seqs...)
				c.HasMore = last < upTo
				res.Convs = append(res.Convs, c)
			}
			out, _ := s.ApplySync(res)
			deliver(out)
		}
	}
	for q := uint64(1); q <= n; q++ {
		switch {
		case q%7 == 0: // dropped by the bus
		case q%5 == 0: // arrives twice, late
			deliver(s.Live(msg("a", q-1)))
			deliver(s.Live(msg("a", q)))
			deliver(s.Live(msg("a", q)))
		default:
			deliver(s.Live(msg("a", q)))
		}
		if q%13 == 0 {
			syncNow(q)
		}
	}
	syncNow(n)
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i + 1)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("delivered\n%v\nwant\n%v", got, want)
	}
}
