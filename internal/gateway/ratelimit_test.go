package gateway

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	var b bucket
	t0 := time.Unix(100, 0)
	for i := range 5 {
		if ok, _ := b.take(t0, 10, 5); !ok {
			t.Fatalf("take %d within burst refused", i)
		}
	}
	ok, wait := b.take(t0, 10, 5)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("take past burst = %v, %v; want refused, 100ms", ok, wait)
	}
	if b.refused != 1 {
		t.Fatalf("refused = %d", b.refused)
	}
	if ok, _ := b.take(t0.Add(100*time.Millisecond), 10, 5); !ok {
		t.Fatal("take after refill refused")
	}
	if b.refused != 0 {
		t.Fatal("refused not reset")
	}
	// A long pause refills only up to the burst.
	t1 := t0.Add(time.Hour)
	for range 5 {
		b.take(t1, 10, 5)
	}
	if ok, _ := b.take(t1, 10, 5); ok {
		t.Fatal("bucket exceeded its burst after a pause")
	}
}
