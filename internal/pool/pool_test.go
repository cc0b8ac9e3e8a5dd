package pool

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/runtime/process"
)

func testApp(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testapp")
	cmd := exec.Command("go", "build", "-o", out, "github.com/usher-run/usher/internal/runtime/runtimetest/testapp")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testapp: %v\n%s", err, b)
	}
	return out
}

func revision(name, image string, env ...apis.EnvVar) *apis.Revision {
	return &apis.Revision{
		Metadata: apis.ObjectMeta{Name: name, Namespace: "p", Labels: map[string]string{
			apis.LabelService: "svc", apis.LabelConfiguration: "svc", apis.LabelLocation: "r"}},
		Spec: apis.RevisionSpec{Containers: []apis.Container{{Image: "file://" + image, Env: env}}},
	}
}

func get(addr, path string) (int, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestReplacesDeadInstance: an instance that dies is replaced, and the next
// Acquire gets a live one.
func TestReplacesDeadInstance(t *testing.T) {
	app := testApp(t)
	p := New(Config{Runtime: process.New(process.Config{}), StopGrace: time.Second})
	t.Cleanup(func() { p.Close(context.Background()) })
	rev := revision("svc-00001-abc", app)
	ctx := context.Background()

	first, err := p.Acquire(ctx, Key(rev), rev)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := p.Acquire(ctx, Key(rev), rev); again != first {
		t.Fatalf("second Acquire = %s, want the running instance %s", again, first)
	}
	get(first, "/exit?code=1") // the instance dies mid-request; its answer does not matter
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr, err := p.Acquire(ctx, Key(rev), rev)
		if err == nil && addr != first {
			if code, err := get(addr, "/"); err != nil || code != 200 {
				t.Fatalf("replacement answered %d, %v", code, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement instance: last %s, %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStartFailure: a revision whose instance cannot start reports why.
func TestStartFailure(t *testing.T) {
	app := testApp(t)
	p := New(Config{Runtime: process.New(process.Config{}), StartupTimeout: 5 * time.Second})
	t.Cleanup(func() { p.Close(context.Background()) })
	err := p.Start(context.Background(), revision("svc-00002-abc", app, apis.EnvVar{Name: "TESTAPP_EXIT_AT_START", Value: "1"}))
	if err == nil {
		t.Fatal("Start of a crashing app succeeded")
	}
	if got := err.Error(); !strings.Contains(got, "boom") {
		t.Errorf("error %q does not carry the app's output", got)
	}
}

// TestRetire: retired revisions' instances stop; kept ones keep serving.
func TestRetire(t *testing.T) {
	app := testApp(t)
	p := New(Config{Runtime: process.New(process.Config{}), StopGrace: time.Second})
	t.Cleanup(func() { p.Close(context.Background()) })
	ctx := context.Background()
	oldRev, newRev := revision("svc-00001-abc", app), revision("svc-00002-def", app)
	oldAddr, err := p.Acquire(ctx, Key(oldRev), oldRev)
	if err != nil {
		t.Fatal(err)
	}
	newAddr, err := p.Acquire(ctx, Key(newRev), newRev)
	if err != nil {
		t.Fatal(err)
	}
	p.Retire(ctx, func(key string) bool { return key == Key(newRev) })
	if _, err := get(oldAddr, "/"); err == nil {
		t.Errorf("retired instance at %s still answers", oldAddr)
	}
	if code, err := get(newAddr, "/"); err != nil || code != 200 {
		t.Errorf("kept instance answered %d, %v", code, err)
	}
	p.Close(ctx)
	if _, err := p.Acquire(ctx, Key(newRev), newRev); err == nil {
		t.Errorf("Acquire after Close succeeded")
	}
}
