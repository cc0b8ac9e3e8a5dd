package logfilter

import (
	"strings"
	"testing"
	"time"
)

func entry(m map[string]string) Entry {
	return func(f string) (string, bool) { v, ok := m[f]; return v, ok }
}

var stdout = entry(map[string]string{
	"resource.type":                "cloud_run_revision",
	"resource.labels.service_name": "hello",
	"resource.labels.location":     "us-central1",
	"severity":                     "INFO",
	"timestamp":                    "2026-12-04T20:00:00.5Z",
	"logName":                      "projects/p/logs/run.googleapis.com%2Fstdout",
	"textPayload":                  "Listening on :8080",
})

var denied = entry(map[string]string{
	"resource.type":                "cloud_run_revision",
	"resource.labels.service_name": "hello",
	"severity":                     "WARNING",
	"timestamp":                    "2026-12-04T21:00:00Z",
	"logName":                      "projects/p/logs/run.googleapis.com%2Frequests",
	"httpRequest.status":           "403",
})

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		filter         string
		stdout, denied bool
	}{
		{"", true, true},
		// Exactly what `gcloud run services logs read hello --region=us-central1` sends.
		{"resource.type = cloud_run_revision \n AND resource.labels.service_name = hello \n AND resource.labels.location = us-central1 \n AND severity >= DEFAULT \n AND timestamp>=\"2026-12-04T19:00:00.000000Z\"", true, false},
		{`resource.type = "cloud_run_revision" resource.labels.service_name = "hello" resource.labels.location = "us-central1" severity >= DEFAULT`, true, false},
		{`resource.type="cloud_run_revision" AND resource.labels.service_name="hello"`, true, true},
		{`severity>=WARNING`, false, true},
		{`severity>=warning`, false, true},
		{`severity<WARNING`, true, false},
		{`timestamp>="2026-12-04T20:30:00Z"`, false, true},
		{`timestamp<"2026-12-04T20:30:00Z"`, true, false},
		{`logName="projects/p/logs/run.googleapis.com%2Fstdout" OR logName="projects/p/logs/run.googleapis.com%2Frequests"`, true, true},
		{`logName:"requests"`, false, true},
		{`textPayload:LISTENING`, true, false},
		{`NOT severity=INFO`, false, true},
		{`-severity=INFO`, false, true},
		{`(severity=INFO OR severity=ERROR) AND resource.labels.service_name="hello"`, true, false},
		{`httpRequest.status>=400`, false, true},
		{`httpRequest.status!=403`, false, false}, // stdout has no status: no match
		{`resource.labels.service_name!="other"`, true, true},
		{`resource.labels.service_name="a\"b"`, false, false},
		// OR binds tighter than AND, as in Google's language: gcloud
		// appends "AND timestamp>=…" to the user's filter unparenthesized.
		{`severity=WARNING OR textPayload:listening AND timestamp>="2026-12-04T20:30:00Z"`, false, true},
		{`severity=WARNING OR textPayload:listening AND timestamp<"2026-12-04T20:30:00Z"`, true, false},
		{`NOT severity=INFO OR severity=INFO AND logName:stdout`, true, false},
	} {
		f, err := Parse(c.filter)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.filter, err)
		}
		if got := f.Match(stdout); got != c.stdout {
			t.Errorf("%q on stdout entry = %v, want %v", c.filter, got, c.stdout)
		}
		if got := f.Match(denied); got != c.denied {
			t.Errorf("%q on denied entry = %v, want %v", c.filter, got, c.denied)
		}
	}
}

func TestRefusesWhatItDoesNotSupport(t *testing.T) {
	for filter, names := range map[string]string{
		`jsonPayload.message="x"`:           "jsonPayload.message",
		`hello`:                             "hello",
		`severity=LOUD`:                     "LOUD",
		`timestamp>="yesterday"`:            "yesterday",
		`severity =~ "INFO"`:                "~",
		`resource.type="x`:                  "unterminated",
		`(severity=INFO`:                    "parenthesis",
		`severity=`:                         "needs a value",
		`severity=INFO OR`:                  "expected",
		`httpRequest.status>=bad`:           "bad",
		`severity=INFO)`:                    ")",
		`SEARCH("x")`:                       "SEARCH",
		strings.Repeat("(", 100) + "a=b":    "deeper",
		strings.Repeat("x", MaxLength+1):    "at most",
		`labels."run.googleapis.com/x"="y"`: "labels.",
	} {
		_, err := Parse(filter)
		if err == nil {
			t.Errorf("Parse(%.40q) accepted an unsupported filter", filter)
			continue
		}
		if !strings.Contains(err.Error(), names) {
			t.Errorf("Parse(%.40q) = %v; want the error to name %q", filter, err, names)
		}
	}
}

func TestPinnedAndSince(t *testing.T) {
	f, err := Parse(`resource.type = cloud_run_revision AND resource.labels.service_name = "hello" AND (resource.labels.location="a" OR resource.labels.location="b") AND timestamp>="2026-12-04T19:00:00Z" timestamp>"2026-12-04T20:00:00Z" AND NOT logName="x"`)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Pinned("resource.labels.service_name"); !ok || v != "hello" {
		t.Errorf("Pinned(service_name) = %q, %v; want hello", v, ok)
	}
	for _, field := range []string{"resource.labels.location", "logName", "severity"} {
		if v, ok := f.Pinned(field); ok {
			t.Errorf("Pinned(%s) = %q; the filter does not pin it", field, v)
		}
	}
	if since, ok := f.Since(); !ok || !since.Equal(time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)) {
		t.Errorf("Since = %v, %v; want the later bound 20:00", since, ok)
	}
	or, _ := Parse(`resource.labels.service_name="a" OR timestamp>="2026-12-04T19:00:00Z"`)
	if _, ok := or.Pinned("resource.labels.service_name"); ok {
		t.Error("a disjunct pins nothing")
	}
	if _, ok := or.Since(); ok {
		t.Error("a disjunct bounds nothing")
	}
	var empty *Filter
	if _, ok := empty.Pinned("severity"); ok {
		t.Error("the empty filter pins nothing")
	}
}

// FuzzParse: any input either fails cleanly or yields a filter that can be
// matched without panicking; parsing never hangs or recurses without bound.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`resource.type = "cloud_run_revision" resource.labels.service_name = "hello" severity >= DEFAULT`,
		`timestamp>="2026-12-04T20:30:00Z" AND (logName:"stdout" OR -severity<ERROR)`,
		`NOT NOT (httpRequest.status>=400)`, `"\`, `((((`, `a:-b`, `!=`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Parse(s)
		if err != nil {
			if flt != nil {
				t.Fatalf("Parse(%q) returned a filter and an error", s)
			}
			return
		}
		flt.Match(stdout)
		flt.Match(denied)
	})
}

func TestWildcardNames(t *testing.T) {
	known := Fields(func(f string) (Kind, bool) { return KindName, f == "name" })
	project := entry(map[string]string{"name": "Team Gcloud"})
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{"name:Team*", true},
		{"name:team*", true},
		{"name=*gcloud", true},
		{"name:T*m*G*d", true},
		{"name:*", true},
		{"name:Gcloud*", false},
		{"name:*Team", false},
		{"name:T*x*", false},
		{"name:Team", true}, // has, without a pattern: a substring
		{"name=Team", false},
	} {
		f, err := ParseFields(c.filter, known)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		if got := f.Match(project); got != c.want {
			t.Errorf("%s: got %v, want %v", c.filter, got, c.want)
		}
	}
}

// FuzzWildcardFilter feeds resource-list filters (names with wildcards)
// through the parser and matcher.
func FuzzWildcardFilter(f *testing.F) {
	for _, s := range []string{`name:Team*`, `name=*a*b**`, `lifecycleState:ACTIVE AND (name:"*")`, `name:***`} {
		f.Add(s, "Team Gcloud")
	}
	known := Fields(func(f string) (Kind, bool) {
		if f == "name" {
			return KindName, true
		}
		return KindString, f == "lifecycleState"
	})
	f.Fuzz(func(t *testing.T, s, name string) {
		flt, err := ParseFields(s, known)
		if err != nil {
			return
		}
		flt.Match(entry(map[string]string{"name": name, "lifecycleState": "ACTIVE"}))
	})
}
