package cli

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// termSafe escapes terminal control characters on their way to a terminal
// or a pipe: stored data (a label, an annotation, a member, an instance's log
// line, a server's error message) is somebody else's input, and
// "\x1b]0;...\x07" or a CSI sequence in it would rewrite the reader's screen,
// title or clipboard. C0 controls other than newline and tab, DEL, the C1
// controls U+0080..U+009F and bytes that are not UTF-8 are written escaped:
// as \xHH and \u00HH in text, as \u00HH (valid JSON, same value) when json
// reports that the output is JSON (encoding/json already escapes C0 but
// writes DEL and C1 raw).
type termSafe struct {
	w       io.Writer
	json    func() bool
	pending []byte // an incomplete UTF-8 sequence split across writes
}

func newTermSafe(w io.Writer, json func() bool) *termSafe {
	return &termSafe{w: w, json: json}
}

func (t *termSafe) Write(p []byte) (int, error) {
	n := len(p)
	if len(t.pending) > 0 {
		p = append(t.pending, p...)
		t.pending = nil
	}
	if safeBytes(p) {
		_, err := t.w.Write(p)
		return n, err
	}
	// Hold back a trailing incomplete sequence: the next write may finish it.
	if i := incompleteTail(p); i < len(p) {
		t.pending = append([]byte(nil), p[i:]...)
		p = p[:i]
	}
	_, err := t.w.Write(escapeControls(p, t.json != nil && t.json()))
	return n, err
}

// Flush writes a held-back incomplete sequence, escaped.
func (t *termSafe) Flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	p := t.pending
	t.pending = nil
	_, err := t.w.Write(escapeControls(p, t.json != nil && t.json()))
	return err
}

// safeBytes reports whether p is printable ASCII plus newline and tab.
func safeBytes(p []byte) bool {
	for _, b := range p {
		if (b < 0x20 && b != '\n' && b != '\t') || b >= 0x7f {
			return false
		}
	}
	return true
}

// incompleteTail is the index where a trailing, not yet complete but so far
// valid, UTF-8 sequence starts, or len(p).
func incompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return i
			}
			break
		}
	}
	return len(p)
}

func escapeControls(p []byte, json bool) []byte {
	out := make([]byte, 0, len(p)+16)
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		switch {
		case r == utf8.RuneError && size <= 1:
			if json {
				out = append(out, `\ufffd`...)
			} else {
				out = fmt.Appendf(out, `\x%02x`, p[0])
			}
		case r == '\n' || r == '\t':
			out = append(out, byte(r))
		case r < 0x20 || r == 0x7f:
			if json {
				out = fmt.Appendf(out, `\u%04x`, r)
			} else {
				out = fmt.Appendf(out, `\x%02x`, r)
			}
		case r >= 0x80 && r <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, p[:size]...)
		}
		p = p[size:]
	}
	return out
}
