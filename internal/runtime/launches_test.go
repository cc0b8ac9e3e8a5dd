package runtime

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestLookupWaitsForLaunchesInProgress: a miss waits for the launches in
// progress, sees what they recorded, and gives up (fails closed) when the
// context ends first; settled is idempotent and leaves nothing behind.
func TestLookupWaitsForLaunchesInProgress(t *testing.T) {
	var l Launches
	var recorded atomic.Bool
	find := func() (string, bool) { return "key", recorded.Load() }
	if _, ok := Lookup(context.Background(), &l, find); ok {
		t.Fatal("found with nothing launched")
	}
	settled := l.Begin()
	go func() {
		time.Sleep(50 * time.Millisecond)
		recorded.Store(true)
		settled()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if k, ok := Lookup(ctx, &l, find); !ok || k != "key" {
		t.Fatalf("Lookup during a launch = %q, %v", k, ok)
	}
	settled()
	if len(l.pending) != 0 {
		t.Fatalf("%d launches still pending", len(l.pending))
	}
	recorded.Store(false)
	defer l.Begin()() // never settles in time
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, ok := Lookup(short, &l, find); ok {
		t.Fatal("found an instance nobody recorded")
	}
}
