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

// TestSandboxVolumes: an in-memory volume is a tmpfs of the instance's own,
// writable by its user, bounded by its size; a host directory it covers
// stays untouched, and another instance does not see what one wrote.
// A mount path that cannot exist in the sandbox fails the start.
func TestSandboxVolumes(t *testing.T) {
	app := buildTestApp(t)
	hostDir, err := os.MkdirTemp("/var/tmp", "usher-volume-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostDir) })
	rt := sandboxRuntime(t, Sandbox{})
	t.Cleanup(func() { rt.Close() })
	spec := runtime.InstanceSpec{Image: "file://" + app, Revision: "r1",
		Volumes: []runtime.Volume{{Path: hostDir, SizeBytes: 1 << 20}, {Path: "/tmp/cache/a"}}}
	start := func() runtime.Instance {
		in, err := rt.Start(context.Background(), spec)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { in.Stop(context.Background()) })
		return in
	}
	a, b := start(), start()
	get := func(in runtime.Instance, path string) (int, string) {
		code, body, err := runtimetest.Get(in, path)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	if code, body := get(a, "/write?bytes=1000&path="+hostDir+"/f"); code != 200 {
		t.Errorf("write 1000 bytes to the volume at %s: %d %s", hostDir, code, body)
	}
	if code, body := get(a, "/write?bytes=4000&path=/tmp/cache/a/f"); code != 200 {
		t.Errorf("write to the volume at /tmp/cache/a: %d %s", code, body)
	}
	if code, body := get(a, "/write?bytes=2097152&path="+hostDir+"/big"); code != 507 {
		t.Errorf("write 2 MiB to a 1 MiB volume: %d %s, want a failure", code, body)
	}
	if code, _ := get(a, "/read?path="+hostDir+"/f"); code != 200 {
		t.Errorf("read back from the volume: %d", code)
	}
	if code, _ := get(b, "/read?path="+hostDir+"/f"); code == 200 {
		t.Errorf("another instance reads what one wrote to its volume")
	}
	if entries, _ := os.ReadDir(hostDir); len(entries) != 0 {
		t.Errorf("the host directory under the volume got %v", entries)
	}

	spec.Volumes = []runtime.Volume{{Path: "/no-such-dir-in-the-root"}}
	if in, err := rt.Start(context.Background(), spec); err == nil {
		in.Stop(context.Background())
		t.Errorf("a volume at a path the sandbox cannot have: started")
	} else if !strings.Contains(err.Error(), "/no-such-dir-in-the-root") {
		t.Errorf("a volume at a path the sandbox cannot have: %v, want it named", err)
	}
}

// TestUnsandboxedVolumes: without the sandbox there is nowhere private to
// mount a volume: the start fails rather than run without it.
func TestUnsandboxedVolumes(t *testing.T) {
	app := buildTestApp(t)
	in, err := New(Config{}).Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app, Revision: "r1",
		Volumes: []runtime.Volume{{Path: "/tmp/v"}}})
	if err == nil {
		in.Stop(context.Background())
		t.Fatal("started without its volume")
	}
	if !strings.Contains(err.Error(), "in-memory volumes need the process sandbox") {
		t.Errorf("error %v, want it to say why", err)
	}
}

// TestSandboxSecretFiles: a volume with Files holds exactly those files,
// readable by the instance (a mode of 0400 too: they are its own), and
// nothing in it can be written, added or executed.
func TestSandboxSecretFiles(t *testing.T) {
	app := buildTestApp(t)
	rt := sandboxRuntime(t, Sandbox{})
	t.Cleanup(func() { rt.Close() })
	spec := runtime.InstanceSpec{Image: "file://" + app, Revision: "r1",
		Volumes: []runtime.Volume{{Path: "/tmp/secrets", Files: []runtime.VolumeFile{
			{Name: "token", Data: []byte("s3cret-token"), Mode: 0o444},
			{Name: "private", Data: []byte("owner-only"), Mode: 0o400},
		}}}}
	in, err := rt.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { in.Stop(context.Background()) })
	get := func(path string) (int, string) {
		code, body, err := runtimetest.Get(in, path)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	if code, body := get("/read?path=/tmp/secrets/token"); code != 200 || body != "s3cret-token" {
		t.Errorf("read the secret file: %d %q", code, body)
	}
	if code, body := get("/read?path=/tmp/secrets/private"); code != 200 || body != "owner-only" {
		t.Errorf("read the 0400 secret file: %d %q", code, body)
	}
	for _, p := range []string{"/tmp/secrets/token", "/tmp/secrets/new"} {
		if code, _ := get("/write?bytes=3&path=" + p); code == 200 {
			t.Errorf("wrote %s in a secret volume", p)
		}
	}
	if code, body := get("/read?path=/tmp/secrets/token"); body != "s3cret-token" {
		t.Errorf("the secret file after a write attempt: %d %q", code, body)
	}
	spec.Volumes[0].Files = []runtime.VolumeFile{{Name: "../escape", Data: []byte("x"), Mode: 0o444}}
	if in, err := rt.Start(context.Background(), spec); err == nil {
		in.Stop(context.Background())
		t.Errorf("a secret file named ../escape: started")
	}
}
