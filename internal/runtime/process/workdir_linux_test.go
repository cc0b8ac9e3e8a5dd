package process

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

// cwdOf asks the test app where it runs.
func cwdOf(t *testing.T, in runtime.Instance) string {
	t.Helper()
	code, body, err := runtimetest.Get(in, "/env")
	if err != nil || code != 200 {
		t.Fatalf("GET /env: %d %v", code, err)
	}
	var env struct{ Cwd string }
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	return env.Cwd
}

// TestSandboxWorkingDir: the program starts in its workingDir, a path of
// the sandbox's file system: one that exists there, or one under /tmp made
// for it (owned by the instance's user). A directory that does not exist in
// the read-only root, or that the sandbox hides, fails the start: the
// instance never runs somewhere else.
func TestSandboxWorkingDir(t *testing.T) {
	app := buildTestApp(t)
	// Outside /tmp, which the sandbox covers anyway.
	hidden, err := os.MkdirTemp("/var/tmp", "usher-workdir-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hidden) })
	os.Chmod(hidden, 0o755)
	rt := sandboxRuntime(t, Sandbox{Hide: []string{hidden}})
	t.Cleanup(func() { rt.Close() })
	for _, dir := range []string{"/", "/usr", "/tmp/app/data"} {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app, Revision: "r1", WorkingDir: dir})
		if err != nil {
			t.Fatalf("workingDir %s: Start: %v", dir, err)
		}
		if got := cwdOf(t, in); got != dir {
			t.Errorf("workingDir %s: the program runs in %s", dir, got)
		}
		in.Stop(context.Background())
	}
	for _, tc := range []struct{ dir, want string }{
		{"/no-such-dir-in-the-root", "does not exist in the sandbox"},
		{hidden, ""}, // an empty tmpfs of mode 0: the instance's user cannot enter it
		{"/etc/hostname", "not a directory"},
	} {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app, Revision: "r1", WorkingDir: tc.dir})
		if err == nil {
			in.Stop(context.Background())
			t.Errorf("workingDir %s: started, want a failure", tc.dir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("workingDir %s: %v, want it to say %q", tc.dir, err, tc.want)
		}
	}
}

// TestUnsandboxedWorkingDir: without the sandbox, workingDir is the host's.
func TestUnsandboxedWorkingDir(t *testing.T) {
	app := buildTestApp(t)
	dir := t.TempDir()
	rt := New(Config{})
	in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app, Revision: "r1", WorkingDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop(context.Background())
	if got := cwdOf(t, in); got != dir {
		t.Errorf("the program runs in %s, want %s", got, dir)
	}
}
