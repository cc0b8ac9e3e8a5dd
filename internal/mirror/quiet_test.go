package mirror

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

// TestIgnoredKeysRebuildNothing: writes to keys Decode declines (the audit
// trail's) advance the revision WaitFor sees without calling OnChange.
func TestIgnoredKeysRebuildNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var calls atomic.Int64
	m := New(st, Config{
		Decode: func(key string, v []byte) (any, bool, error) {
			return string(v), strings.HasPrefix(key, "keep/"), nil
		},
		OnChange: func(map[string]Object, int64) { calls.Add(1) },
	})
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()

	before := calls.Load()
	var last int64
	for i := range 20 {
		if last, err = st.Put(ctx, "audit/"+string(rune('a'+i)), []byte("x"), store.MustNotExist); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.WaitFor(wctx, last); err != nil {
		t.Fatalf("WaitFor an ignored key's revision: %v", err)
	}
	if got := calls.Load() - before; got != 0 {
		t.Errorf("OnChange called %d times for ignored keys, want 0", got)
	}
	rev, err := st.Put(ctx, "keep/a", []byte("1"), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(wctx, rev); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load() - before; got != 1 {
		t.Errorf("OnChange called %d times after a kept key changed, want 1", got)
	}
	if objects, applied := m.Snapshot(); applied < rev || objects["keep/a"].Value != "1" {
		t.Errorf("snapshot at %d: %v", applied, objects)
	}
}
