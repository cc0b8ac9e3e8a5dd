package mirror

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

func TestMirrorFollowsStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(ctx, "keep/a", []byte("1"), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		lastLen int
		calls   int
	)
	m := New(st, Config{
		Decode: func(key string, v []byte) (any, bool, error) {
			return string(v), strings.HasPrefix(key, "keep/"), nil
		},
		OnChange: func(objects map[string]Object, _ int64) {
			mu.Lock()
			lastLen, calls = len(objects), calls+1
			mu.Unlock()
		},
	})
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)

	rev, err := st.Put(ctx, "keep/b", []byte("2"), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	// An unrelated key still advances the revision the mirror has applied.
	otherRev, err := st.Put(ctx, "ignore/x", []byte("3"), store.MustNotExist)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := m.WaitFor(wctx, otherRev); err != nil {
		t.Fatalf("WaitFor(%d): %v", otherRev, err)
	}
	objects, applied := m.Snapshot()
	if applied < rev || objects["keep/b"].Value != "2" || objects["keep/b"].Revision != rev {
		t.Fatalf("snapshot at %d = %v, want keep/b=2 at %d", applied, objects, rev)
	}
	if _, ok := objects["ignore/x"]; ok {
		t.Errorf("mirror kept a key Decode declined")
	}
	delRev, err := st.Delete(ctx, "keep/a", store.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(wctx, delRev); err != nil {
		t.Fatal(err)
	}
	objects, _ = m.Snapshot()
	if _, ok := objects["keep/a"]; ok {
		t.Errorf("deleted key still mirrored")
	}
	mu.Lock()
	defer mu.Unlock()
	if lastLen != 1 || calls < 2 {
		t.Errorf("OnChange saw %d objects over %d calls, want 1 object and at least 2 calls", lastLen, calls)
	}
}

func TestWaitForHonoursContext(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := New(st, Config{Decode: func(string, []byte) (any, bool, error) { return nil, false, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.WaitFor(ctx, 1_000_000); err == nil {
		t.Fatal("WaitFor for a revision never written returned nil")
	}
}

// TestUndecodableValueFailsClosed: a value that cannot be decoded is dropped,
// never kept in an old or half-read form.
func TestUndecodableValueFailsClosed(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rev, _ := st.Put(ctx, "k", []byte("good"), store.MustNotExist)
	m := New(st, Config{Decode: func(_ string, v []byte) (any, bool, error) {
		if string(v) == "bad" {
			return nil, false, errBad
		}
		return string(v), true, nil
	}})
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	rev, _ = st.Put(ctx, "k", []byte("bad"), rev)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.WaitFor(wctx, rev); err != nil {
		t.Fatal(err)
	}
	if objects, _ := m.Snapshot(); len(objects) != 0 {
		t.Errorf("undecodable value left %v in the mirror", objects)
	}
}

var errBad = errors.New("bad value")
