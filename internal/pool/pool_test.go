package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/runtime/process"
)

func build(tb testing.TB, pkg string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func testApp(t *testing.T) string {
	return build(t, "github.com/usher-run/usher/internal/runtime/runtimetest/testapp")
}

func slowApp(t *testing.T) string { return build(t, "./testdata/slowapp") }

type revOpt func(*apis.Revision)

func concurrency(n int64) revOpt {
	return func(r *apis.Revision) { r.Spec.ContainerConcurrency = &n }
}

func scale(min, max int) revOpt {
	return func(r *apis.Revision) {
		r.Metadata.Annotations[apis.AnnotationMinScale] = strconv.Itoa(min)
		r.Metadata.Annotations[apis.AnnotationMaxScale] = strconv.Itoa(max)
	}
}

func env(name, value string) revOpt {
	return func(r *apis.Revision) {
		r.Spec.Containers[0].Env = append(r.Spec.Containers[0].Env, apis.EnvVar{Name: name, Value: value})
	}
}

func revision(name, image string, opts ...revOpt) *apis.Revision {
	r := &apis.Revision{
		Metadata: apis.ObjectMeta{Name: name, Namespace: "p", Annotations: map[string]string{}, Labels: map[string]string{
			apis.LabelService: "svc", apis.LabelConfiguration: "svc", apis.LabelLocation: "r"}},
		Spec: apis.RevisionSpec{Containers: []apis.Container{{Image: "file://" + image}}},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func newProcessRuntime() *process.Runtime { return process.New(process.Config{}) }

func newPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	cfg.Runtime = newProcessRuntime()
	if cfg.StopGrace == 0 {
		cfg.StopGrace = time.Second
	}
	p := New(cfg)
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func get(addr, path string) (int, string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// call acquires a slot, sends one request through it and releases it.
func call(ctx context.Context, p *Pool, rev *apis.Revision, path string) error {
	lease, err := p.Acquire(ctx, Key(rev), rev)
	if err != nil {
		return err
	}
	defer lease.Release()
	code, body, err := get(lease.Addr(), path)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("%s: %d %s", path, code, body)
	}
	return nil
}

// burst runs n concurrent calls and returns their errors.
func burst(p *Pool, rev *apis.Revision, n int, path string) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = call(context.Background(), p, rev, path)
		}()
	}
	wg.Wait()
	return errs
}

// peaks returns each instance's peak concurrency as the instance saw it.
func peaks(t *testing.T, p *Pool, rev *apis.Revision) []int {
	t.Helper()
	var out []int
	for _, in := range p.Stats(Key(rev)).Instances {
		_, body, err := get(in.Addr, "/stats")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(body)
		out = append(out, n)
	}
	return out
}

// TestScalesOutByConcurrency: with concurrency 1, three concurrent slow
// requests get three instances, and no instance ever has two at once.
func TestScalesOutByConcurrency(t *testing.T) {
	p := newPool(t, Config{})
	rev := revision("svc-00001-abc", slowApp(t), concurrency(1))
	for i, err := range burst(p, rev, 3, "/slow?ms=400") {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	got := peaks(t, p, rev)
	if len(got) != 3 {
		t.Fatalf("instances = %d, want 3", len(got))
	}
	for i, peak := range got {
		if peak > 1 {
			t.Errorf("instance %d had %d requests in flight, want at most 1", i, peak)
		}
	}
}

// TestMaxInstancesQueues: a burst beyond max instances × concurrency waits in
// the queue and completes; the maximum is never exceeded.
func TestMaxInstancesQueues(t *testing.T) {
	p := newPool(t, Config{})
	rev := revision("svc-00001-abc", slowApp(t), concurrency(1), scale(0, 2))
	for i, err := range burst(p, rev, 6, "/slow?ms=150") {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	got := peaks(t, p, rev)
	if len(got) > 2 {
		t.Fatalf("instances = %d, want at most 2", len(got))
	}
	for i, peak := range got {
		if peak > 1 {
			t.Errorf("instance %d had %d requests in flight, want at most 1", i, peak)
		}
	}
}

// TestQueueBounds: beyond the queue's length a request is refused at once
// (ErrOverloaded); a queued request gives up after the queue timeout.
func TestQueueBounds(t *testing.T) {
	p := newPool(t, Config{MaxQueue: 1, QueueTimeout: 300 * time.Millisecond})
	rev := revision("svc-00001-abc", slowApp(t), concurrency(1), scale(0, 1))
	ctx := context.Background()
	held, err := p.Acquire(ctx, Key(rev), rev)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() {
		_, err := p.Acquire(ctx, Key(rev), rev)
		queued <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats(Key(rev)).Queued != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second request never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := p.Acquire(ctx, Key(rev), rev); !errors.Is(err, ErrOverloaded) {
		t.Errorf("third request: %v, want ErrOverloaded", err)
	}
	if err := <-queued; !errors.Is(err, ErrQueueTimeout) {
		t.Errorf("queued request: %v, want ErrQueueTimeout", err)
	}
	held.Release()
	if err := call(ctx, p, rev, "/"); err != nil {
		t.Errorf("after release: %v", err)
	}
}

// TestScaleToZero: idle instances stop after the grace; the next request
// cold-starts a new one.
func TestScaleToZero(t *testing.T) {
	p := newPool(t, Config{ScaleToZeroGrace: 200 * time.Millisecond})
	rev := revision("svc-00001-abc", slowApp(t))
	ctx := context.Background()
	if err := call(ctx, p, rev, "/"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(p.Stats(Key(rev)).Instances) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("instances still running after the grace: %+v", p.Stats(Key(rev)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := call(ctx, p, rev, "/"); err != nil {
		t.Fatalf("cold start after scale to zero: %v", err)
	}
}

// TestMinInstances: the minimum is started with the revision and survives
// the idle grace.
func TestMinInstances(t *testing.T) {
	p := newPool(t, Config{ScaleToZeroGrace: 100 * time.Millisecond})
	rev := revision("svc-00001-abc", slowApp(t), scale(2, 5))
	if err := p.Start(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(p.Stats(Key(rev)).Instances) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("instances = %+v, want 2", p.Stats(Key(rev)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // several grace periods: nothing may be reaped
	if n := len(p.Stats(Key(rev)).Instances); n != 2 {
		t.Errorf("instances after idling = %d, want the minimum 2", n)
	}
}

// TestReplacesDeadInstance: an instance that dies is dropped, and the next
// request gets a live one.
func TestReplacesDeadInstance(t *testing.T) {
	p := newPool(t, Config{})
	rev := revision("svc-00001-abc", testApp(t))
	ctx := context.Background()
	lease, err := p.Acquire(ctx, Key(rev), rev)
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Addr()
	get(first, "/exit?code=1") // the instance dies mid-request; its answer does not matter
	lease.Release()
	deadline := time.Now().Add(30 * time.Second)
	for {
		lease, err := p.Acquire(ctx, Key(rev), rev)
		if err == nil {
			addr := lease.Addr()
			code, _, gerr := get(addr, "/")
			lease.Release()
			if addr != first && gerr == nil && code == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement instance: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartFailure: a revision whose instance cannot start reports why.
func TestStartFailure(t *testing.T) {
	p := newPool(t, Config{StartupTimeout: 5 * time.Second})
	err := p.Start(context.Background(), revision("svc-00002-abc", testApp(t), env("TESTAPP_EXIT_AT_START", "1")))
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Start of a crashing app = %v, want an error carrying its output", err)
	}
}

// TestRetire: retired revisions' instances stop; kept ones keep serving.
func TestRetire(t *testing.T) {
	app := testApp(t)
	p := newPool(t, Config{})
	ctx := context.Background()
	oldRev, newRev := revision("svc-00001-abc", app), revision("svc-00002-def", app)
	if err := p.Start(ctx, oldRev); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx, newRev); err != nil {
		t.Fatal(err)
	}
	oldAddr := p.Stats(Key(oldRev)).Instances[0].Addr
	newAddr := p.Stats(Key(newRev)).Instances[0].Addr
	p.Retire(ctx, func(key string) bool { return key == Key(newRev) })
	if _, _, err := get(oldAddr, "/"); err == nil {
		t.Errorf("retired instance at %s still answers", oldAddr)
	}
	if code, _, err := get(newAddr, "/"); err != nil || code != 200 {
		t.Errorf("kept instance answered %d, %v", code, err)
	}
	p.Close(ctx)
	if _, err := p.Acquire(ctx, Key(newRev), newRev); err == nil {
		t.Errorf("Acquire after Close succeeded")
	}
}

// TestLeaseDoesNotAllocate: the warm path costs no allocation.
func TestLeaseDoesNotAllocate(t *testing.T) {
	p := newPool(t, Config{})
	rev := revision("svc-00001-abc", slowApp(t))
	ctx := context.Background()
	if err := p.Start(ctx, rev); err != nil {
		t.Fatal(err)
	}
	key := Key(rev)
	if n := testing.AllocsPerRun(100, func() {
		l, _ := p.Acquire(ctx, key, rev)
		l.Release()
	}); n != 0 {
		t.Errorf("Acquire+Release allocates %v times, want 0", n)
	}
}

// TestBillableTimeAndColdStarts: billable time runs while an instance holds
// at least one request, so overlapping requests on one instance count once
// (never more than the wall time they spanned), and each instance start is
// reported to OnColdStart.
func TestBillableTimeAndColdStarts(t *testing.T) {
	var mu sync.Mutex
	var starts []string
	p := newPool(t, Config{OnColdStart: func(serviceKey, revision string, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, serviceKey+" "+revision)
		if took <= 0 {
			t.Errorf("cold start took %v", took)
		}
	}})
	rev := revision("svc-00001-abc", slowApp(t), scale(0, 1))
	// Warm the instance first, so the burst below shares it.
	if err := call(context.Background(), p, rev, "/slow?ms=1"); err != nil {
		t.Fatal(err)
	}
	before := p.Stats(Key(rev)).Billable
	began := time.Now()
	for i, err := range burst(p, rev, 3, "/slow?ms=300") {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	wall := time.Since(began)
	st := p.Stats(Key(rev))
	if len(st.Instances) != 1 {
		t.Fatalf("instances = %d, want 1", len(st.Instances))
	}
	got := st.Billable - before
	if got < 300*time.Millisecond || got > wall {
		t.Errorf("billable time of the burst = %v, want at least one request's 300ms and at most the burst's wall time %v", got, wall)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(starts) != 1 || !strings.HasSuffix(starts[0], "/svc svc-00001-abc") {
		t.Errorf("OnColdStart calls = %q, want one for svc-00001-abc", starts)
	}
}

func secretEnv(name, secret, version string) revOpt {
	return func(r *apis.Revision) {
		r.Spec.Containers[0].Env = append(r.Spec.Containers[0].Env, apis.EnvVar{Name: name,
			ValueFrom: &apis.EnvVarSource{SecretKeyRef: &apis.SecretKeySelector{Name: secret, Key: version}}})
	}
}

// TestSecretEnv: an env var from a secret is read through Config.SecretValue
// when an instance starts (the instance sees the value); a pool that cannot
// read secrets, or a secret that cannot be read, fails the start rather
// than starting the instance without it.
func TestSecretEnv(t *testing.T) {
	app := testApp(t)
	var asked []string
	p := newPool(t, Config{StartupTimeout: 10 * time.Second, SecretValue: func(_ context.Context, project, _, secret, version string) ([]byte, error) {
		asked = append(asked, project+"/"+secret+"/"+version)
		if secret == "missing" {
			return nil, errors.New("no such secret")
		}
		return []byte("the-value"), nil
	}})
	rev := revision("svc-00001-sec", app, secretEnv("FROM_SECRET", "db", "latest"))
	lease, err := p.Acquire(context.Background(), Key(rev), rev)
	if err != nil {
		t.Fatal(err)
	}
	_, body, err := get(lease.Addr(), "/env")
	lease.Release()
	if err != nil || !strings.Contains(body, `"FROM_SECRET":"the-value"`) {
		t.Errorf("/env = %s, %v; want FROM_SECRET=the-value", body, err)
	}
	if len(asked) != 1 || asked[0] != "p/db/latest" {
		t.Errorf("SecretValue asked for %v, want [p/db/latest]", asked)
	}

	if err := p.Start(context.Background(), revision("svc-00002-sec", app, secretEnv("X", "missing", "1"))); err == nil || !strings.Contains(err.Error(), "secret missing") {
		t.Errorf("start with an unreadable secret = %v, want an error naming it", err)
	}
	blind := newPool(t, Config{StartupTimeout: 10 * time.Second})
	if err := blind.Start(context.Background(), revision("svc-00003-sec", app, secretEnv("X", "db", "latest"))); err == nil || !strings.Contains(err.Error(), "secrets") {
		t.Errorf("start without SecretValue = %v, want a refusal", err)
	}
}
