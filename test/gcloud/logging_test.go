package gcloud

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// logEntry is the part of a LogEntry (gcloud logging read --format=json)
// the test reads.
type logEntry struct {
	LogName  string `json:"logName"`
	Resource struct {
		Type   string            `json:"type"`
		Labels map[string]string `json:"labels"`
	} `json:"resource"`
	Timestamp   string `json:"timestamp"`
	Severity    string `json:"severity"`
	TextPayload string `json:"textPayload"`
	HTTPRequest *struct {
		RequestMethod string `json:"requestMethod"`
		RequestURL    string `json:"requestUrl"`
		Status        int    `json:"status"`
		Latency       string `json:"latency"`
	} `json:"httpRequest"`
}

// TestGcloudLogging: the real `gcloud logging read` and `gcloud run services
// logs read` read a service's output and its requests (allowed, 401, 403)
// from Usher, before and after a restart; a principal without
// logging.logEntries.list is refused, and a filter Usher does not
// understand is an error naming it, never a match of everything.
func TestGcloudLogging(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("logged", helloBin)
	e.mustGcloud("iam", "service-accounts", "create", "no-logs")
	sa := saEmail("no-logs")

	owner := strings.TrimSpace(e.mustUsher("auth", "print-identity-token").stdout)
	e.expectGet(t, "the owner", url+"/allowed-path", 200, helloBody, "Authorization", bearer(owner))
	e.expectGet(t, "no credentials", url+"/anonymous-path", 401, "")
	saToken := strings.TrimSpace(e.mustUsher("auth", "print-identity-token", "--impersonate-service-account", sa, "--audiences", url).stdout)
	e.expectGet(t, "an account without run.routes.invoke", url+"/refused-path", 403, "", "Authorization", bearer(saToken))

	filter := `resource.type="cloud_run_revision" AND resource.labels.service_name="logged"`
	read := func(t *testing.T, when string) {
		t.Helper()
		// Instance output reaches the log a moment after the instance
		// printed it: poll for the line the instance prints on start.
		var entries []logEntry
		usherproc.Poll(t, 30*time.Second, "gcloud logging read showing the instance's output and the requests", func() (bool, string) {
			r := e.gcloud("logging", "read", filter, "--format=json", "--limit=200")
			entries = nil
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &entries) != nil {
				return false, r.String()
			}
			return hasOutput(entries, "hello: listening") && len(requestsByPath(entries)) >= 3, r.String()
		})
		byPath := requestsByPath(entries)
		for path, status := range map[string]int{"/allowed-path": 200, "/anonymous-path": 401, "/refused-path": 403} {
			req, ok := byPath[path]
			if !ok || req.HTTPRequest.Status != status || req.HTTPRequest.RequestMethod != "GET" {
				t.Errorf("%s: request log of %s: %+v, want GET %d", when, path, req, status)
			} else if lat := strings.TrimSuffix(req.HTTPRequest.Latency, "s"); lat == req.HTTPRequest.Latency || lat == "" {
				t.Errorf("%s: request log of %s: latency %q, want a duration in seconds (refusals too)", when, path, req.HTTPRequest.Latency)
			}
		}
		if ok := byPath["/allowed-path"]; ok.HTTPRequest != nil && (ok.Severity != "INFO" || !strings.HasSuffix(ok.HTTPRequest.Latency, "s") ||
			ok.Resource.Labels["revision_name"] == "" || ok.Resource.Labels["location"] != region) {
			t.Errorf("%s: the allowed request's entry: %+v", when, ok)
		}
		for _, en := range entries {
			if en.Resource.Type != "cloud_run_revision" || en.Resource.Labels["service_name"] != "logged" {
				t.Errorf("%s: the filter let through %+v", when, en)
			}
		}

		r := e.mustGcloud("run", "services", "logs", "read", "logged", "--region="+region, "--limit=200")
		for _, want := range []string{"hello: listening", "GET 200 ", "/allowed-path", "GET 403 ", "GET 401 "} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s: %s\nwant %q in gcloud run services logs read", when, r, want)
			}
		}
	}
	step(t, "read", func(t *testing.T) { read(t, "before the restart") })

	step(t, "durable across a restart", func(t *testing.T) {
		e.Stop()
		e.Restart(t, "")
		read(t, "after the restart")
		if r := e.mustUsher("run", "services", "logs", "read", "logged", "--region="+region); !strings.Contains(r.stdout, "hello: listening") {
			t.Errorf("%s\nwant the instance's output, kept across the restart", r)
		}
	})

	t.Run("the README's other reads", func(t *testing.T) {
		r := e.mustGcloud("logging", "read", `httpRequest.status>=400 AND severity>=WARNING`, "--freshness=1h", "--format=json")
		var entries []logEntry
		if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
			t.Fatalf("%s\n%v", r, err)
		}
		byPath := requestsByPath(entries)
		if _, ok := byPath["/allowed-path"]; ok || byPath["/anonymous-path"].Severity != "WARNING" || byPath["/refused-path"].Severity != "WARNING" {
			t.Errorf("%s\nwant the 401 and the 403, not the 200", r)
		}
		r = e.mustGcloud("logging", "read", `logName="projects/`+project+`/logs/cloudaudit.googleapis.com%2Factivity"`, "--format=json")
		if !strings.Contains(r.stdout, "google.cloud.run.v1.Services.CreateService") || !strings.Contains(r.stdout, `"service_name": "logged"`) {
			t.Errorf("%s\nwant the deploy as admin activity", r)
		}
	})

	t.Run("a principal without logging.logEntries.list", func(t *testing.T) {
		r := e.gcloud("logging", "read", filter, "--impersonate-service-account="+sa, "--format=json")
		if r.code == 0 || !strings.Contains(r.out(), "logging.logEntries.list") {
			t.Errorf("%s\nwant a failure naming logging.logEntries.list", r)
		}
		e.mustGcloud("projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+sa, "--role=roles/logging.viewer", "--condition=None")
		r = e.gcloud("logging", "read", filter, "--impersonate-service-account="+sa, "--format=json")
		var entries []logEntry
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &entries) != nil || !hasOutput(entries, "hello: listening") {
			t.Errorf("%s\nwant roles/logging.viewer to read the service's entries", r)
		}
	})

	t.Run("filters it does not understand", func(t *testing.T) {
		for filter, names := range map[string]string{
			`jsonPayload.user="mallory"`: "jsonPayload.user",
			`resource.type=`:             "needs a value",
			`Hello`:                      "Hello",
		} {
			r := e.gcloud("logging", "read", filter, "--format=json")
			if r.code == 0 || !strings.Contains(r.out(), "INVALID_ARGUMENT") || !strings.Contains(r.out(), names) {
				t.Errorf("%s\nwant INVALID_ARGUMENT naming %s", r, names)
			}
		}
	})
}

// hasOutput reports whether an entry of the instances' stderr (where
// examples/hello's log package writes) carries text.
func hasOutput(entries []logEntry, text string) bool {
	for _, en := range entries {
		if strings.HasSuffix(en.LogName, "/logs/run.googleapis.com%2Fstderr") && strings.Contains(en.TextPayload, text) {
			return true
		}
	}
	return false
}

// requestsByPath are the request entries by the path requested.
func requestsByPath(entries []logEntry) map[string]logEntry {
	out := map[string]logEntry{}
	for _, en := range entries {
		if !strings.HasSuffix(en.LogName, "/logs/run.googleapis.com%2Frequests") || en.HTTPRequest == nil {
			continue
		}
		for _, p := range []string{"/allowed-path", "/anonymous-path", "/refused-path"} {
			if strings.HasSuffix(en.HTTPRequest.RequestURL, p) {
				out[p] = en
			}
		}
	}
	return out
}
