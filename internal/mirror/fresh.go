package mirror

import (
	"context"
	"sync/atomic"
	"time"
)

// Staleness bound (issue 7). A mirror following a remote store (etcd) can
// lose its watch without noticing: the etcd client retries quietly. Keep
// proves, about once a second, that the mirror is current: it reads the
// store's revision R (a one-key range read) and checks that the mirror has
// applied R (waiting briefly for the watch to deliver, and re-listing if it
// does not). The time that read started is the last moment the mirror is
// known current; it stays "fresh" for maxStaleness after it. Request paths
// call Fresh: one atomic load and a monotonic clock read, no lock, no I/O.

// heartbeatKey is a key no one writes: reading it only proves connectivity
// and returns the store's current revision.
const heartbeatKey = "\x00usher-mirror-heartbeat/"

// freshness holds the deadline as nanoseconds on a monotonic clock (since
// base); zero means "not yet known current". always disables the bound.
type freshness struct {
	base     time.Time
	until    atomic.Int64
	always   atomic.Bool
	lastOK   atomic.Int64 // when the store last answered a heartbeat (ns since base)
	maxStale time.Duration
}

func (f *freshness) now() int64 { return int64(time.Since(f.base)) }

// confirm records that the mirror was known current at t (ns since base).
func (f *freshness) confirm(t int64) {
	until := t + int64(f.maxStale)
	for {
		cur := f.until.Load()
		if until <= cur || f.until.CompareAndSwap(cur, until) {
			return
		}
	}
}

// AlwaysFresh marks the mirror as following a local store that cannot fall
// behind (bbolt): Fresh is always true and Keep is not needed.
func (m *Mirror) AlwaysFresh() { m.fresh.always.Store(true) }

// Fresh reports whether the mirror is known to have been current within the
// staleness bound. Callers on request paths may call it per request.
func (m *Mirror) Fresh() bool {
	f := &m.fresh
	return f.always.Load() || f.now() < f.until.Load()
}

// FreshUntil is when Fresh turns false unless the mirror confirms again
// (the zero time when it never confirmed; far future when always fresh).
func (m *Mirror) FreshUntil() time.Time {
	f := &m.fresh
	if f.always.Load() {
		return time.Unix(1<<62, 0)
	}
	u := f.until.Load()
	if u == 0 {
		return time.Time{}
	}
	return f.base.Add(time.Duration(u))
}

// LastConfirmed is how long ago the mirror was last known current (-1 when
// never; 0 when always fresh).
func (m *Mirror) LastConfirmed() time.Duration {
	f := &m.fresh
	if f.always.Load() {
		return 0
	}
	u := f.until.Load()
	if u == 0 {
		return -1
	}
	return time.Duration(f.now() - (u - int64(f.maxStale)))
}

// StoreReachable reports whether the store answered a heartbeat within the
// staleness bound.
func (m *Mirror) StoreReachable() bool {
	f := &m.fresh
	if f.always.Load() {
		return true
	}
	ok := f.lastOK.Load()
	return ok != 0 && f.now()-ok < int64(f.maxStale)
}

// Keep confirms the mirror current every interval until ctx ends (run it
// next to Run). interval defaults to min(maxStaleness/5, 1s).
func (m *Mirror) Keep(ctx context.Context, interval time.Duration) {
	if m.fresh.always.Load() {
		return
	}
	if interval <= 0 {
		interval = min(m.fresh.maxStale/5, time.Second)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.checkOnce(ctx, interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Mirror) checkOnce(ctx context.Context, timeout time.Duration) {
	f := &m.fresh
	start := f.now()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, rev, err := m.st.List(rctx, heartbeatKey)
	if err != nil {
		if ctx.Err() == nil {
			m.cfg.Log.Debug("mirror: store heartbeat failed", "err", err)
		}
		return
	}
	f.lastOK.Store(f.now())
	// Wait for the watch to apply R: writes in flight arrive within
	// milliseconds on a healthy watch.
	if err := m.WaitFor(rctx, rev); err == nil {
		f.confirm(start)
		return
	}
	if ctx.Err() != nil {
		return
	}
	// The watch did not reach R: either it is stuck, or R moved for keys
	// outside the mirror's prefix. A fresh listing settles it.
	lctx, lcancel := context.WithTimeout(ctx, 2*timeout)
	defer lcancel()
	if err := m.resync(lctx); err != nil {
		m.cfg.Log.Warn("mirror: cannot confirm state is current", "err", err)
		return
	}
	f.confirm(start)
}

// resync lists the whole state and installs it if it is newer than what the
// watch applied; the watch then skips events the listing already holds.
func (m *Mirror) resync(ctx context.Context) error {
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
	if rev <= m.revision {
		return nil // the watch got there first: already current as of rev
	}
	m.objects = objects
	m.advanceLocked(rev, nil)
	return nil
}
