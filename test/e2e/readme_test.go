package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestREADMEDemo runs the README's own commands, as written, the way a new
// user would: the first line of its first block (`go build … && ./usher
// serve`) in one shell, then the demo block in another, in a copy of the
// repository with a fresh HOME. It checks what the README's comments promise
// (401, Hello World!, 401 again), so the README cannot go stale.
//
// It needs 127.0.0.1:8080, the README's address; it skips, saying so, when
// something else holds it.
func TestREADMEDemo(t *testing.T) {
	root, err := usherproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(string(readme))
	if len(blocks) < 2 {
		t.Fatalf("README.md: got %d sh blocks, want the two commands and the demo", len(blocks))
	}
	serveLine := strings.TrimSpace(strings.SplitN(blocks[0], "\n", 2)[0])
	serveLine = strings.TrimSpace(strings.SplitN(serveLine, "#", 2)[0])
	if !strings.Contains(serveLine, "./usher serve") {
		t.Fatalf("README's first command: got %q, want it to run ./usher serve", serveLine)
	}
	demo := sectionBlock(string(readme), "## The demo")
	if demo == "" {
		t.Fatal(`README.md has no sh block under "## The demo"`)
	}

	if ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:8080"); err != nil {
		t.Skipf("SKIPPED: 127.0.0.1:8080 is taken (%v); the README demo needs it", err)
	} else {
		ln.Close()
	}

	dir := repoCopy(t, root)
	home := t.TempDir()
	env := append(usherproc.CleanEnv(func(k string) bool { return k == "HOME" || strings.HasPrefix(k, "USHER_") }), "HOME="+home)
	// The new HOME must not mean a new Go module and build cache.
	for _, v := range []string{"GOMODCACHE", "GOCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", v, err)
		}
		env = append(env, v+"="+strings.TrimSpace(string(out)))
	}

	serve := exec.Command("bash", "-c", serveLine)
	serve.Dir, serve.Env = dir, env
	// Its own process group, so the build's shell and ./usher stop together.
	serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	serve.Stdout, serve.Stderr = logf, logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-serve.Process.Pid, syscall.SIGTERM)
		serve.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("./usher serve log:\n%s", b)
		}
	}()
	poll(t, 2*time.Minute, "./usher serve answers /healthz", func() (bool, string) {
		r, err := http.Get("http://127.0.0.1:8080/healthz")
		if err != nil {
			return false, err.Error()
		}
		r.Body.Close()
		return r.StatusCode == 200, r.Status
	})

	run := exec.Command("bash", "-ex", "-c", demo)
	run.Dir, run.Env = dir, env
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the demo block failed: %v\n%s", err, out)
	}
	// The three curls, in order: 401, Hello World!, 401.
	got := regexp.MustCompile(`HTTP/1\.1 (\d+)|Hello World!`).FindAllString(string(out), -1)
	var seen []string
	for _, g := range got {
		seen = append(seen, strings.TrimPrefix(g, "HTTP/1.1 "))
	}
	if strings.Join(seen, ",") != "401,Hello World!,401" {
		t.Errorf("the demo's answers: got %q, want 401, Hello World!, 401\n%s", seen, out)
	}

	// The Projects section's block, Usher's CLI and gcloud's line alike
	// (gcloud set up as "Using gcloud" says).
	projects := sectionBlock(string(readme), "### Projects")
	if !strings.Contains(projects, "projects create") {
		t.Fatalf(`README.md: the sh block under "### Projects" is %q`, projects)
	}
	if _, err := exec.LookPath("gcloud"); err != nil {
		t.Skipf("*** gcloud is not on PATH: the README's Projects block NOT RUN (%v) ***", err)
	}
	run = exec.Command("bash", "-ex", "-c", "./usher gcloud configure\n"+projects)
	run.Dir, run.Env = dir, env
	out, err = run.CombinedOutput()
	if err != nil {
		t.Fatalf("the Projects block failed: %v\n%s", err, out)
	}
	for _, want := range []string{"Created project [team-b]", "Deleted project [team-b]", "Restored project [team-b]", "team-c"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the Projects block: want %q in its output\n%s", want, out)
		}
	}
}

// shellBlocks are the ```sh blocks of a Markdown text, in order.
func shellBlocks(md string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// sectionBlock is the first ```sh block after heading.
func sectionBlock(md, heading string) string {
	i := strings.Index(md, "\n"+heading+"\n")
	if i < 0 {
		return ""
	}
	if b := shellBlocks(md[i:]); len(b) > 0 {
		return b[0]
	}
	return ""
}

// repoCopy is a directory that looks like a fresh clone to the README's
// commands (links to the module's sources), so building there leaves the
// real tree untouched.
func repoCopy(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch name := e.Name(); name {
		case ".git", "usher", "hello", "usher-data":
		default:
			if err := os.Symlink(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}
