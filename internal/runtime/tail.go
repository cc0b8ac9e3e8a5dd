package runtime

import (
	"strings"
	"sync"
)

// OutputTail keeps the last lines an instance printed, so a failed start can
// say what the instance said. Safe for concurrent use; the zero value is ready.
type OutputTail struct {
	mu    sync.Mutex
	lines []string
}

const (
	tailLines   = 20  // lines of output kept for startup errors
	tailLineMax = 512 // bytes kept per line
)

// Remember records one line of output.
func (t *OutputTail) Remember(line []byte) {
	s := strings.TrimRight(string(line), "\r\n")
	if len(s) > tailLineMax {
		s = s[:tailLineMax] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, s)
}

// String renders the tail for an error message: "; last output:\n\t…", or
// " (no output)".
func (t *OutputTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return " (no output)"
	}
	return "; last output:\n\t" + strings.Join(t.lines, "\n\t")
}
