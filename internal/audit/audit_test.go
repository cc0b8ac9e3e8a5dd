package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

const project = "p"

func openStore(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newStore(t *testing.T) *bolt.Store {
	t.Helper()
	st := openStore(t, filepath.Join(t.TempDir(), "usher.db"))
	t.Cleanup(func() { st.Close() })
	return st
}

// clock is a settable time source.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// run starts tr.Run and returns a function that stops it and waits.
func run(t *testing.T, tr *Trail) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go tr.Run(ctx)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-tr.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return 30s after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

// batches lists the stored batches, admin records' then refusals'.
func batches(t *testing.T, st store.Store) []store.Entry {
	t.Helper()
	var all []store.Entry
	for _, prefix := range []string{state.AccessPrefix, state.AuditPrefix, state.DenialsPrefix} {
		entries, _, err := st.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, entries...)
	}
	return all
}

func kinds(rs []Record) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Kind+"@"+r.Service)
	}
	return out
}

func TestReadFilters(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: t0}
	tr := New(Config{Store: newStore(t), Now: clk.Now})
	records := []Record{
		{Kind: KindServiceCreate, Principal: "user:owner@example.com", Service: "hello", Region: "us-central1"},
		{Kind: KindSetIamPolicy, Principal: "user:owner@example.com", Service: "hello", Region: "us-central1"},
		{Kind: KindInvokeDenied, Principal: "serviceAccount:sa@p.iam.gserviceaccount.com", Service: "hello", Region: "us-central1", Status: 403},
		{Kind: KindInvokeDenied, Service: "hello", Region: "us-central1", Status: 401},
		{Kind: KindServiceCreate, Principal: "user:dev@example.com", Service: "other", Region: "europe-west1"},
		{Kind: KindServiceDelete, Principal: "user:dev@example.com", Service: "other", Region: "europe-west1"},
	}
	for i, r := range records {
		r.Project = project
		r.Time = t0.Add(time.Duration(i) * time.Hour)
		if err := tr.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Another project's record is never returned.
	if err := tr.Record(ctx, Record{Project: "q", Kind: KindServiceCreate, Service: "hello", Time: t0}); err != nil {
		t.Fatal(err)
	}
	clk.now = t0.Add(10 * time.Hour)

	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"all, newest first", Query{}, []string{"service.delete@other", "service.create@other", "invoke.denied@hello", "invoke.denied@hello", "iam.setPolicy@hello", "service.create@hello"}},
		{"service", Query{Service: "other"}, []string{"service.delete@other", "service.create@other"}},
		{"region", Query{Region: "us-central1", Kind: "service"}, []string{"service.create@hello"}},
		{"kind exact", Query{Kind: KindSetIamPolicy}, []string{"iam.setPolicy@hello"}},
		{"kind prefix", Query{Kind: "service"}, []string{"service.delete@other", "service.create@other", "service.create@hello"}},
		{"kind prefix with dot", Query{Kind: "invoke."}, []string{"invoke.denied@hello", "invoke.denied@hello"}},
		{"kind is no substring", Query{Kind: "serv"}, []string{}},
		{"principal member", Query{Principal: "user:dev@example.com"}, []string{"service.delete@other", "service.create@other"}},
		{"principal bare email", Query{Principal: "sa@p.iam.gserviceaccount.com"}, []string{"invoke.denied@hello"}},
		{"principal anonymous", Query{Principal: "anonymous"}, []string{"invoke.denied@hello"}},
		{"since", Query{Since: t0.Add(4 * time.Hour)}, []string{"service.delete@other", "service.create@other"}},
		{"since and until, inclusive", Query{Since: t0.Add(1 * time.Hour), Until: t0.Add(2 * time.Hour)}, []string{"invoke.denied@hello", "iam.setPolicy@hello"}},
		{"range before any record", Query{Since: t0.Add(-72 * time.Hour), Until: t0.Add(-48 * time.Hour)}, []string{}},
		{"combined", Query{Service: "hello", Kind: "invoke", Principal: "serviceAccount:sa@p.iam.gserviceaccount.com"}, []string{"invoke.denied@hello"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Project = project
			page, err := tr.Read(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(page.Records); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadPages(t *testing.T) {
	ctx := context.Background()
	tr := New(Config{Store: newStore(t)})
	for i := range 7 {
		// Pairs share a time: pages must still neither skip nor repeat.
		if err := tr.Record(ctx, Record{Project: project, Kind: KindServiceCreate, Service: fmt.Sprintf("s%d", i), Time: t0.Add(time.Duration(i/2) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	q := Query{Project: project, PageSize: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("more pages than records")
		}
		page, err := tr.Read(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Records) > 3 {
			t.Fatalf("page of %d records, want at most 3", len(page.Records))
		}
		for _, r := range page.Records {
			got = append(got, r.Service)
		}
		if page.NextPageToken == "" {
			break
		}
		q.PageToken = page.NextPageToken
	}
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			t.Errorf("record %s returned twice", s)
		}
		seen[s] = true
	}
	if len(got) != 7 {
		t.Errorf("got %d records over all pages (%q), want 7", len(got), got)
	}
	if _, err := tr.Read(ctx, Query{Project: project, PageToken: "not a token!"}); err != ErrBadPageToken {
		t.Errorf("bad page token: got %v, want ErrBadPageToken", err)
	}
}

// TestEnqueueBatches: queued records are written as one store key per
// batch, bounded by BatchSize, and Flush makes them readable.
func TestEnqueueBatches(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	tr := New(Config{Store: st, BatchSize: 10, FlushInterval: time.Hour})
	run(t, tr)
	for i := range 25 {
		if !tr.Enqueue(Record{Project: project, Kind: KindInvokeDenied, Service: "s", Status: 403, Reason: fmt.Sprint(i)}) {
			t.Fatalf("Enqueue %d dropped with an empty queue", i)
		}
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(batches(t, st)); got != 3 {
		t.Errorf("store keys after 25 records in batches of 10: got %d, want 3", got)
	}
	page, err := tr.Read(ctx, Query{Project: project, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 25 {
		t.Fatalf("got %d records, want 25", len(page.Records))
	}
	ids := map[string]bool{}
	for _, r := range page.Records {
		if r.ID == "" || ids[r.ID] {
			t.Errorf("record ID %q empty or repeated", r.ID)
		}
		ids[r.ID] = true
		if r.Time.IsZero() {
			t.Errorf("record %s has no time", r.ID)
		}
	}
	if tr.Dropped() != 0 {
		t.Errorf("Dropped: got %d, want 0", tr.Dropped())
	}
}

// TestFlushIntervalWrites: a queued record is written without Flush once
// FlushInterval passes.
func TestFlushIntervalWrites(t *testing.T) {
	st := newStore(t)
	tr := New(Config{Store: st, FlushInterval: 10 * time.Millisecond})
	run(t, tr)
	tr.Enqueue(Record{Project: project, Kind: KindInvokeDenied})
	deadline := time.Now().Add(10 * time.Second)
	for len(batches(t, st)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a queued record was not written within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEnqueueNeverBlocks: a full queue drops and counts instead of waiting.
func TestEnqueueNeverBlocks(t *testing.T) {
	tr := New(Config{Store: newStore(t), QueueSize: 2}) // Run never started: nothing drains
	accepted := 0
	for range 5 {
		if tr.Enqueue(Record{Project: project, Kind: KindInvokeDenied}) {
			accepted++
		}
	}
	if accepted != 2 || tr.Dropped() != 3 {
		t.Errorf("got %d accepted and %d dropped, want 2 and 3", accepted, tr.Dropped())
	}
}

// TestSurvivesRestart: records written directly and records still queued
// at shutdown are read back after the store is closed and reopened.
func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "usher.db")
	st := openStore(t, path)
	tr := New(Config{Store: st, FlushInterval: time.Hour})
	stop := run(t, tr)
	if err := tr.Record(ctx, Record{Project: project, Kind: KindSetIamPolicy, Principal: "user:o@example.com", Details: &Details{
		BindingDeltas: []BindingDelta{{Action: "ADD", Role: "roles/run.invoker", Member: "user:x@example.com"}}}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tr.Enqueue(Record{Project: project, Kind: KindInvokeDenied, Status: 401})
	}
	stop() // writes what is queued
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStore(t, path)
	defer st.Close()
	page, err := New(Config{Store: st}).Read(ctx, Query{Project: project})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(page.Records), []string{"invoke.denied@", "invoke.denied@", "invoke.denied@", "iam.setPolicy@"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening: got %q, want %q", got, want)
	}
	d := page.Records[3].Details
	if d == nil || len(d.BindingDeltas) != 1 || d.BindingDeltas[0].Member != "user:x@example.com" {
		t.Errorf("binding deltas after reopening: got %+v", d)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	clk := &clock{now: t0}
	tr := New(Config{Store: st, Now: clk.Now, MaxAge: 24 * time.Hour, MaxRecords: 5})
	record := func(at time.Time, service string) {
		t.Helper()
		if err := tr.Record(ctx, Record{Project: project, Kind: KindServiceCreate, Service: service, Time: at}); err != nil {
			t.Fatal(err)
		}
	}
	record(t0.Add(-72*time.Hour), "ancient")
	record(t0.Add(-25*time.Hour), "old")
	for i := range 6 {
		record(t0.Add(time.Duration(i-6)*time.Minute), fmt.Sprintf("recent%d", i))
	}
	n, err := tr.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Age removes ancient and old; count then removes recent0.
	if n != 3 {
		t.Errorf("Prune deleted %d records, want 3", n)
	}
	page, err := tr.Read(ctx, Query{Project: project})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"service.create@recent5", "service.create@recent4", "service.create@recent3", "service.create@recent2", "service.create@recent1"}
	if got := kinds(page.Records); !reflect.DeepEqual(got, want) {
		t.Errorf("after pruning: got %q, want %q", got, want)
	}
	if n, err := tr.Prune(ctx); err != nil || n != 0 {
		t.Errorf("second Prune: got %d, %v; want 0, nil", n, err)
	}
}

// TestRunPrunes: Run prunes when it starts.
func TestRunPrunes(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	clk := &clock{now: t0}
	tr := New(Config{Store: st, Now: clk.Now, MaxAge: time.Hour})
	if err := tr.Record(ctx, Record{Project: project, Kind: KindServiceCreate, Time: t0.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	run(t, tr)
	deadline := time.Now().Add(10 * time.Second)
	for len(batches(t, st)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not prune an expired record within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPolicyDelta(t *testing.T) {
	cond := &iam.Expr{Title: "t", Expression: "true"}
	pol := func(bs ...iam.Binding) *iam.Policy { return &iam.Policy{Bindings: bs} }
	tests := []struct {
		name          string
		before, after *iam.Policy
		want          []BindingDelta
	}{
		{"none to none", nil, nil, nil},
		{"first policy", nil, pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"user:b@x.com", "user:a@x.com"}}),
			[]BindingDelta{{"ADD", "roles/run.invoker", "user:a@x.com", nil}, {"ADD", "roles/run.invoker", "user:b@x.com", nil}}},
		{"unchanged", pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"allUsers"}}), pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"allUsers"}}), nil},
		{"add and remove", pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"allUsers", "user:a@x.com"}}),
			pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"user:a@x.com"}}, iam.Binding{Role: "roles/run.admin", Members: []string{"user:a@x.com"}}),
			[]BindingDelta{{"ADD", "roles/run.admin", "user:a@x.com", nil}, {"REMOVE", "roles/run.invoker", "allUsers", nil}}},
		{"condition added is a change", pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"user:a@x.com"}}),
			pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"user:a@x.com"}, Condition: cond}),
			[]BindingDelta{{"ADD", "roles/run.invoker", "user:a@x.com", cond}, {"REMOVE", "roles/run.invoker", "user:a@x.com", nil}}},
		{"all removed", pol(iam.Binding{Role: "roles/run.invoker", Members: []string{"user:a@x.com"}}), &iam.Policy{},
			[]BindingDelta{{"REMOVE", "roles/run.invoker", "user:a@x.com", nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PolicyDelta(tt.before, tt.after); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestFlushWithoutRun: Flush writes what is queued even when Run is not
// running (before it starts, or after it returned).
func TestFlushWithoutRun(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	tr := New(Config{Store: st})
	tr.Enqueue(Record{Project: project, Kind: KindInvokeDenied})
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(batches(t, st)); got != 1 {
		t.Errorf("store keys after Flush without Run: got %d, want 1", got)
	}
	stop := run(t, tr)
	stop()
	tr.Enqueue(Record{Project: project, Kind: KindInvokeDenied})
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(batches(t, st)); got != 2 {
		t.Errorf("store keys after Flush once Run returned: got %d, want 2", got)
	}
}

// TestFloodCannotPruneAdminRecords: refusals have their own retention bound,
// so any number of anonymous requests leaves who changed access on the trail.
func TestFloodCannotPruneAdminRecords(t *testing.T) {
	st := newStore(t)
	tr := New(Config{Store: st, MaxRecords: 5, MaxDenials: 10, BatchSize: 10})
	ctx := context.Background()
	if err := tr.Record(ctx, Record{Kind: KindSetIamPolicy, Project: "p", Resource: "projects/p", Principal: "user:admin@example.com"}); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		tr.Enqueue(Record{Kind: KindInvokeDenied, Project: "p", Service: "s", Status: 401, Reason: "no credentials " + strconv.Itoa(i%7)})
		if i%10 == 9 {
			tr.Flush(ctx)
		}
	}
	if _, err := tr.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := tr.Read(ctx, Query{Project: "p", Kind: "iam", PageSize: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 || page.Records[0].Principal != "user:admin@example.com" {
		t.Fatalf("admin records after a flood of refusals and a prune: got %+v, want the one setIamPolicy", page.Records)
	}
	denials, err := tr.Read(ctx, Query{Project: "p", Kind: KindInvokeDenied, PageSize: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(denials.Records); n == 0 || n > 20 {
		t.Errorf("refusals kept after prune: got %d, want between 1 and 20 (MaxDenials 10, whole batches)", n)
	}
}

// TestFloodAggregates: a batch larger than AggregateAbove is written as one
// record per distinct refusal, each saying how many it stands for; refusals
// the full queue dropped are written as a count.
func TestFloodAggregates(t *testing.T) {
	st := newStore(t)
	tr := New(Config{Store: st, QueueSize: 300, BatchSize: 1000})
	ctx := context.Background()
	for i := range 400 { // 100 over the queue: dropped
		tr.Enqueue(Record{Kind: KindInvokeDenied, Project: "p", Service: "s", Status: 403, Principal: "user:x@example.com", Reason: "denied " + strconv.Itoa(i%2)})
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := tr.Read(ctx, Query{Project: "p", PageSize: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	total, dropped := 0, 0
	for _, r := range page.Records {
		if strings.Contains(r.Reason, "queue was full") {
			dropped += r.Count
			continue
		}
		if r.Count < 2 {
			t.Errorf("record %+v: want an aggregated count", r)
		}
		total += r.Count
	}
	if len(page.Records) != 3 || total != 300 || dropped != 100 {
		t.Errorf("got %d records counting %d refusals and %d dropped, want 3 records: 2 aggregates of 300 and 100 dropped", len(page.Records), total, dropped)
	}
}
