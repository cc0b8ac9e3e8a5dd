// Package bolt is the single-node store.Store backend: all of Usher's state in
// one bbolt file inside the data dir.
//
// It must never acknowledge a write before it is on disk: every Put and Delete
// is a bbolt transaction committed with fsync (NoSync is never set). It must
// never deliver watch events out of revision order, skip or repeat one, or let
// a slow watcher stall writers; a watcher that falls too far behind is ended
// with store.ErrCompacted instead.
//
// bbolt keeps no history, so Watch can replay only the changes made since Open
// that are still in an in-memory ring of recent events.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/usher-run/usher/internal/store"
)

var _ store.Store = (*Store)(nil)

var (
	kvBucket   = []byte("kv")
	metaBucket = []byte("meta")
	revKey     = []byte("rev")
)

// revLen is the size of the big-endian mod revision stored before each value.
const revLen = 8

// options tune the parts tests need to shrink.
type options struct {
	// ringSize is how many recent events Watch can replay.
	ringSize int
	// queueSize is how many events a watcher may have pending before it is
	// ended with ErrCompacted.
	queueSize int
	// lockTimeout bounds the wait for the file lock held by another process.
	lockTimeout time.Duration
}

func defaultOptions() options {
	return options{ringSize: 4096, queueSize: 1024, lockTimeout: time.Second}
}

// Store is a store.Store backed by a bbolt file.
type Store struct {
	db   *bolt.DB
	path string
	opts options
	// done is closed by Close; it ends watchers and marks the store closed.
	done chan struct{}
	// wg counts watcher goroutines so Close can wait for them.
	wg sync.WaitGroup

	// mu serializes writes with their fan-out, so watchers get events in
	// revision order, and guards:
	mu sync.Mutex
	// rev is the current store revision (mirrors the meta bucket).
	rev int64
	// ring holds the event of revision r at ring[r%len(ring)] for every r in
	// (floor, rev]; older events are gone.
	ring  []store.Event
	floor int64
	// watchers are the live watches that receive new events.
	watchers map[*watcher]struct{}
}

// Open opens (creating if needed, with mode 0600) the bbolt file at path.
// It fails rather than waits if another process holds the file.
func Open(path string) (*Store, error) {
	return open(path, defaultOptions())
}

func open(path string, opts options) (_ *Store, err error) {
	// bbolt panics on some corrupt pages while opening; the file handle it
	// held is lost with the panic, which is why callers check a file with
	// Inspect first.
	defer recoverCorrupt(path, &err)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("bolt: %s is in use by another usher process (lock not acquired within %s)", path, opts.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	var rev int64
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(kvBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		rev = readRev(meta)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	return &Store{
		db:       db,
		path:     path,
		opts:     opts,
		done:     make(chan struct{}),
		rev:      rev,
		ring:     make([]store.Event, opts.ringSize),
		floor:    rev, // nothing before Open is replayable
		watchers: make(map[*watcher]struct{}),
	}, nil
}

func readRev(meta *bolt.Bucket) int64 {
	b := meta.Get(revKey)
	if len(b) != revLen {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func encodeRev(rev int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, revLen), uint64(rev))
}

// decode splits a stored value into its mod revision and a copy of the value
// (bbolt's slices are only valid inside the transaction).
func decode(key string, raw []byte) (store.Entry, error) {
	if len(raw) < revLen {
		return store.Entry{}, fmt.Errorf("bolt: key %q: corrupt value (%d bytes)", key, len(raw))
	}
	return store.Entry{
		Key:      key,
		Value:    bytes.Clone(raw[revLen:]),
		Revision: int64(binary.BigEndian.Uint64(raw[:revLen])),
	}, nil
}

func (s *Store) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// check reports why an operation may not start.
func (s *Store) check(ctx context.Context) error {
	if s.closed() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// mapErr turns bbolt's "closed underneath us" into store.ErrClosed.
func mapErr(err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// Get returns the key's entry or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	if err := s.check(ctx); err != nil {
		return store.Entry{}, err
	}
	var e store.Entry
	err := s.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(kvBucket).Get([]byte(key))
		if raw == nil {
			return fmt.Errorf("bolt: get %q: %w", key, store.ErrNotFound)
		}
		var err error
		e, err = decode(key, raw)
		return err
	})
	return e, mapErr(err)
}

// List returns the entries under prefix sorted by key, and the store revision
// read in the same transaction, so Watch(prefix, rev) misses nothing.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Entry, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	var (
		entries []store.Entry
		rev     int64
	)
	err := s.view(func(tx *bolt.Tx) error {
		rev = readRev(tx.Bucket(metaBucket))
		c := tx.Bucket(kvBucket).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			e, err := decode(string(k), v)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, 0, mapErr(err)
	}
	return entries, rev, nil
}

// Put writes value if the key's revision matches expected and returns the new
// revision once the commit is fsync'd.
func (s *Store) Put(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	value = bytes.Clone(value) // the event outlives the caller's buffer
	if value == nil {
		value = []byte{}
	}
	ev := store.Event{Type: store.EventPut, Entry: store.Entry{Key: key, Value: value}}
	return s.write(ctx, "put", ev, expected)
}

// Delete removes the key if its revision matches expected and returns the
// deletion's revision once the commit is fsync'd.
func (s *Store) Delete(ctx context.Context, key string, expected int64) (int64, error) {
	ev := store.Event{Type: store.EventDelete, Entry: store.Entry{Key: key}}
	return s.write(ctx, "delete", ev, expected)
}

// write applies ev under compare-and-swap in one bbolt transaction, then
// publishes it. Holding mu across commit and publish is what keeps watchers in
// revision order.
func (s *Store) write(ctx context.Context, op string, ev store.Event, expected int64) (int64, error) {
	key := ev.Entry.Key
	if key == "" {
		return 0, fmt.Errorf("bolt: %s: empty key", op)
	}
	if expected < store.AnyRevision {
		return 0, fmt.Errorf("bolt: %s %q: invalid expected revision %d", op, key, expected)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	rev := s.rev + 1
	err := s.update(func(tx *bolt.Tx) error {
		kv := tx.Bucket(kvBucket)
		raw := kv.Get([]byte(key))
		if err := checkExpected(op, key, raw, ev.Type, expected); err != nil {
			return err
		}
		if ev.Type == store.EventDelete {
			if err := kv.Delete([]byte(key)); err != nil {
				return err
			}
		} else {
			buf := binary.BigEndian.AppendUint64(make([]byte, 0, revLen+len(ev.Entry.Value)), uint64(rev))
			if err := kv.Put([]byte(key), append(buf, ev.Entry.Value...)); err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(revKey, encodeRev(rev))
	})
	if err != nil {
		return 0, mapErr(err)
	}
	s.rev = rev
	ev.Entry.Revision = rev
	s.publishLocked(ev)
	return rev, nil
}

// Txn applies ops in one bbolt transaction: each op its own revision, in
// order, all durable with one fsync, or none of them.
func (s *Store) Txn(ctx context.Context, ops []store.Op) ([]int64, error) {
	events := make([]store.Event, len(ops))
	for i, op := range ops {
		if op.Key == "" {
			return nil, fmt.Errorf("bolt: txn op %d: empty key", i)
		}
		if op.Expected < store.AnyRevision {
			return nil, fmt.Errorf("bolt: txn op %d %q: invalid expected revision %d", i, op.Key, op.Expected)
		}
		events[i] = store.Event{Type: store.EventDelete, Entry: store.Entry{Key: op.Key}}
		if op.Value != nil {
			events[i] = store.Event{Type: store.EventPut, Entry: store.Entry{Key: op.Key, Value: bytes.Clone(op.Value)}}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	revs := make([]int64, len(ops))
	rev := s.rev
	err := s.update(func(tx *bolt.Tx) error {
		kv := tx.Bucket(kvBucket)
		for i, op := range ops {
			raw := kv.Get([]byte(op.Key))
			if raw == nil && op.Value == nil && op.Expected == store.AnyRevision {
				continue // deleting what is not there: nothing to write
			}
			name := "put"
			if op.Value == nil {
				name = "delete"
			}
			if err := checkExpected(name, op.Key, raw, events[i].Type, op.Expected); err != nil {
				return &store.TxnError{Index: i, Err: err}
			}
			rev++
			revs[i] = rev
			if op.Value == nil {
				if err := kv.Delete([]byte(op.Key)); err != nil {
					return err
				}
				continue
			}
			buf := binary.BigEndian.AppendUint64(make([]byte, 0, revLen+len(op.Value)), uint64(rev))
			if err := kv.Put([]byte(op.Key), append(buf, op.Value...)); err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(revKey, encodeRev(rev))
	})
	if err != nil {
		return nil, mapErr(err)
	}
	s.rev = rev
	for i, ev := range events {
		if revs[i] == 0 {
			continue
		}
		ev.Entry.Revision = revs[i]
		s.publishLocked(ev)
	}
	return revs, nil
}

// checkExpected enforces the compare-and-swap rules of store.Store.
func checkExpected(op, key string, raw []byte, typ store.EventType, expected int64) error {
	var cur int64
	if raw != nil {
		if len(raw) < revLen {
			return fmt.Errorf("bolt: key %q: corrupt value (%d bytes)", key, len(raw))
		}
		cur = int64(binary.BigEndian.Uint64(raw[:revLen]))
	}
	switch {
	case raw == nil && typ == store.EventDelete:
		return fmt.Errorf("bolt: %s %q: %w", op, key, store.ErrNotFound)
	case expected == store.AnyRevision, expected == cur:
		return nil
	case raw == nil:
		return fmt.Errorf("bolt: %s %q: expected revision %d, key is absent: %w", op, key, expected, store.ErrConflict)
	default:
		return fmt.Errorf("bolt: %s %q: expected revision %d, have %d: %w", op, key, expected, cur, store.ErrConflict)
	}
}

// publishLocked records ev in the ring and hands it to every matching watcher.
func (s *Store) publishLocked(ev store.Event) {
	n := int64(len(s.ring))
	if n == 0 {
		s.floor = ev.Entry.Revision
	} else {
		s.ring[ev.Entry.Revision%n] = ev
		if ev.Entry.Revision-s.floor > n {
			s.floor = ev.Entry.Revision - n
		}
	}
	for w := range s.watchers {
		if !strings.HasPrefix(ev.Entry.Key, w.prefix) || ev.Entry.Revision <= w.after {
			continue
		}
		if !w.push(ev, s.opts.queueSize) {
			// Overflowed: it will report ErrCompacted and exit; stop feeding it.
			delete(s.watchers, w)
		}
	}
}

// Watch streams changes under prefix with revision > after. It replays from the
// ring what it can; if after predates the ring, the only response is
// store.ErrCompacted. A watcher that lets more than the queue size of events
// pile up also gets ErrCompacted, so it never blocks writers.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 1)

	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		out <- store.WatchResponse{Err: store.ErrClosed}
		close(out)
		return out
	}
	if after < s.floor {
		s.mu.Unlock()
		out <- store.WatchResponse{Err: fmt.Errorf("bolt: watch %q after %d: oldest replayable revision is %d: %w",
			prefix, after, s.floor+1, store.ErrCompacted)}
		close(out)
		return out
	}
	// Replay and registration happen under one lock so the watcher sees every
	// revision exactly once.
	var replay []store.Event
	for r := after + 1; r <= s.rev; r++ {
		ev := s.ring[r%int64(len(s.ring))]
		if strings.HasPrefix(ev.Entry.Key, prefix) {
			replay = append(replay, ev)
		}
	}
	w := &watcher{prefix: prefix, after: after, ready: make(chan struct{}, 1)}
	s.watchers[w] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()

	go s.serve(ctx, w, replay, out)
	return out
}

// serve delivers a watcher's events to out until ctx ends, the store closes or
// the watcher overflows.
func (s *Store) serve(ctx context.Context, w *watcher, replay []store.Event, out chan<- store.WatchResponse) {
	defer s.wg.Done()
	defer close(out)
	defer s.removeWatcher(w)

	send := func(resp store.WatchResponse) bool {
		select {
		case out <- resp:
			return true
		case <-ctx.Done():
		case <-s.done:
		}
		return false
	}
	if len(replay) > 0 && !send(store.WatchResponse{Events: replay}) {
		return
	}
	for {
		select {
		case <-w.ready:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
		evs, overflowed := w.take()
		if overflowed {
			send(store.WatchResponse{Err: fmt.Errorf("bolt: watch %q: watcher fell more than %d events behind: %w",
				w.prefix, s.opts.queueSize, store.ErrCompacted)})
			return
		}
		if len(evs) > 0 && !send(store.WatchResponse{Events: evs}) {
			return
		}
	}
}

func (s *Store) removeWatcher(w *watcher) {
	s.mu.Lock()
	delete(s.watchers, w)
	s.mu.Unlock()
}

// Close ends all watches, waits for their goroutines and closes the file.
// Later calls, including Close, return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return store.ErrClosed
	}
	close(s.done)
	s.watchers = nil
	s.mu.Unlock()

	s.wg.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	return nil
}

// watcher is one Watch's queue between writers and its serve goroutine. Writers
// append without blocking; serve takes everything pending at once.
type watcher struct {
	prefix string
	after  int64
	// ready has room for one wake-up; a pending one covers any later pushes.
	ready chan struct{}

	mu         sync.Mutex
	pending    []store.Event
	overflowed bool
}

// push queues ev, or marks the watcher overflowed if limit events are already
// pending. It reports whether the watcher is still healthy.
func (w *watcher) push(ev store.Event, limit int) bool {
	w.mu.Lock()
	if len(w.pending) >= limit {
		w.overflowed = true
		w.pending = nil
	} else {
		w.pending = append(w.pending, ev)
	}
	ok := !w.overflowed
	w.mu.Unlock()

	select {
	case w.ready <- struct{}{}:
	default:
	}
	return ok
}

func (w *watcher) take() ([]store.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := w.pending
	w.pending = nil
	return evs, w.overflowed
}
