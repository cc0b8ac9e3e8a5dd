// Package mirror keeps a decoded, in-memory copy of store state by following the
// store's watch, and tells its owner after every change so derived views (the
// gateway's routing table, the controller's work queue) can be rebuilt.
//
// Readers of the copy never touch the store, so request paths do no I/O. The
// mirror must never apply a change out of order or skip one: on a compacted
// watch it lists again.
package mirror

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/store"
)

// Object is one decoded entry.
type Object struct {
	Key      string
	Revision int64
	Value    any
}

// Config says what to keep and whom to tell.
type Config struct {
	// Decode turns a stored value into the object kept; keys it reports
	// ok=false for are not kept. Decode must not block.
	Decode func(key string, value []byte) (v any, ok bool, err error)
	// OnChange receives the whole current state after each applied batch of
	// changes, with the store revision it reflects. It runs with the mirror's
	// lock held: build and swap, don't block. The map must not be modified.
	OnChange func(objects map[string]Object, revision int64)
	// Changed, if set, replaces OnChange: the mirror then updates its map in
	// place rather than copying the whole state for every batch (a write's
	// cost must not grow with the number of objects), and tells which keys
	// the batch put or deleted; keys is nil when the whole state was loaded
	// again (start, compaction). The map is valid only during the call,
	// which runs with the mirror's lock held.
	Changed func(objects map[string]Object, keys []string, revision int64)
	Log     *slog.Logger
	// MaxStaleness bounds how long the mirror counts as fresh after it was
	// last known current (fresh.go); default 5s.
	MaxStaleness time.Duration
	// Applied, if set, is told how long each batch that called OnChange
	// took from the watch delivering it to OnChange returning (metrics).
	Applied func(time.Duration)
}

// Mirror follows every key of a store.
type Mirror struct {
	st  store.Store
	cfg Config

	mu       sync.Mutex
	objects  map[string]Object
	revision int64
	advanced chan struct{} // closed and replaced whenever revision grows
	synced   bool

	fresh freshness // fresh.go
}

// New returns a mirror; call Run to fill and follow it.
func New(st store.Store, cfg Config) *Mirror {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = 5 * time.Second
	}
	m := &Mirror{st: st, cfg: cfg, objects: map[string]Object{}, advanced: make(chan struct{})}
	m.fresh.base = time.Now()
	m.fresh.maxStale = cfg.MaxStaleness
	return m
}

// Sync loads the whole state once. Run calls it; servers call it before
// serving so the first request already sees state.
func (m *Mirror) Sync(ctx context.Context) error {
	start := m.fresh.now()
	entries, rev, err := m.st.List(ctx, "")
	if err != nil {
		return err
	}
	objects := make(map[string]Object, len(entries))
	for _, e := range entries {
		m.decodeInto(objects, e)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev < m.revision {
		objects = m.objects // a resync (fresh.go) already installed newer state
	}
	m.objects = objects
	m.synced = true
	m.advanceLocked(rev, nil)
	m.fresh.lastOK.Store(m.fresh.now())
	m.fresh.confirm(start)
	return nil
}

func (m *Mirror) decodeInto(objects map[string]Object, e store.Entry) {
	v, ok, err := m.cfg.Decode(e.Key, e.Value)
	if err != nil {
		// A value we cannot read never becomes state that could grant access.
		m.cfg.Log.Error("mirror: undecodable value ignored", "key", e.Key, "revision", e.Revision, "err", err)
		delete(objects, e.Key)
		return
	}
	if !ok {
		return
	}
	objects[e.Key] = Object{Key: e.Key, Revision: e.Revision, Value: v}
}

// Run follows the store until ctx ends, re-listing after compaction and
// retrying after errors.
func (m *Mirror) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		m.mu.Lock()
		synced, rev := m.synced, m.revision
		m.mu.Unlock()
		if !synced {
			if err := m.Sync(ctx); err != nil {
				m.cfg.Log.Warn("mirror: list failed; retrying", "err", err)
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			m.mu.Lock()
			rev = m.revision
			m.mu.Unlock()
		}
		err := m.follow(ctx, rev)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, store.ErrCompacted) {
			m.mu.Lock()
			m.synced = false
			m.mu.Unlock()
			continue
		}
		m.cfg.Log.Warn("mirror: watch ended; resuming", "err", err)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	return ctx.Err()
}

func (m *Mirror) follow(ctx context.Context, after int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range m.st.Watch(wctx, "", after) {
		if resp.Err != nil {
			return resp.Err
		}
		arrived := time.Now()
		if m.apply(resp.Events) && m.cfg.Applied != nil {
			m.cfg.Applied(time.Since(arrived))
		}
	}
	return errors.New("watch closed")
}

// apply reports whether the batch rebuilt the objects (called OnChange).
func (m *Mirror) apply(events []store.Event) bool {
	if len(events) == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.touchesLocked(events) { // quiet.go
		m.advanceQuietlyLocked(events)
		return false
	}
	objects := m.objects
	if m.cfg.Changed == nil {
		// Copy on write: OnChange consumers may keep the previous map.
		objects = make(map[string]Object, len(m.objects)+1)
		for k, v := range m.objects {
			objects[k] = v
		}
	}
	rev := m.revision
	keys := make([]string, 0, len(events))
	for _, ev := range events {
		// Compared with the revision before the batch, not the last event's:
		// a transaction's writes may share one revision (etcd).
		if ev.Entry.Revision <= m.revision {
			continue // already applied (a re-list overlapped the watch)
		}
		keys = append(keys, ev.Entry.Key)
		switch ev.Type {
		case store.EventPut:
			m.decodeInto(objects, ev.Entry)
		case store.EventDelete:
			delete(objects, ev.Entry.Key)
		}
		rev = ev.Entry.Revision
	}
	m.objects = objects
	m.advanceLocked(rev, keys)
	return true
}

// advanceLocked records rev and tells the owner; keys are those changed
// (nil: all of them).
func (m *Mirror) advanceLocked(rev int64, keys []string) {
	if rev < m.revision {
		return
	}
	m.revision = rev
	if m.cfg.Changed != nil {
		m.cfg.Changed(m.objects, keys, rev)
	} else if m.cfg.OnChange != nil {
		m.cfg.OnChange(m.objects, rev)
	}
	close(m.advanced)
	m.advanced = make(chan struct{})
}

// Revision is the store revision applied so far.
func (m *Mirror) Revision() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revision
}

// Snapshot returns the current objects; the map must not be modified. With
// Config.Changed the mirror changes its map in place, so Snapshot copies it.
func (m *Mirror) Snapshot() (map[string]Object, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.Changed == nil {
		return m.objects, m.revision
	}
	objects := make(map[string]Object, len(m.objects))
	for k, v := range m.objects {
		objects[k] = v
	}
	return objects, m.revision
}

// WaitFor blocks until the mirror has applied revision rev (so that a write
// the API just acknowledged is in force before the API answers).
func (m *Mirror) WaitFor(ctx context.Context, rev int64) error {
	for {
		m.mu.Lock()
		cur, ch := m.revision, m.advanced
		m.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
