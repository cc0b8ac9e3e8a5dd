package logfilter

import (
	"strings"
	"testing"
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
