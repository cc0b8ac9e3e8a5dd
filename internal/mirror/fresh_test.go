package mirror

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

// flakyStore fails List while down is set, like an unreachable etcd.
type flakyStore struct {
	store.Store
	down atomic.Bool
}

func (s *flakyStore) List(ctx context.Context, prefix string) ([]store.Entry, int64, error) {
	if s.down.Load() {
		<-ctx.Done() // a frozen server: the read hangs until its deadline
		return nil, 0, errors.New("store unreachable")
	}
	return s.Store.List(ctx, prefix)
}

func TestFreshnessFailsClosedAndRecovers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := &flakyStore{Store: b}
	m := New(st, Config{
		Decode: func(string, []byte) (any, bool, error) { return nil, true, nil },
		// Generous against a loaded machine (a heartbeat every 20ms must
		// not be late by the bound), and still far below the waits below.
		MaxStaleness: time.Second,
	})
	if m.Fresh() {
		t.Fatal("fresh before the first sync")
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !m.Fresh() || !m.StoreReachable() {
		t.Fatal("not fresh right after sync")
	}
	go m.Run(ctx)
	go m.Keep(ctx, 20*time.Millisecond)

	// Writes keep it fresh (the heartbeat waits for the watch to apply them).
	for i := range 10 {
		if _, err := b.Put(ctx, "k", []byte{byte(i)}, store.AnyRevision); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if !m.Fresh() {
			t.Fatalf("went stale with a reachable store (last confirmed %s ago)", m.LastConfirmed())
		}
	}

	st.down.Store(true)
	down := time.Now()
	// Stale once the bound has passed: well within twice the bound.
	waitUntil(t, 2*time.Second, func() bool { return !m.Fresh() })
	if d := time.Since(down); d < 500*time.Millisecond {
		t.Errorf("stale %s after the store went away, before the 1s bound could pass", d)
	}
	// The last answer came a little after the last confirmation started.
	waitUntil(t, 2*time.Second, func() bool { return !m.StoreReachable() })
	st.down.Store(false)
	waitUntil(t, 2*time.Second, m.Fresh)
}

func TestAlwaysFresh(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := New(b, Config{Decode: func(string, []byte) (any, bool, error) { return nil, true, nil }})
	m.AlwaysFresh()
	if !m.Fresh() || !m.StoreReachable() || m.LastConfirmed() != 0 {
		t.Fatal("AlwaysFresh mirror not fresh")
	}
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
