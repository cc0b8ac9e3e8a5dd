package runtime

import (
	"context"
	"sync"
)

// Launches tracks the instance launches in progress, for lookups of "which
// instance is this connection from?": an instance may connect out from its
// first instruction, a moment before its runtime has recorded it, so a
// lookup that misses waits for the launches that were in progress when it
// missed, then looks again. The zero value is ready to use.
type Launches struct {
	mu      sync.Mutex
	pending map[chan struct{}]struct{}
}

// Begin marks a launch in progress; call settled once the launch has
// recorded its instance (or failed). settled may be called more than once.
func (l *Launches) Begin() (settled func()) {
	ch := make(chan struct{})
	l.mu.Lock()
	if l.pending == nil {
		l.pending = map[chan struct{}]struct{}{}
	}
	l.pending[ch] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.pending, ch)
			l.mu.Unlock()
			close(ch)
		})
	}
}

// Lookup returns find's answer, waiting first for the launches in progress
// when find missed; false when ctx ends before they settle.
func Lookup[T any](ctx context.Context, l *Launches, find func() (T, bool)) (T, bool) {
	if v, ok := find(); ok {
		return v, true
	}
	l.mu.Lock()
	waiting := make([]chan struct{}, 0, len(l.pending))
	for ch := range l.pending {
		waiting = append(waiting, ch)
	}
	l.mu.Unlock()
	// A launch that settled since find missed has recorded its instance:
	// the second find sees it; one still pending is waited for.
	for _, ch := range waiting {
		select {
		case <-ch:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
	return find()
}
