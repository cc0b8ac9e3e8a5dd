// Package logfilter parses the subset of the Cloud Logging query language
// that `gcloud logging read` and `gcloud run services logs read` send, and
// matches log entries against it. The filter is untrusted input from any
// caller of the Logging API, so the parser is a small recursive-descent one
// with bounded length and nesting, and anything outside the subset is an
// error that names what was not understood (the API turns it into
// INVALID_ARGUMENT) rather than being ignored: a silently dropped clause
// would show a user entries they did not ask for.
//
// The subset: comparisons FIELD OP VALUE with OP one of = != < <= > >= and
// : (has: substring, case-insensitive, as Google's), joined by AND, OR, NOT,
// a leading '-' for NOT, implicit AND between adjacent terms, and
// parentheses; as in Google's language NOT binds tightest, then OR, then
// AND. Fields: resource.type, resource.labels.service_name,
// resource.labels.revision_name, resource.labels.location,
// resource.labels.project_id, resource.labels.configuration_name,
// resource.labels.job_name, severity (ordered DEFAULT < DEBUG < INFO <
// NOTICE < WARNING < ERROR < CRITICAL < ALERT < EMERGENCY), timestamp (RFC
// 3339, compared as time), logName, textPayload,
// httpRequest.status (compared as a number) and insertId. Values are bare
// words or double-quoted strings with backslash escapes.
package logfilter

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxLength bounds a filter's size, as Google bounds it (20,000 characters).
const MaxLength = 20000

// maxDepth bounds nesting so a hostile filter cannot exhaust the stack.
const maxDepth = 64

// Entry gives the value of a field of one log entry; ok is false when the
// entry has no such field (a comparison on it then does not match).
type Entry func(field string) (value string, ok bool)

// Filter is a parsed filter; the zero value (from an empty filter) matches all.
type Filter struct{ root node }

// Match reports whether the entry satisfies the filter.
func (f *Filter) Match(e Entry) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.match(e)
}

// Severities in Google's order; an entry's severity compares by index.
var Severities = []string{"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}

var severityRank = func() map[string]int {
	m := map[string]int{}
	for i, s := range Severities {
		m[s] = i
	}
	return m
}()

// Kind is how a field's values compare.
type Kind int

const (
	KindString Kind = iota
	KindSeverity
	KindTime
	KindNumber
	// KindName is a string of a resource list filter (Resource Manager's):
	// with "=" or ":", a value holding "*" is a case-insensitive pattern
	// for the whole string, "*" matching any run of characters.
	KindName
)

// Fields says which fields a filter may name, and how each compares; the
// same language serves other Google list filters (Resource Manager's).
type Fields func(field string) (Kind, bool)

// logFields are a log entry's fields.
var logFields = Fields(func(f string) (Kind, bool) { k, ok := fields[f]; return k, ok })

var fields = map[string]Kind{
	"resource.type":                      KindString,
	"resource.labels.service_name":       KindString,
	"resource.labels.revision_name":      KindString,
	"resource.labels.location":           KindString,
	"resource.labels.project_id":         KindString,
	"resource.labels.configuration_name": KindString,
	"resource.labels.job_name":           KindString,
	"severity":                           KindSeverity,
	"timestamp":                          KindTime,
	"receiveTimestamp":                   KindTime,
	"logName":                            KindString,
	"textPayload":                        KindString,
	"insertId":                           KindString,
	"httpRequest.status":                 KindNumber,
	"httpRequest.requestMethod":          KindString,
	"httpRequest.requestUrl":             KindString,
}

type node interface{ match(Entry) bool }

type andNode struct{ l, r node }
type orNode struct{ l, r node }
type notNode struct{ n node }

func (n andNode) match(e Entry) bool { return n.l.match(e) && n.r.match(e) }
func (n orNode) match(e Entry) bool  { return n.l.match(e) || n.r.match(e) }
func (n notNode) match(e Entry) bool { return !n.n.match(e) }

type cmpNode struct {
	field string
	kind  Kind
	op    string
	text  string    // the value as written (strings, has)
	rank  int       // severity
	when  time.Time // timestamp
	num   float64   // number
}

func (c cmpNode) match(e Entry) bool {
	v, ok := e(c.field)
	if !ok {
		return false
	}
	if c.kind == KindName && (c.op == ":" || c.op == "=") && strings.Contains(c.text, "*") {
		return wildcardMatch(strings.ToLower(c.text), strings.ToLower(v))
	}
	if c.op == ":" {
		return strings.Contains(strings.ToLower(v), strings.ToLower(c.text))
	}
	var d int
	switch c.kind {
	case KindSeverity:
		r, ok := severityRank[strings.ToUpper(v)]
		if !ok {
			return false
		}
		d = r - c.rank
	case KindTime:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return false
		}
		d = t.Compare(c.when)
	case KindNumber:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return false
		}
		switch {
		case n < c.num:
			d = -1
		case n > c.num:
			d = 1
		}
	default:
		d = strings.Compare(v, c.text)
	}
	switch c.op {
	case "=":
		return d == 0
	case "!=":
		return d != 0
	case "<":
		return d < 0
	case "<=":
		return d <= 0
	case ">":
		return d > 0
	default: // ">="
		return d >= 0
	}
}

// wildcardMatch reports whether s is all of pattern, each "*" of which
// matches any run of characters.
func wildcardMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(parts) > 1 && strings.HasSuffix(s, last)
}

// Parse parses a log filter; an empty or blank filter matches everything.
func Parse(s string) (*Filter, error) { return ParseFields(s, logFields) }

// ParseFields parses a filter over the fields known names.
func ParseFields(s string, known Fields) (*Filter, error) {
	if len(s) > MaxLength {
		return nil, fmt.Errorf("filter is %d characters; at most %d", len(s), MaxLength)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, known: known}
	if len(toks) == 0 {
		return &Filter{}, nil
	}
	root, err := p.and(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unsupported filter syntax at %q", p.toks[p.pos].text)
	}
	return &Filter{root: root}, nil
}

type tokKind int

const (
	tWord tokKind = iota // bare word: field path, value, AND/OR/NOT
	tString
	tOp
	tLParen
	tRParen
	tMinus
)

type token struct {
	kind tokKind
	text string
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{tLParen, "("})
			i++
		case c == ')':
			toks = append(toks, token{tRParen, ")"})
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
					if j == len(s) {
						break
					}
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in filter at offset %d", i)
			}
			toks = append(toks, token{tString, b.String()})
			i = j + 1
		case c == '=' || c == ':':
			toks = append(toks, token{tOp, string(c)})
			i++
		case c == '<' || c == '>' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				toks = append(toks, token{tOp, s[i : i+2]})
				i += 2
			} else if c == '!' {
				return nil, fmt.Errorf("unsupported filter syntax %q", "!")
			} else {
				toks = append(toks, token{tOp, string(c)})
				i++
			}
		case c == '-' && (len(toks) == 0 || toks[len(toks)-1].kind != tOp):
			toks = append(toks, token{tMinus, "-"})
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()\"=:<>!", rune(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unsupported filter syntax %q", s[i:i+1])
			}
			toks = append(toks, token{tWord, s[i:j]})
			i = j
		}
	}
	return toks, nil
}

type parser struct {
	toks  []token
	pos   int
	known Fields
}

func (p *parser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{}, false
}

func (p *parser) isWord(w string) bool {
	t, ok := p.peek()
	return ok && t.kind == tWord && t.text == w
}

// and parses conjunctions, the loosest binding: in Cloud Logging's
// language OR binds tighter than AND (and implicit AND), so
// "a OR b AND c" is "(a OR b) AND c", which is also what gcloud relies on
// when it appends "AND timestamp>=…" to a user's filter.
func (p *parser) and(depth int) (node, error) {
	l, err := p.or(depth)
	if err != nil {
		return nil, err
	}
	for {
		t, ok := p.peek()
		if !ok || t.kind == tRParen {
			return l, nil
		}
		if p.isWord("AND") {
			p.pos++
		}
		r, err := p.or(depth)
		if err != nil {
			return nil, err
		}
		l = andNode{l, r}
	}
}

func (p *parser) or(depth int) (node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.isWord("OR") {
		p.pos++
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = orNode{l, r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("filter nests deeper than %d", maxDepth)
	}
	t, ok := p.peek()
	if !ok {
		return nil, fmt.Errorf("filter ends where a comparison was expected")
	}
	switch {
	case t.kind == tMinus || (t.kind == tWord && t.text == "NOT"):
		p.pos++
		n, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case t.kind == tLParen:
		p.pos++
		n, err := p.and(depth + 1)
		if err != nil {
			return nil, err
		}
		if t, ok := p.peek(); !ok || t.kind != tRParen {
			return nil, fmt.Errorf("filter has an unclosed parenthesis")
		}
		p.pos++
		return n, nil
	case t.kind == tWord:
		return p.comparison()
	default:
		return nil, fmt.Errorf("unsupported filter syntax at %q", t.text)
	}
}

func (p *parser) comparison() (node, error) {
	field := p.toks[p.pos].text
	p.pos++
	op, ok := p.peek()
	if !ok || op.kind != tOp {
		// A bare word is a global text search in Google's language.
		return nil, fmt.Errorf("unsupported filter syntax: bare term %q (global search) is not supported; compare a field, e.g. textPayload:%q", field, field)
	}
	k, known := p.known(field)
	if !known {
		return nil, fmt.Errorf("unsupported filter field %q", field)
	}
	p.pos++
	v, ok := p.peek()
	if !ok || (v.kind != tWord && v.kind != tString) {
		return nil, fmt.Errorf("filter: %s %s needs a value", field, op.text)
	}
	p.pos++
	c := cmpNode{field: field, kind: k, op: op.text, text: v.text}
	if op.text == ":" {
		return c, nil
	}
	switch k {
	case KindSeverity:
		r, ok := severityRank[strings.ToUpper(v.text)]
		if !ok {
			return nil, fmt.Errorf("filter: unknown severity %q (one of %s)", v.text, strings.Join(Severities, ", "))
		}
		c.rank = r
	case KindTime:
		t, err := time.Parse(time.RFC3339Nano, v.text)
		if err != nil {
			return nil, fmt.Errorf("filter: %s needs an RFC 3339 time, not %q", field, v.text)
		}
		c.when = t
	case KindNumber:
		n, err := strconv.ParseFloat(v.text, 64)
		if err != nil {
			return nil, fmt.Errorf("filter: %s needs a number, not %q", field, v.text)
		}
		c.num = n
	}
	return c, nil
}

// Pinned returns the value field must equal for any entry to match: the
// value of a FIELD = VALUE comparison that is a top-level conjunct of the
// filter. Readers use it to read only what can match (one service's logs);
// ok is false when the filter does not pin field.
func (f *Filter) Pinned(field string) (value string, ok bool) {
	if f == nil {
		return "", false
	}
	for _, c := range conjuncts(f.root) {
		if c.field == field && c.op == "=" {
			return c.text, true
		}
	}
	return "", false
}

// Since returns the latest lower bound on timestamp among the filter's
// top-level conjuncts (timestamp >= T or timestamp > T): no entry older
// matches. ok is false when there is none.
func (f *Filter) Since() (t time.Time, ok bool) {
	if f == nil {
		return time.Time{}, false
	}
	for _, c := range conjuncts(f.root) {
		if c.field == "timestamp" && (c.op == ">=" || c.op == ">") && (!ok || c.when.After(t)) {
			t, ok = c.when, true
		}
	}
	return t, ok
}

// conjuncts are the comparisons every matching entry satisfies: those
// joined to the root by AND alone.
func conjuncts(n node) []cmpNode {
	switch n := n.(type) {
	case andNode:
		return append(conjuncts(n.l), conjuncts(n.r)...)
	case cmpNode:
		return []cmpNode{n}
	}
	return nil
}
