package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTermSafeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain\ttext\n", "plain\ttext\n"},
		{"héllo ✓\n", "héllo ✓\n"},
		{"a\x1b]0;pwned\x07b", `a\x1b]0;pwned\x07b`},
		{"\x1b[2J", `\x1b[2J`},
		{"cr\roverwrite", `cr\x0doverwrite`},
		{"del\x7f", `del\x7f`},
		{"c1\u009b31m", `c1\u009b31m`},
		{"bad\x9bbyte", `bad\x9bbyte`},
		{"\x00", `\x00`},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		w := newTermSafe(&b, nil)
		if n, err := w.Write([]byte(tt.in)); err != nil || n != len(tt.in) {
			t.Errorf("Write(%q) = %d, %v, want %d, nil", tt.in, n, err, len(tt.in))
		}
		w.Flush()
		if got := b.String(); got != tt.want {
			t.Errorf("text %q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTermSafeSplitRune(t *testing.T) {
	var b bytes.Buffer
	w := newTermSafe(&b, nil)
	in := []byte("a\u009bb✓")
	for i := range in { // one byte at a time: sequences split across writes
		w.Write(in[i : i+1])
	}
	w.Flush()
	if got, want := b.String(), `a\u009bb✓`; got != want {
		t.Errorf("byte-at-a-time: got %q, want %q", got, want)
	}
}

func TestTermSafeJSONStaysJSON(t *testing.T) {
	v := map[string]string{"v": "x\x1b]0;t\x07\u009b\x7f\u0085y"}
	j, _ := json.MarshalIndent(v, "", "  ")
	var b bytes.Buffer
	w := newTermSafe(&b, func() bool { return true })
	w.Write(j)
	w.Flush()
	if strings.ContainsAny(b.String(), "\x1b\x07\x7f\u009b\u0085") {
		t.Errorf("JSON output has a raw control character: %q", b.String())
	}
	var got map[string]string
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || got["v"] != v["v"] {
		t.Errorf("JSON output decodes to %q, %v; want %q", got["v"], err, v["v"])
	}
}

func hasControl(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

func FuzzTermSafe(f *testing.F) {
	for _, s := range []string{"a\x1b]0;x\x07", "\u009b", "\xc2", "ok\n", "\xff\xfe", "✓"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, s string, split int) {
		var text bytes.Buffer
		w := newTermSafe(&text, nil)
		if split <= 0 || split > len(s) {
			split = len(s)
		}
		w.Write([]byte(s[:split]))
		w.Write([]byte(s[split:]))
		w.Flush()
		if got := text.String(); hasControl(strings.ReplaceAll(got, "\ufffd", "")) || !utf8.ValidString(got) {
			t.Fatalf("text output of %q has a control character or invalid UTF-8: %q", s, got)
		}
		j, _ := json.Marshal(s)
		var js bytes.Buffer
		w = newTermSafe(&js, func() bool { return true })
		w.Write(j)
		w.Flush()
		var back string
		if err := json.Unmarshal(js.Bytes(), &back); err != nil {
			t.Fatalf("JSON output of %q does not decode: %v (%q)", s, err, js.String())
		}
		var want string
		json.Unmarshal(j, &want)
		if back != want {
			t.Fatalf("JSON output of %q decodes to %q, want %q", s, back, want)
		}
		if hasControl(strings.ReplaceAll(js.String(), "\ufffd", "")) {
			t.Fatalf("JSON output of %q has a control character: %q", s, js.String())
		}
	})
}
