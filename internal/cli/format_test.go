package cli

import (
	"bytes"
	"strings"
	"testing"
)

var formatDoc = []any{
	map[string]any{
		"metadata": map[string]any{"name": "a", "labels": map[string]any{"team": "x"}},
		"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "file:///bin/a", "args": []any{"-v", "-x"}}}}}},
		"status":   map[string]any{"url": "http://a"},
	},
	map[string]any{
		"metadata": map[string]any{"name": "b,c"},
		"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "nginx"}}}}},
	},
}

func TestFormatRender(t *testing.T) {
	tests := []struct {
		format string
		want   string
	}{
		{"value(spec.template.spec.containers[0].image)", "file:///bin/a\nnginx\n"},
		{"value(metadata.name,status.url)", "a\thttp://a\nb,c\t\n"},
		{"value(spec.template.spec.containers[0].args)", "-v;-x\n\n"},
		{"value(spec.template.spec.containers[0].args[-1])", "-x\n\n"},
		{"value(spec.template.spec.containers[1].image)", "\n\n"},
		{"value(metadata.labels)", "{\"team\":\"x\"}\n\n"},
		{"table(metadata.name, status.url)", "NAME  URL\na     http://a\nb,c   \n"},
		{"table(metadata.name:label=SERVICE)", "SERVICE\na\nb,c\n"},
		{"table[no-heading](metadata.name)", "a\nb,c\n"},
		{"csv(metadata.name,spec.template.spec.containers[0].image)", "name,image\na,file:///bin/a\n\"b,c\",nginx\n"},
		{"csv[no-heading](metadata.name)", "a\n\"b,c\"\n"},
		{"json", "[\n  {\n"},
		{"yaml", "- metadata:\n"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			f, err := parseFormat(tt.format)
			if err != nil {
				t.Fatalf("parseFormat(%q) = %v", tt.format, err)
			}
			var b bytes.Buffer
			if err := f.render(&b, formatDoc); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			if tt.format == "json" || tt.format == "yaml" {
				if !strings.HasPrefix(got, tt.want) {
					t.Errorf("got %q, want it to start with %q", got, tt.want)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFormatRefused(t *testing.T) {
	for _, s := range []string{
		"xml", "value", "table", "value(", "value(a[x])", "value(a[0)", "value(a[0]b)", "table(a:sort=1)",
		"json(a)", "table[box](a)", "value()", "value(a,,b)", "flattened",
	} {
		if f, err := parseFormat(s); err == nil {
			t.Errorf("parseFormat(%q) = %+v, want an error", s, f)
		} else if !strings.Contains(err.Error(), "value(spec.template.spec.containers[0].image)") {
			t.Errorf("parseFormat(%q) error %q, want it to show an example", s, err)
		}
	}
}

// FuzzParseFormat: --format is typed by people; parsing and rendering never
// panic.
func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"value(a.b[0].c)", "table[no-heading](a:label=X,b)", "csv(a[-1][2])", "json", "value(a[", "table(:)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fm, err := parseFormat(s)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := fm.render(&b, formatDoc); err != nil {
			t.Errorf("render(%q) = %v", s, err)
		}
	})
}
