package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// outputFormat is a parsed --format: gcloud's NAME[ATTRS](KEYS) for the
// names Usher implements. A format or attribute it does not implement is an
// error, never ignored.
type outputFormat struct {
	name      string // json, yaml, value, table, csv
	noHeading bool   // [no-heading] (table, csv)
	keys      []formatKey
}

// formatKey is one projection: a path such as
// spec.template.spec.containers[0].image, with an optional :label=NAME.
type formatKey struct {
	path  []pathStep
	label string
}

// pathStep is one field name, then indexes into lists ([0], [-1]).
type pathStep struct {
	field   string
	indexes []int
}

const formatHelp = "use json, yaml, value(KEY,...), table(KEY[:label=NAME],...) or csv(KEY,...), e.g. value(spec.template.spec.containers[0].image)"

// parseFormat parses a --format value.
func parseFormat(s string) (*outputFormat, error) {
	s = strings.TrimSpace(s)
	bad := func(why string, args ...any) (*outputFormat, error) {
		return nil, fmt.Errorf("--format=%s: %s; %s", s, fmt.Sprintf(why, args...), formatHelp)
	}
	name, rest := s, ""
	if i := strings.IndexAny(s, "[("); i >= 0 {
		name, rest = s[:i], s[i:]
	}
	f := &outputFormat{name: strings.TrimSpace(name)}
	switch f.name {
	case "json", "yaml", "value", "table", "csv":
	default:
		return bad("unknown format %q", f.name)
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("unclosed [")
		}
		for _, attr := range strings.Split(rest[1:end], ",") {
			switch attr = strings.TrimSpace(attr); {
			case attr == "":
			case attr == "no-heading" && (f.name == "table" || f.name == "csv"):
				f.noHeading = true
			default:
				return bad("attribute %q is not supported by Usher", attr)
			}
		}
		rest = rest[end+1:]
	}
	if rest == "" {
		if f.name == "value" || f.name == "table" || f.name == "csv" {
			return bad("%s needs keys, e.g. %s(metadata.name)", f.name, f.name)
		}
		return f, nil
	}
	if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
		return bad("expected (KEYS) after %s", f.name)
	}
	if f.name == "json" || f.name == "yaml" {
		return bad("%s takes no keys", f.name)
	}
	for _, k := range strings.Split(rest[1:len(rest)-1], ",") {
		key, err := parseKey(strings.TrimSpace(k))
		if err != nil {
			return bad("%v", err)
		}
		f.keys = append(f.keys, key)
	}
	return f, nil
}

func parseKey(s string) (formatKey, error) {
	var k formatKey
	parts := strings.Split(s, ":")
	for _, attr := range parts[1:] {
		name, val, _ := strings.Cut(attr, "=")
		if strings.TrimSpace(name) != "label" {
			return k, fmt.Errorf("key attribute %q is not supported by Usher (only label=NAME)", attr)
		}
		k.label = strings.Trim(strings.TrimSpace(val), `'"`)
	}
	path := strings.TrimSpace(parts[0])
	if path == "" {
		return k, fmt.Errorf("empty key")
	}
	for _, seg := range strings.Split(path, ".") {
		field, idx, _ := strings.Cut(seg, "[")
		if field == "" || strings.ContainsAny(field, "]() ") {
			return k, fmt.Errorf("%q is not a key", path)
		}
		st := pathStep{field: field}
		for idx != "" {
			n, after, ok := strings.Cut(idx, "]")
			i, err := strconv.Atoi(n)
			if !ok || err != nil {
				return k, fmt.Errorf("%q: an index must be a whole number, e.g. [0]", path)
			}
			st.indexes = append(st.indexes, i)
			if after == "" {
				break
			}
			if !strings.HasPrefix(after, "[") {
				return k, fmt.Errorf("%q is not a key", path)
			}
			idx = after[1:]
		}
		k.path = append(k.path, st)
	}
	return k, nil
}

// heading is the column name gcloud shows: the label, else the last field
// name in capitals.
func (k formatKey) heading(upper bool) string {
	if k.label != "" {
		return k.label
	}
	h := k.path[len(k.path)-1].field
	if upper {
		return strings.ToUpper(h)
	}
	return h
}

// lookup returns the value at the key's path in a JSON document, or nil.
func (k formatKey) lookup(doc any) any {
	cur := doc
	for _, st := range k.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[st.field]
		for _, i := range st.indexes {
			l, ok := cur.([]any)
			if !ok {
				return nil
			}
			if i < 0 {
				i += len(l)
			}
			if i < 0 || i >= len(l) {
				return nil
			}
			cur = l[i]
		}
	}
	return cur
}

// render writes v (a value or a list of them) in this format.
func (f *outputFormat) render(w io.Writer, v any) error {
	switch f.name {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "yaml":
		return printYAML(w, v)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return err
	}
	items, ok := doc.([]any)
	if !ok {
		items = []any{doc}
	}
	var rows [][]string
	for _, item := range items {
		row := make([]string, len(f.keys))
		for i, k := range f.keys {
			row[i] = cell(k.lookup(item))
		}
		rows = append(rows, row)
	}
	var header []string
	for _, k := range f.keys {
		header = append(header, k.heading(f.name == "table"))
	}
	switch f.name {
	case "value":
		for _, r := range rows {
			if _, err := fmt.Fprintln(w, strings.Join(r, "\t")); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		if !f.noHeading {
			cw.Write(header)
		}
		cw.WriteAll(rows)
		return cw.Error()
	default: // table
		if f.noHeading {
			return tableRows(w, rows)
		}
		return table(w, header, rows)
	}
}

// cell renders one value as gcloud's value() does: strings as is, lists
// joined with ";", everything else as JSON.
func cell(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, cell(e))
		}
		return strings.Join(out, ";")
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}
