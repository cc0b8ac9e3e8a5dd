package certstore

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

func newStorages(t *testing.T, n int) []*Storage {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var out []*Storage
	for i := range n {
		s := New(st, string(rune('a'+i)))
		s.lease = time.Second // short, but not shorter than a loaded machine's pauses
		out = append(out, s)
	}
	return out
}

func TestValues(t *testing.T) {
	ctx := context.Background()
	s := newStorages(t, 1)[0]
	if _, err := s.Load(ctx, "certificates/ca/a.example/a.example.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key = %v, want fs.ErrNotExist", err)
	}
	for _, k := range []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key", "certificates/ca/b.example/b.example.crt", "acme/ca/users/x/x.json"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Load(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil || string(b) != "v:certificates/ca/a.example/a.example.key" {
		t.Fatalf("Load = %q, %v", b, err)
	}
	info, err := s.Stat(ctx, "certificates/ca/a.example/a.example.crt")
	if err != nil || !info.IsTerminal || info.Size != int64(len("v:certificates/ca/a.example/a.example.crt")) || time.Since(info.Modified) > time.Minute {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "certificates/ca"); err != nil || info.IsTerminal {
		t.Fatalf("Stat of a directory = %+v, %v", info, err)
	}
	if !s.Exists(ctx, "certificates") || s.Exists(ctx, "certificates/c") || s.Exists(ctx, "certificates/ca/a.exam") {
		t.Fatal("Exists disagrees with what is stored")
	}
	got, err := s.List(ctx, "certificates/ca", false)
	if want := []string{"certificates/ca/a.example", "certificates/ca/b.example"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %v, %v; want %v", got, err, want)
	}
	got, err = s.List(ctx, "certificates", true)
	want := []string{"certificates/ca", "certificates/ca/a.example", "certificates/ca/a.example/a.example.crt",
		"certificates/ca/a.example/a.example.key", "certificates/ca/b.example", "certificates/ca/b.example/b.example.crt"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("recursive List = %v, %v; want %v", got, err, want)
	}
	if _, err := s.List(ctx, "nothing", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of nothing = %v, want fs.ErrNotExist", err)
	}
	if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/a.example/a.example.key") || !s.Exists(ctx, "certificates/ca/b.example/b.example.crt") {
		t.Fatal("Delete of a directory removed too little or too much")
	}
	if err := s.Delete(ctx, "certificates/none"); err != nil {
		t.Fatalf("Delete of a missing key = %v, want nil", err)
	}
}

// Attacker's view: certmagic's keys come partly from names in TLS
// handshakes; none can climb out of the ACME prefix into Usher's state.
func TestKeysStayUnderPrefix(t *testing.T) {
	ctx := context.Background()
	s := newStorages(t, 1)[0]
	for _, k := range []string{"../credentials/x", "/abs", "a/../../b", "a//b", "a/./b", "a/"} {
		if err := s.Store(ctx, k, []byte("x")); err == nil {
			t.Errorf("Store(%q) accepted", k)
		}
	}
}

func TestLockExcludesOthers(t *testing.T) {
	ctx := context.Background()
	ss := newStorages(t, 2)
	a, b := ss[0], ss[1]
	if ok, err := a.TryLock(ctx, "issue_cert_x"); !ok || err != nil {
		t.Fatalf("first TryLock = %v, %v", ok, err)
	}
	// Held past several leases: a keeps it fresh, so b never gets it.
	time.Sleep(3 * a.lease)
	if ok, err := b.TryLock(ctx, "issue_cert_x"); ok || err != nil {
		t.Fatalf("TryLock of a held lock = %v, %v; want false", ok, err)
	}
	var got sync.WaitGroup
	got.Add(1)
	go func() {
		defer got.Done()
		if err := b.Lock(ctx, "issue_cert_x"); err != nil {
			t.Error(err)
		}
	}()
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	got.Wait()
	if err := b.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := a.Lock(cctx, "issue_cert_x"); err != nil {
		t.Fatalf("Lock of a released lock = %v", err)
	}
	if err := b.Lock(cctx, "issue_cert_x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held = %v, want the context's deadline", err)
	}
}

// A node that dies holding a lock blocks the others for a lease at most.
func TestStaleLockTakenOver(t *testing.T) {
	ctx := context.Background()
	b := newStorages(t, 1)[0]
	dead, _ := json.Marshal(lockRecord{Owner: "dead", Expires: time.Now().Add(-time.Second)})
	if _, err := b.st.Put(ctx, LocksPrefix+"n", dead, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "n"); !ok || err != nil {
		t.Fatalf("TryLock of a stale lock = %v, %v", ok, err)
	}
	if err := b.RenewLockLease(ctx, "n", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
}

// A node whose lock went stale and was taken over (it was frozen) neither
// renews nor releases the new holder's lock.
func TestLateUnlockLeavesNewHolder(t *testing.T) {
	ctx := context.Background()
	a := newStorages(t, 1)[0]
	if ok, _ := a.TryLock(ctx, "n"); !ok {
		t.Fatal("TryLock failed")
	}
	other, _ := json.Marshal(lockRecord{Owner: "other", Expires: time.Now().Add(time.Hour)})
	if _, err := a.st.Put(ctx, LocksPrefix+"n", other, store.AnyRevision); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLockLease(ctx, "n", time.Minute); err == nil {
		t.Fatal("RenewLockLease of a lock taken over succeeded")
	}
	if err := a.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	e, err := a.st.Get(ctx, LocksPrefix+"n")
	if err != nil || string(e.Value) != string(other) {
		t.Fatalf("the new holder's lock after the late Unlock: %q, %v", e.Value, err)
	}
}

// FuzzStoreKey: whatever certmagic passes (names come from TLS handshakes),
// an accepted key stays under the ACME prefix and never climbs.
func FuzzStoreKey(f *testing.F) {
	for _, k := range []string{"certificates/ca/a.example/a.example.crt", "../x", "a/../b", "/a", ""} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k, err := storeKey(key)
		if err != nil {
			return
		}
		if key == "" {
			return
		}
		if !strings.HasPrefix(k, ValuesPrefix) || path.Clean(k) != k || strings.Contains("/"+k+"/", "/../") {
			t.Fatalf("storeKey(%q) = %q", key, k)
		}
	})
}

// Two holders in one process (certmagic's renewal and an on-demand
// issuance of one name both lock it): when the first one's record goes
// stale (the store was unreachable for a lease), the second must not take
// it over while the first still works under it, else the first one's
// Unlock, which names only the lock, releases the second's and a third
// (another node) gets in while the second still holds.
func TestStaleOwnLockNotTakenOverInProcess(t *testing.T) {
	ctx := context.Background()
	ss := newStorages(t, 2)
	a, other := ss[0], ss[1]
	a.lease = time.Hour // no refresh during the test: the record stays as written
	if ok, err := a.TryLock(ctx, "issue_cert_x"); !ok || err != nil {
		t.Fatalf("first holder's TryLock = %v, %v", ok, err)
	}
	// The first holder's record went stale (its refreshes failed).
	stale, _ := json.Marshal(lockRecord{Owner: "a", Expires: time.Now().Add(-time.Second)})
	a.mu.Lock()
	h := a.held["issue_cert_x"]
	a.mu.Unlock()
	h.mu.Lock()
	rev, err := a.st.Put(ctx, LocksPrefix+"issue_cert_x", stale, h.revision)
	if err == nil {
		h.revision = rev
	}
	h.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	secondGot, err := a.TryLock(ctx, "issue_cert_x")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil { // the first holder is done
		t.Fatal(err)
	}
	if !secondGot {
		return // the second waits for the first: nothing more to check
	}
	// The second holder still holds: nobody else may get the lock.
	if ok, err := other.TryLock(ctx, "issue_cert_x"); ok || err != nil {
		t.Fatalf("another node got the lock while this process's second holder holds it: %v, %v", ok, err)
	}
}
