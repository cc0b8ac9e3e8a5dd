package logentries

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/logfilter"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store/bolt"
)

func openStore(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func filter(t *testing.T, s string) *logfilter.Filter {
	t.Helper()
	f, err := logfilter.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return f
}

func list(t *testing.T, b *Book, q Query) []Entry {
	t.Helper()
	if q.Project == "" {
		q.Project = "p"
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, err := b.List(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

var t0 = time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)

func TestEntriesInGooglesShape(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	b := New(Config{Store: st})
	b.Output("p", "us-central1", "hello", "hello-00001", "i1", t0, "Listening on :8080", false)
	b.Output("p", "us-central1", "hello", "hello-00001", "i1", t0.Add(time.Second), `{"severity":"error","message":"boom"}`, false)
	b.Request("p", "us-central1", "hello", Request{Time: t0.Add(2 * time.Second), Revision: "hello-00001", Method: "GET", URL: "http://hello.example/x",
		Status: 200, Latency: 12 * time.Millisecond, RemoteIP: "10.0.0.1", UserAgent: "curl"})
	b.Request("p", "us-central1", "hello", Request{Time: t0.Add(3 * time.Second), Method: "GET", URL: "http://hello.example/", Status: 403, Reason: "caller lacks run.routes.invoke"})
	b.Output("p", "us-central1", "other", "other-00001", "i2", t0, "not hello", false)
	b.Output("q", "us-central1", "hello", "hello-00001", "i3", t0, "another project", false)

	got := list(t, b, Query{Filter: filter(t, `resource.type="cloud_run_revision" AND resource.labels.service_name="hello"`)})
	if len(got) != 4 {
		t.Fatalf("got %d entries, want hello's 4: %+v", len(got), got)
	}
	out, structuredLine, ok, denied := got[0], got[1], got[2], got[3]
	if out.LogName != "projects/p/logs/run.googleapis.com%2Fstdout" || out.TextPayload != "Listening on :8080" || out.Severity != "DEFAULT" ||
		out.Labels["instanceId"] != "i1" || !out.Timestamp.Equal(t0) || out.ReceiveTimestamp.IsZero() || out.InsertID == "" {
		t.Errorf("output entry: %+v", out)
	}
	want := map[string]string{"project_id": "p", "location": "us-central1", "service_name": "hello", "configuration_name": "hello", "revision_name": "hello-00001"}
	for k, v := range want {
		if out.Resource.Labels[k] != v || out.Resource.Type != "cloud_run_revision" {
			t.Errorf("resource %+v: want %s=%s", out.Resource, k, v)
		}
	}
	if structuredLine.Severity != "ERROR" || structuredLine.JSONPayload["message"] != "boom" || structuredLine.TextPayload != "" {
		t.Errorf("a JSON line is structured logging: %+v", structuredLine)
	}
	if ok.LogName != "projects/p/logs/run.googleapis.com%2Frequests" || ok.Severity != "INFO" || ok.HTTPRequest == nil ||
		*ok.HTTPRequest != (HTTPRequest{RequestMethod: "GET", RequestURL: "http://hello.example/x", Status: 200, Latency: "0.012s", RemoteIP: "10.0.0.1", UserAgent: "curl"}) {
		t.Errorf("request entry: %+v %+v", ok, ok.HTTPRequest)
	}
	if denied.Severity != "WARNING" || denied.HTTPRequest.Status != 403 || !strings.Contains(denied.TextPayload, "run.routes.invoke") {
		t.Errorf("refused request entry: %+v", denied)
	}
	raw, _ := json.Marshal(ok)
	for _, s := range []string{`"httpRequest":{"requestMethod":"GET"`, `"latency":"0.012s"`, `"timestamp":"2026-12-04T20:00:02Z"`} {
		if !strings.Contains(string(raw), s) {
			t.Errorf("JSON %s lacks %s", raw, s)
		}
	}

	for f, n := range map[string]int{
		`severity>=WARNING`:                     2, // hello's error line and its 403
		`httpRequest.status=403`:                1,
		`textPayload:listening`:                 1,
		`logName:"requests" AND -severity=INFO`: 1,
		`timestamp>"2026-12-04T20:00:01Z"`:      2,
		`resource.labels.revision_name="hello-00001" AND resource.labels.location="us-central1" AND resource.labels.service_name="hello"`: 3,
	} {
		if got := list(t, b, Query{Filter: filter(t, f)}); len(got) != n {
			t.Errorf("%s: %d entries, want %d: %+v", f, len(got), n, got)
		}
	}
}

func TestDurableAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openStore(t, path)
	b := New(Config{Store: st})
	ctx, cancel := context.WithCancel(context.Background())
	go b.Run(ctx)
	b.Output("p", "r", "s", "s-1", "i", t0, "before the restart", false)
	cancel()
	<-b.Done() // Run writes what is queued on its way out
	st.Close()

	st = openStore(t, path)
	defer st.Close()
	got := list(t, New(Config{Store: st}), Query{})
	if len(got) != 1 || got[0].TextPayload != "before the restart" {
		t.Fatalf("after reopening: %+v", got)
	}
}

// TestBoundedPerStream: each stream keeps about MaxPerStream entries, oldest
// deleted with the write that goes past the bound; a flood of requests does
// not push out what the instances printed.
func TestBoundedPerStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openStore(t, path)
	b := New(Config{Store: st, MaxPerStream: 5})
	for i := range 3 {
		for j := range 4 {
			b.Output("p", "r", "s", "s-1", "i", t0.Add(time.Duration(i*4+j)*time.Second), fmt.Sprintf("line %d", i*4+j), false)
		}
		b.Flush(context.Background())
	}
	for i := range 100 {
		b.Request("p", "r", "s", Request{Time: t0.Add(time.Duration(i) * time.Millisecond), Method: "GET", URL: "/", Status: 401})
		if i%10 == 9 {
			b.Flush(context.Background())
		}
	}
	lines := list(t, b, Query{Filter: filter(t, `logName:stdout`)})
	if len(lines) != 4 || lines[0].TextPayload != "line 8" || lines[3].TextPayload != "line 11" {
		t.Errorf("output after the flood: %+v, want the newest batch, lines 8 to 11", lines)
	}
	if reqs := list(t, b, Query{Filter: filter(t, `logName:requests`), PageSize: 1000}); len(reqs) > 5 || len(reqs) == 0 {
		t.Errorf("%d requests kept, want at most the bound 5", len(reqs))
	}
	// A book started on the same store (a restart) knows the batches there.
	st.Close()
	st = openStore(t, path)
	defer st.Close()
	b = New(Config{Store: st, MaxPerStream: 5})
	b.Output("p", "r", "s", "s-1", "i", t0.Add(time.Hour), "after restart", false)
	b.Output("p", "r", "s", "s-1", "i", t0.Add(time.Hour), "after restart", false)
	if lines := list(t, b, Query{Filter: filter(t, `logName:stdout`)}); len(lines) != 2 || lines[0].TextPayload != "after restart" {
		t.Errorf("after a restart, the bound still holds: %+v", lines)
	}
	kvs, _, _ := st.List(context.Background(), state.LogsPrefix)
	if len(kvs) > 4 {
		t.Errorf("%d batches stored, want old ones deleted", len(kvs))
	}
}

// TestFullQueueDrops: enqueueing never blocks; past the queue's size entries
// are dropped and counted.
func TestFullQueueDrops(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	b := New(Config{Store: st, QueueSize: 3})
	accepted := 0
	for i := range 5 {
		if b.Output("p", "r", "s", "s-1", "i", t0, fmt.Sprint(i), false) {
			accepted++
		}
	}
	if accepted != 3 || b.Dropped() != 2 {
		t.Errorf("accepted %d, dropped %d; want 3 and 2", accepted, b.Dropped())
	}
	if got := list(t, b, Query{}); len(got) != 3 {
		t.Errorf("%d entries written, want the 3 queued", len(got))
	}
	long := strings.Repeat("x", MaxTextBytes+100)
	b.Output("p", "r", "s", "s-1", "i", t0, long, false)
	got := list(t, b, Query{Filter: filter(t, `textPayload:"(cut)"`)})
	if len(got) != 1 || len(got[0].TextPayload) > MaxTextBytes+20 {
		t.Errorf("a long line is cut: %d entries", len(got))
	}
}

func TestOrderAndPages(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	b := New(Config{Store: st})
	for i := range 7 {
		b.Output("p", "r", "s", "s-1", "i", t0.Add(time.Duration(i)*time.Second), fmt.Sprint(i), false)
	}
	b.Flush(context.Background())
	for _, desc := range []bool{false, true} {
		var seen []string
		token := ""
		for pages := 0; ; pages++ {
			page, err := b.List(context.Background(), Query{Project: "p", Descending: desc, PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Entries {
				seen = append(seen, e.TextPayload)
			}
			if token = page.NextPageToken; token == "" || pages > 5 {
				break
			}
		}
		want := "0123456"
		if desc {
			want = "6543210"
		}
		if got := strings.Join(seen, ""); got != want {
			t.Errorf("descending=%v: %s, want %s", desc, got, want)
		}
	}
	if _, err := b.List(context.Background(), Query{Project: "p", PageToken: "forged!"}); err != ErrBadPageToken {
		t.Errorf("a forged page token: %v, want ErrBadPageToken", err)
	}
}

// TestAdminActivity: the audit trail's admin writes are Cloud Audit Logs'
// admin activity; refused requests are not (they are request entries).
func TestAdminActivity(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	trail := audit.New(audit.Config{Store: st})
	ctx := context.Background()
	trail.Record(ctx, audit.Record{Kind: audit.KindServiceCreate, Principal: "user:alice@example.com", Project: "p", Region: "r", Service: "s",
		Resource: "projects/p/locations/r/services/s", Status: 200})
	trail.Record(ctx, audit.Record{Kind: audit.KindServiceAccountCreate, Principal: "user:alice@example.com", Project: "p", Resource: "projects/p/serviceAccounts/x@p"})
	trail.Enqueue(audit.Record{Kind: audit.KindInvokeDenied, Project: "p", Region: "r", Service: "s", Resource: "projects/p/locations/r/services/s", Status: 403})
	trail.Flush(ctx)
	b := New(Config{Store: st, Audit: trail})

	got := list(t, b, Query{Filter: filter(t, `logName="projects/p/logs/cloudaudit.googleapis.com%2Factivity"`)})
	if len(got) != 2 {
		t.Fatalf("%d activity entries, want the 2 admin writes: %+v", len(got), got)
	}
	svc := list(t, b, Query{Filter: filter(t, `resource.type="cloud_run_revision" AND resource.labels.service_name="s"`)})
	if len(svc) != 1 || svc[0].ProtoPayload["methodName"] != "google.cloud.run.v1.Services.CreateService" ||
		svc[0].ProtoPayload["authenticationInfo"].(map[string]any)["principalEmail"] != "alice@example.com" || svc[0].Severity != "NOTICE" {
		t.Errorf("the service's activity: %+v", svc)
	}
	if other := list(t, b, Query{Project: "q"}); len(other) != 0 {
		t.Errorf("another project sees %d entries", len(other))
	}
}

// TestPruneByAge: batches older than MaxAge go, deleted services' too;
// newer ones stay.
func TestPruneByAge(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	now := t0
	b := New(Config{Store: st, MaxAge: 24 * time.Hour, Now: func() time.Time { return now }})
	b.Output("p", "r", "gone", "gone-1", "i", t0, "old", false)
	b.Flush(context.Background())
	b.Output("p", "r", "kept", "kept-1", "i", t0.Add(23*time.Hour), "new", false)
	b.Flush(context.Background())
	now = t0.Add(25 * time.Hour)
	if n, err := b.Prune(context.Background()); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want the 1 old batch", n, err)
	}
	got := list(t, b, Query{})
	if len(got) != 1 || got[0].TextPayload != "new" {
		t.Errorf("after pruning: %+v, want only the newer line", got)
	}
	if idx := b.index[state.LogStreamPrefix("p", "r", "gone", state.LogStreamOutput)]; idx.total != 0 || len(idx.batches) != 0 {
		t.Errorf("the pruned stream's index still counts %d entries", idx.total)
	}
}

// TestLines: a service's output as printed (structured lines too), newest
// kept, oldest first, of one revision when asked.
func TestLines(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	b := New(Config{Store: st})
	for i := range 5 {
		rev := "s-1"
		if i%2 == 1 {
			rev = "s-2"
		}
		b.Output("p", "r", "s", rev, "i", t0.Add(time.Duration(i)*time.Second), fmt.Sprintf(`{"n":%d}`, i), false)
	}
	b.Request("p", "r", "s", Request{Method: "GET", URL: "/", Status: 200})
	b.Output("p", "r", "other", "o-1", "i", t0, "other's", false)
	b.Flush(context.Background())
	text := func(lines []logs.Entry) string {
		var out []string
		for _, l := range lines {
			out = append(out, l.Text)
		}
		return strings.Join(out, " ")
	}
	got, err := b.Lines(context.Background(), "p", "r", "s", "", 3)
	if err != nil || text(got) != `{"n":2} {"n":3} {"n":4}` || got[0].Service != "s" || got[0].Instance != "i" {
		t.Errorf("newest 3: %q, %v", text(got), err)
	}
	if got, _ := b.Lines(context.Background(), "p", "r", "s", "s-2", 0); text(got) != `{"n":1} {"n":3}` {
		t.Errorf("revision s-2: %q", text(got))
	}
	if got, _ := b.Lines(context.Background(), "p", "r", "nope", "", 0); len(got) != 0 {
		t.Errorf("a service with no output: %q", text(got))
	}
}

// TestConcurrentWritersAndReaders: instances, the gateway and readers at
// once; every line enqueued is written once (run with -race).
func TestConcurrentWritersAndReaders(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	b := New(Config{Store: st, FlushInterval: time.Millisecond, BatchSize: 50})
	ctx, cancel := context.WithCancel(context.Background())
	go b.Run(ctx)
	defer func() { cancel(); <-b.Done() }()
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				for !b.Output("p", "r", "s", "s-1", fmt.Sprint(w), time.Time{}, fmt.Sprint(i), false) {
					b.Flush(ctx) // full: let the writer catch up, never block the caller
				}
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for range 20 {
			if _, err := b.List(ctx, Query{Project: "p", PageSize: 10}); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 5 {
		<-done
	}
	lines, err := func() ([]logs.Entry, error) { b.Flush(ctx); return b.Lines(ctx, "p", "r", "s", "", 0) }()
	if err != nil || len(lines) != 2000 {
		t.Errorf("%d lines written (%v), want 2000", len(lines), err)
	}
}

// TestStderrLines: a line the instance printed on stderr is an entry of
// run.googleapis.com/stderr, which a logName filter tells apart.
func TestStderrLines(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	b := New(Config{Store: st})
	b.Output("p", "us-central1", "hello", "hello-00001", "i1", t0, "to stdout", false)
	b.Output("p", "us-central1", "hello", "hello-00001", "i1", t0.Add(time.Second), "to stderr", true)
	got := list(t, b, Query{Filter: filter(t, `logName="projects/p/logs/run.googleapis.com%2Fstderr"`)})
	if len(got) != 1 || got[0].TextPayload != "to stderr" {
		t.Fatalf("stderr entries: %+v", got)
	}
	got = list(t, b, Query{Filter: filter(t, `logName="projects/p/logs/run.googleapis.com%2Fstdout"`)})
	if len(got) != 1 || got[0].TextPayload != "to stdout" {
		t.Fatalf("stdout entries: %+v", got)
	}
}
