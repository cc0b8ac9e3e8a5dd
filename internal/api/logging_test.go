package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logentries"
)

// TestLogEntriesList drives POST /v2/entries:list as gcloud calls it: who
// may read, what a filter selects, and the refusals (a filter it does not
// understand, a resource it does not serve) in Google's error shape.
func TestLogEntriesList(t *testing.T) {
	var book *logentries.Book
	h := newHarness(t, func(cfg *admin.Config) {
		trail := audit.New(audit.Config{Store: cfg.Store})
		book = logentries.New(logentries.Config{Store: cfg.Store, Audit: trail})
		ctx, cancel := context.WithCancel(context.Background())
		go trail.Run(ctx)
		go book.Run(ctx)
		t.Cleanup(func() { cancel(); <-trail.Done(); <-book.Done() })
		cfg.Audit, cfg.Entries = trail, book
	})
	book.Output(project, region, "hello", "hello-00001", "i1", time.Time{}, "hello from stdout", false)
	book.Request(project, region, "hello", logentries.Request{Revision: "hello-00001", Method: "GET", URL: "http://hello/", Status: 200, Latency: time.Millisecond})
	book.Request(project, region, "hello", logentries.Request{Method: "GET", URL: "http://hello/", Status: 403, Reason: "no run.routes.invoke"})
	book.Output(project, region, "other", "other-00001", "i2", time.Time{}, "not hello", false)
	h.grantAs(client.ProjectPath(project), "roles/logging.viewer", "user:logs@example.com", nil)

	list := func(email string, body map[string]any) response {
		t.Helper()
		return h.call(h.token(email), "POST", "/v2/entries:list", body)
	}
	serviceFilter := `resource.type="cloud_run_revision" AND resource.labels.service_name="hello"`
	r := list("logs@example.com", map[string]any{"resourceNames": []string{"projects/" + project}, "filter": serviceFilter, "orderBy": "timestamp desc", "pageSize": 1000})
	entries, _ := r.body["entries"].([]any)
	if r.status != 200 || len(entries) != 3 {
		t.Fatalf("roles/logging.viewer: %d %s, want hello's 3 entries", r.status, r.raw)
	}
	for _, want := range []string{`"textPayload": "hello from stdout"`, `run.googleapis.com%2Frequests`, `"status": 403`, `"latency": "0.001s"`} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("entries lack %s: %s", want, r.raw)
		}
	}
	// Pages: one entry at a time, all three reached.
	seen, token := 0, ""
	for range 5 {
		r := list(owner, map[string]any{"resourceNames": []string{"projects/" + project}, "filter": serviceFilter, "pageSize": 1, "pageToken": token})
		got, _ := r.body["entries"].([]any)
		seen += len(got)
		if token, _ = r.body["nextPageToken"].(string); token == "" {
			break
		}
	}
	if seen != 3 {
		t.Errorf("paging by 1: saw %d entries, want 3", seen)
	}

	refusals := []struct {
		who    string
		body   map[string]any
		status int
		names  string
	}{
		{"alice@example.com", map[string]any{"resourceNames": []string{"projects/" + project}}, 403, iam.PermLogEntriesList},
		{owner, map[string]any{"resourceNames": []string{"projects/" + project}, "filter": `jsonPayload.user="x"`}, 400, "jsonPayload.user"},
		{owner, map[string]any{"resourceNames": []string{"projects/" + project}, "filter": `hello`}, 400, "hello"},
		{owner, map[string]any{"resourceNames": []string{"projects/" + project}, "orderBy": "severity"}, 400, "orderBy"},
		{owner, map[string]any{"resourceNames": []string{"projects/" + project}, "pageSize": 5000}, 400, "pageSize"},
		{owner, map[string]any{"resourceNames": []string{"projects/" + project}, "pageToken": "forged"}, 400, "pageToken"},
		{owner, map[string]any{"resourceNames": []string{"organizations/1"}}, 400, "organizations/1"},
		{owner, map[string]any{}, 400, "resourceNames"},
	}
	for _, tt := range refusals {
		r := list(tt.who, tt.body)
		if r.status != tt.status || !strings.Contains(r.raw, tt.names) || r.errStatus() == "" {
			t.Errorf("%s %v: %d %s; want %d in Google's error shape naming %s", tt.who, tt.body, r.status, r.raw, tt.status, tt.names)
		}
	}
}
