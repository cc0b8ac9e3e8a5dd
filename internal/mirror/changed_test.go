package mirror

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

// TestChangedNamesOnlyTheBatchKeys: with Changed, the owner is told the keys
// each write put or deleted (nil only for a full load), and the objects it
// sees hold every key in force at that revision.
func TestChangedNamesOnlyTheBatchKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(ctx, "a", []byte("1"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls [][]string
	var sizes []int
	m := New(st, Config{
		Decode: func(_ string, v []byte) (any, bool, error) { return string(v), true, nil },
		Changed: func(objects map[string]Object, keys []string, _ int64) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, slices.Clone(keys))
			sizes = append(sizes, len(objects))
		},
	})
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := st.Put(ctx, "b", []byte("2"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	rev, err := st.Delete(ctx, "a", store.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(wctx, rev); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 2 || calls[0] != nil {
		t.Fatalf("Changed calls %q, want a full load (nil) first", calls)
	}
	var told []string
	for _, c := range calls[1:] {
		told = append(told, c...)
	}
	if !slices.Equal(told, []string{"b", "a"}) || sizes[len(sizes)-1] != 1 {
		t.Errorf("Changed told keys %q with %d objects at the end, want [b a] and 1 object", told, sizes[len(sizes)-1])
	}
	objects, _ := m.Snapshot()
	if _, ok := objects["b"]; !ok || len(objects) != 1 {
		t.Errorf("Snapshot = %v, want only b", objects)
	}
}
