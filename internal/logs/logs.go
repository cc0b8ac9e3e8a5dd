// Package logs keeps recent records per service in memory, bounded, newest
// kept: what a job's tasks printed (Entry), tagged by execution and task,
// for `usher run jobs logs read`; and, with the same Book, the requests the
// gateway refused, for the console. (Services' output is kept durably, by
// package logentries, whose Lines answer with this package's Entry.) Adding takes only the
// service's own lock, so a flood of refusals for one service never slows
// another; nothing here does I/O.
package logs

import (
	"sync"
	"time"
)

// Entry is one line an instance printed.
type Entry struct {
	Time     time.Time `json:"timestamp"`
	Service  string    `json:"service"`
	Revision string    `json:"revision"`
	Instance string    `json:"instance"`
	Text     string    `json:"textPayload"`
	// Stderr: the line came from the instance's stderr (else stdout).
	Stderr bool `json:"stderr,omitempty"`
}

// DefaultLinesPerService bounds memory: about 1 MB per service for 80-byte lines.
const DefaultLinesPerService = 10000

// Book holds the recent records of each service key (PROJECT/REGION/SERVICE).
type Book[T any] struct {
	perService int
	rings      sync.Map // key → *ring[T]
}

// New returns a book keeping at most perService records per service
// (DefaultLinesPerService if <= 0).
func New[T any](perService int) *Book[T] {
	if perService <= 0 {
		perService = DefaultLinesPerService
	}
	return &Book[T]{perService: perService}
}

type ring[T any] struct {
	mu      sync.Mutex
	records []T
	next    int // where the next record goes once full
	full    bool
}

// Add records v under key.
func (b *Book[T]) Add(key string, v T) {
	r, ok := b.rings.Load(key)
	if !ok {
		r, _ = b.rings.LoadOrStore(key, &ring[T]{})
	}
	rg := r.(*ring[T])
	rg.mu.Lock()
	defer rg.mu.Unlock()
	if !rg.full {
		rg.records = append(rg.records, v)
		rg.full = len(rg.records) == b.perService
		return
	}
	rg.records[rg.next] = v
	rg.next = (rg.next + 1) % b.perService
}

// Read returns up to limit (all if <= 0) of the newest records under key
// for which keep returns true (nil keeps all), oldest first.
func (b *Book[T]) Read(key string, limit int, keep func(T) bool) []T {
	r, ok := b.rings.Load(key)
	if !ok {
		return nil
	}
	rg := r.(*ring[T])
	rg.mu.Lock()
	ordered := append(append([]T(nil), rg.records[rg.next:]...), rg.records[:rg.next]...)
	rg.mu.Unlock()
	var out []T
	for i := len(ordered) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if keep == nil || keep(ordered[i]) {
			out = append(out, ordered[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Forget drops a service's records (the service was deleted).
func (b *Book[T]) Forget(key string) { b.rings.Delete(key) }
