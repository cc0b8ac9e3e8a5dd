// Package certstore keeps automatic certificates, their keys and the ACME
// account in Usher's store (certmagic.Storage over store.Store), so every
// node of a cluster serves the certificate one node obtained, any node
// answers a challenge another node's order started, and backups hold them
// with the rest of the state.
//
// Values are kept under "acme/" with their modification time; certmagic's
// cluster-wide locks (it holds one while obtaining or renewing a name) are
// records under "acmelocks/" that expire unless their holder refreshes them,
// so a node that dies holding one blocks the others for a lease at most.
package certstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/usher-run/usher/internal/store"
)

// Key prefixes in the store.
const (
	ValuesPrefix = "acme/"
	LocksPrefix  = "acmelocks/"
)

// Lock timing. A held lock is rewritten every lease/3; a lock not rewritten
// for a lease is stale and may be taken over.
const (
	defaultLease = 30 * time.Second
	lockPoll     = 500 * time.Millisecond
)

// Storage implements certmagic.Storage, certmagic.TryLocker and
// certmagic.LockLeaseRenewer.
type Storage struct {
	st    store.Store
	owner string        // names this process in lock records
	lease time.Duration // tests shorten it
	now   func() time.Time

	mu   sync.Mutex
	held map[string]*heldLock
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// New returns a Storage over st; owner names this node in lock records.
func New(st store.Store, owner string) *Storage {
	return &Storage{st: st, owner: owner, lease: defaultLease, now: time.Now, held: map[string]*heldLock{}}
}

// String names the storage: certmagic tells storages apart by it.
func (s *Storage) String() string { return "usher-store" }

// value is what a key holds.
type value struct {
	Modified time.Time `json:"modified"`
	Data     []byte    `json:"data"`
}

// Store implements certmagic.Storage.
func (s *Storage) Store(ctx context.Context, key string, data []byte) error {
	k, err := storeKey(key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(value{Modified: s.now().UTC(), Data: data})
	if err != nil {
		return err
	}
	_, err = s.st.Put(ctx, k, b, store.AnyRevision)
	return err
}

// Load implements certmagic.Storage: fs.ErrNotExist for a missing key.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.load(ctx, key)
	return v.Data, err
}

func (s *Storage) load(ctx context.Context, key string) (value, error) {
	k, err := storeKey(key)
	if err != nil {
		return value{}, err
	}
	e, err := s.st.Get(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return value{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return value{}, err
	}
	var v value
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return value{}, fmt.Errorf("%s: undecodable: %w", key, err)
	}
	return v, nil
}

// Delete implements certmagic.Storage: the key and everything under it as a
// directory, in one transaction.
func (s *Storage) Delete(ctx context.Context, key string) error {
	k, err := storeKey(key)
	if err != nil {
		return err
	}
	under, _, err := s.st.List(ctx, k+"/")
	if err != nil {
		return err
	}
	ops := []store.Op{{Key: k, Expected: store.AnyRevision}}
	for _, e := range under {
		ops = append(ops, store.Op{Key: e.Key, Expected: store.AnyRevision})
	}
	_, err = s.st.Txn(ctx, ops)
	return err
}

// Exists implements certmagic.Storage.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat implements certmagic.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	v, err := s.load(ctx, key)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: v.Modified, Size: int64(len(v.Data)), IsTerminal: true}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return certmagic.KeyInfo{}, err
	}
	k, _ := storeKey(key)
	under, _, lerr := s.st.List(ctx, k+"/")
	if lerr != nil {
		return certmagic.KeyInfo{}, lerr
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, err
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// List implements certmagic.Storage: the keys directly under dir (files
// and directories), or with recursive every key below it, directories
// included, as a file system walk would give them.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	k, err := storeKey(dir)
	if err != nil {
		return nil, err
	}
	prefix := k + "/"
	if dir == "" {
		prefix = ValuesPrefix
	}
	under, _, err := s.st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if len(under) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	}
	seen := map[string]bool{}
	var keys []string
	add := func(rel string) {
		if !seen[rel] {
			seen[rel] = true
			keys = append(keys, path.Join(dir, rel))
		}
	}
	for _, e := range under {
		rel := strings.TrimPrefix(e.Key, prefix)
		parts := strings.Split(rel, "/")
		if !recursive {
			add(parts[0])
			continue
		}
		for i := range parts {
			add(strings.Join(parts[:i+1], "/"))
		}
	}
	return keys, nil
}

// storeKey maps a certmagic key ("certificates/CA/NAME/NAME.crt") to the
// store's. certmagic's keys are relative slash paths; anything else (an
// absolute or climbing path) is refused rather than stored somewhere
// surprising.
func storeKey(key string) (string, error) {
	if key == "" {
		return strings.TrimSuffix(ValuesPrefix, "/"), nil
	}
	clean := path.Clean(key)
	if clean != key || clean == "." || strings.HasPrefix(key, "/") || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("certstore: bad key %q", key)
	}
	return ValuesPrefix + key, nil
}

// lockRecord is what a lock key holds.
type lockRecord struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// heldLock is a lock this process holds, kept fresh until unlocked.
type heldLock struct {
	mu       sync.Mutex
	key      string
	revision int64 // of our last write; 0 once lost or released
	lease    time.Duration
	stop     chan struct{}
}

// Lock implements certmagic.Locker: it waits until the lock is free or
// stale, or ctx ends.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TryLock implements certmagic.TryLocker. A lock this process holds is
// not free, even when its record went stale (the store was unreachable for
// a lease): its holder is alive and will Unlock it, and Unlock names only
// the lock, so a second holder here would be released by the first one's
// Unlock while it still works under the lock.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	s.mu.Lock()
	_, ours := s.held[name]
	s.mu.Unlock()
	if ours {
		return false, nil
	}
	key := LocksPrefix + name
	expected := store.MustNotExist
	e, err := s.st.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return false, err
	default:
		var r lockRecord
		if json.Unmarshal(e.Value, &r) == nil && s.now().Before(r.Expires) {
			return false, nil // held, and fresh
		}
		expected = e.Revision // stale (or unreadable): taken over
	}
	rev, err := s.st.Put(ctx, key, s.lockValue(s.lease), expected)
	if errors.Is(err, store.ErrConflict) {
		return false, nil // someone else got it first
	}
	if err != nil {
		return false, err
	}
	h := &heldLock{key: key, revision: rev, lease: s.lease, stop: make(chan struct{})}
	s.mu.Lock()
	if s.held[name] != nil {
		// Another holder here got it meanwhile (by its own takeover): the
		// compare-and-swap above cannot have succeeded for both.
		s.mu.Unlock()
		return false, fmt.Errorf("certstore: lock %q taken twice in this process", name)
	}
	s.held[name] = h
	s.mu.Unlock()
	go s.keepFresh(h)
	return true, nil
}

func (s *Storage) lockValue(lease time.Duration) []byte {
	b, _ := json.Marshal(lockRecord{Owner: s.owner, Expires: s.now().Add(lease).UTC()})
	return b
}

// keepFresh rewrites h's record every third of its lease until it is
// released, or lost (someone took it over: then there is nothing to do).
func (s *Storage) keepFresh(h *heldLock) {
	for {
		h.mu.Lock()
		every := h.lease / 3
		h.mu.Unlock()
		t := time.NewTimer(every)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if !s.refresh(h, 0) {
			return
		}
	}
}

// refresh rewrites h's record with its lease (or lease, when > 0) and says
// whether the lock is still ours.
func (s *Storage) refresh(h *heldLock, lease time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.revision == 0 {
		return false
	}
	if lease > 0 {
		h.lease = lease
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := s.st.Put(ctx, h.key, s.lockValue(h.lease), h.revision)
	switch {
	case err == nil:
		h.revision = rev
	case errors.Is(err, store.ErrConflict):
		h.revision = 0 // taken over while we were stale
		return false
	}
	return true // a store error: try again at the next tick
}

// RenewLockLease implements certmagic.LockLeaseRenewer: the lock is kept
// for lease from now on.
func (s *Storage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	s.mu.Lock()
	h := s.held[name]
	s.mu.Unlock()
	if h == nil || !s.refresh(h, lease) {
		return fmt.Errorf("certstore: lock %q is not held", name)
	}
	return nil
}

// Unlock implements certmagic.Locker. A lock taken over meanwhile (ours
// went stale) is left to its new holder.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("certstore: lock %q is not held", name)
	}
	close(h.stop)
	h.mu.Lock()
	defer h.mu.Unlock()
	rev := h.revision
	h.revision = 0
	if rev == 0 {
		return nil
	}
	_, err := s.st.Delete(ctx, h.key, rev)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
