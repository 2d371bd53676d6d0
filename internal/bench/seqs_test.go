package bench

import "testing"

func TestSeqTrackerInOrder(t *testing.T) {
	tr := newSeqTracker(10) // seqs up to 10 predate the run
	for s := uint64(11); s <= 20; s++ {
		if tr.Live(s) {
			t.Fatalf("seq %d counted as a duplicate", s)
		}
	}
	got := tr.tally(20, tr.Missing(20))
	want := Tally{Expected: 10}
	if got != want {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
}

func TestSeqTrackerDuplicates(t *testing.T) {
	tr := newSeqTracker(0)
	for _, s := range []uint64{1, 2, 2, 3, 5, 5, 4, 1} {
		tr.Live(s)
	}
	// 2, 5 and 1 came twice; 1 after the watermark passed it.
	if got := tr.tally(5, 0); got.Duplicates != 3 || got.Lost != 0 {
		t.Fatalf("tally %+v, want 3 duplicates and nothing lost", got)
	}
	// An event from before the run is a duplicate too.
	tr = newSeqTracker(7)
	if !tr.Live(7) {
		t.Error("a seq at or below the base must count as a duplicate")
	}
}

func TestSeqTrackerLossAndOutOfOrder(t *testing.T) {
	tr := newSeqTracker(0)
	for _, s := range []uint64{1, 3, 4, 7, 2, 9} {
		tr.Live(s)
	}
	// Received 1-4, 7, 9: the watermark is at 4.
	if c := tr.Contig(); c != 4 {
		t.Fatalf("contig %d, want 4", c)
	}
	if m := tr.Missing(10); m != 4 { // 5, 6, 8, 10
		t.Fatalf("missing %d up to 10, want 4", m)
	}
	if m := tr.Missing(6); m != 2 { // 5, 6
		t.Fatalf("missing %d up to 6, want 2", m)
	}
	if m := tr.Missing(3); m != 0 {
		t.Fatalf("missing %d up to 3, want 0", m)
	}
	got := tr.tally(8, tr.Missing(8))
	want := Tally{Expected: 8, Lost: 3, LiveMissing: 3, Beyond: 1} // lost 5, 6, 8; 9 is beyond the last ack
	if got != want {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
}

func TestSeqTrackerRecoverFillsGapsWithoutDuplicates(t *testing.T) {
	tr := newSeqTracker(0)
	for _, s := range []uint64{1, 2, 5, 6} {
		tr.Live(s)
	}
	missing := tr.Missing(6)
	// The final sync returns everything after the watermark, including
	// what already arrived live: that overlap is not a duplicate.
	for s := uint64(3); s <= 6; s++ {
		tr.Recover(s)
	}
	got := tr.tally(6, missing)
	want := Tally{Expected: 6, LiveMissing: 2, Recovered: 2}
	if got != want {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
	if c := tr.Contig(); c != 6 {
		t.Fatalf("contig %d after the sync, want 6", c)
	}
}

func TestSeqTrackerNothingSent(t *testing.T) {
	tr := newSeqTracker(3)
	if got := tr.tally(0, 0); got != (Tally{}) {
		t.Fatalf("tally %+v for a conversation nobody sent to, want zero", got)
	}
	tr.Live(4) // committed, but its ack never came back
	if got := tr.tally(3, 0); got != (Tally{Beyond: 1}) {
		t.Fatalf("tally %+v, want one message beyond the last ack", got)
	}
}

func TestTallyAdd(t *testing.T) {
	a := Tally{Expected: 1, Lost: 2, Duplicates: 3, LiveMissing: 4, Recovered: 5, Beyond: 6}
	if got := a.Add(a); got != (Tally{2, 4, 6, 8, 10, 12}) {
		t.Fatalf("%+v", got)
	}
}

func TestSeqTrackerLiveAfterRecoverIsLateNotDuplicate(t *testing.T) {
	tr := newSeqTracker(0)
	tr.Live(1)
	missing := tr.Missing(3)
	tr.Recover(2)
	tr.Recover(3)
	// Seq 2 was still queued at the server behind the sync reply; a second
	// live copy of seq 3 after that is a real duplicate.
	if tr.Live(2) {
		t.Fatal("a live event after the sync fetched it counted as a duplicate")
	}
	tr.Live(3)
	if !tr.Live(3) {
		t.Fatal("a second live event for seq 3 was not a duplicate")
	}
	got := tr.tally(3, missing)
	want := Tally{Expected: 3, LiveMissing: 2, Recovered: 0, Duplicates: 1}
	if got != want {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
}
