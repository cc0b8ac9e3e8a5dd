// Package logs keeps the recent output of every service's instances in
// memory, tagged by revision and instance, so `usher run services logs read`
// and the console can show what a service printed. It is bounded per service
// (old lines are dropped first) and never on a request's path.
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
}

// DefaultLinesPerService bounds memory: about 1 MB per service for 80-byte lines.
const DefaultLinesPerService = 10000

// Book holds recent entries per service key (PROJECT/REGION/SERVICE).
type Book struct {
	perService int

	mu    sync.Mutex
	rings map[string]*ring
}

// New returns a book keeping at most perService entries per service
// (DefaultLinesPerService if <= 0).
func New(perService int) *Book {
	if perService <= 0 {
		perService = DefaultLinesPerService
	}
	return &Book{perService: perService, rings: map[string]*ring{}}
}

type ring struct {
	entries []Entry
	next    int // where the next entry goes once full
	full    bool
}

// Add records e under key.
func (b *Book) Add(key string, e Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rings[key]
	if r == nil {
		r = &ring{}
		b.rings[key] = r
	}
	if !r.full {
		r.entries = append(r.entries, e)
		if len(r.entries) == b.perService {
			r.full = true
		}
		return
	}
	r.entries[r.next] = e
	r.next = (r.next + 1) % b.perService
}

// Read returns up to limit of the newest entries under key, oldest first,
// keeping those for which keep returns true (nil keeps all).
func (b *Book) Read(key string, limit int, keep func(Entry) bool) []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rings[key]
	if r == nil {
		return nil
	}
	ordered := append(append([]Entry(nil), r.entries[r.next:]...), r.entries[:r.next]...)
	if !r.full {
		ordered = r.entries
	}
	var out []Entry
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

// Forget drops a service's entries (the service was deleted).
func (b *Book) Forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.rings, key)
}
