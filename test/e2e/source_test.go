package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/usher-run/usher/internal/runtime/docker/dockertest"
)

// Deploying from source (usher run deploy --source, usher run jobs deploy
// --source): the server builds a Go main package with its Go toolchain or a
// Dockerfile with the Docker engine, streaming the build's output.

// goSource writes a Go main package serving "hello from source MSG" on $PORT.
func goSource(t *testing.T, dir, msg string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	files := map[string]string{
		"go.mod": "module example.com/fromsource\n\ngo 1.22\n",
		"main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello from source ` + msg + `") })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// serviceSays polls the service until it answers with want.
func (s *server) serviceSays(t *testing.T, url, want string) {
	t.Helper()
	tok := strings.TrimSpace(s.mustCLI(t, "auth", "print-identity-token").stdout)
	poll(t, 60*time.Second, url+" answering "+want, func() (bool, string) {
		r := s.get(t, url, "Authorization", bearer(tok))
		return r.status == 200 && strings.Contains(r.body, want), r.body
	})
}

// shareGoCache lets the server's Go builds use this machine's build and
// module caches (its HOME is a fresh directory): the test then does not
// recompile the standard library.
func shareGoCache(t *testing.T) {
	for _, v := range []string{"GOCACHE", "GOMODCACHE"} {
		out, err := exec.Command("go", "env", v).Output()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			t.Setenv(v, strings.TrimSpace(string(out)))
		}
	}
}

func TestDeployFromGoSource(t *testing.T) {
	shareGoCache(t)
	s := startServer(t)
	src := filepath.Join(t.TempDir(), "app")
	goSource(t, src, "v1")
	r := s.mustCLI(t, "run", "deploy", "fromsrc", "--source", src, "--region="+region)
	for _, want := range []string{"Building using the source in", "Building a Go main package", "Built image [file://"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("deploy --source stderr: want %q, got:\n%s", want, r.stderr)
		}
	}
	first := s.describe(t, "fromsrc")
	url := first.Status.URL
	s.serviceSays(t, url, "hello from source v1")

	goSource(t, src, "v2")
	s.mustCLI(t, "run", "deploy", "fromsrc", "--source", src, "--region="+region)
	s.serviceSays(t, url, "hello from source v2")

	// Each revision keeps the executable it was built with: rolling back
	// serves the first build again.
	s.mustCLI(t, "run", "services", "update-traffic", "fromsrc", "--region="+region, "--to-revisions="+first.Status.LatestReadyRevisionName+"=100")
	s.serviceSays(t, url, "hello from source v1")

	t.Run("a build error is streamed and nothing is deployed", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad")
		goSource(t, bad, "v3")
		os.WriteFile(filepath.Join(bad, "main.go"), []byte("package main\n\nfunc main() { undefinedCall() }\n"), 0o644)
		r := s.cli(t, "run", "deploy", "broken", "--source", bad, "--region="+region)
		line := buildFails(t, r)
		if !strings.Contains(line, "Build failed") || !strings.Contains(r.stderr, "undefined: undefinedCall") {
			t.Errorf("deploy of a broken source: got %q, stderr:\n%s\nwant Build failed with the compiler's message", line, r.stderr)
		}
		if r := s.cli(t, "run", "services", "describe", "broken", "--region="+region); r.code == 0 {
			t.Errorf("service broken exists after a failed build")
		}
	})

	t.Run("a directory that is neither Go nor a Dockerfile", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "index.js"), []byte("console.log(1)\n"), 0o644)
		if line := buildFails(t, s.cli(t, "run", "deploy", "js", "--source", dir, "--region="+region)); !strings.Contains(line, "neither a Dockerfile nor a Go main package") {
			t.Errorf("deploy of an unsupported source: got %q", line)
		}
	})

	t.Run("a developer without usher.hostExecutables.run cannot build Go on the host", func(t *testing.T) {
		_, dev := s.developer(t, "src-dev")
		line := buildFails(t, s.cli(t, "run", "deploy", "devsrc", "--source", src, "--region="+region, dev))
		if !strings.Contains(line, "usher.hostExecutables.run") {
			t.Errorf("developer's Go build: got %q, want PERMISSION_DENIED naming usher.hostExecutables.run", line)
		}
		if entries, _ := os.ReadDir(filepath.Join(s.DataDir, "builds", project, region, "services", "devsrc")); len(entries) != 0 {
			t.Errorf("the refused build left %d outputs", len(entries))
		}
		viewer := s.createSA(t, "src-viewer")
		s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+viewer, "--role=roles/run.viewer")
		line = buildFails(t, s.cli(t, "run", "deploy", "viewsrc", "--source", src, "--region="+region, "--impersonate-service-account="+viewer))
		if !strings.Contains(line, "run.services.create") {
			t.Errorf("viewer's build: got %q, want PERMISSION_DENIED naming run.services.create", line)
		}
	})

	t.Run("the upload is checked before anything runs", func(t *testing.T) {
		tok := s.accessToken(t)
		base := s.serverURL(t) + "/v1/projects/" + project + "/locations/" + region + "/sourceBuilds"
		for _, tc := range []struct{ what, target, body string }{
			{"not gzip", "services/x", "plain text"},
			{"no target", "", ""},
			{"a bad target", "revisions/x", ""},
		} {
			r := s.do(t, "POST", base+"?target="+tc.target, strings.NewReader(tc.body), "Authorization", bearer(tok))
			if r.status != 400 || !strings.Contains(r.body, "INVALID_ARGUMENT") {
				t.Errorf("%s: got %d %s, want 400 INVALID_ARGUMENT", tc.what, r.status, r.body)
			}
		}
		if r := s.do(t, "POST", base+"?target=services/x", strings.NewReader("x")); r.status != 401 {
			t.Errorf("without credentials: got %d, want 401", r.status)
		}
	})

	t.Run("jobs deploy --source", func(t *testing.T) {
		jobSrc := filepath.Join(t.TempDir(), "job")
		os.MkdirAll(jobSrc, 0o755)
		os.WriteFile(filepath.Join(jobSrc, "main.go"), []byte(`package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("source task", os.Getenv("CLOUD_RUN_TASK_INDEX"), "of", os.Getenv("CLOUD_RUN_TASK_COUNT")) }
`), 0o644)
		s.mustCLI(t, "run", "jobs", "deploy", "srcjob", "--source", jobSrc, "--tasks=2", "--region="+region)
		name := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "execute", "srcjob", "--wait", "--region="+region).stdout)
		if ex := s.describeExecution(t, name); ex.Status.SucceededCount != 2 {
			t.Errorf("execution of the job built from source: got %d succeeded, want 2", ex.Status.SucceededCount)
		}
		if logs := s.mustCLI(t, "run", "jobs", "logs", "read", "srcjob", "--region="+region).stdout; !strings.Contains(logs, "source task 1 of 2") {
			t.Errorf("job logs: want task 1's line, got:\n%s", logs)
		}
	})
}

func TestDeployFromDockerfile(t *testing.T) {
	ctx := context.Background()
	c := dockertest.Engine(t, "deploy --source with a Dockerfile")

	src := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(src, "app"), "github.com/usher-run/usher/examples/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static hello: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(src, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"), 0o644)

	s := startServer(t)
	r := s.mustCLI(t, "run", "deploy", "boxedsrc", "--source", src, "--region="+region)
	for _, want := range []string{"Building the Dockerfile with the Docker engine", "Step 1/", "Built image [usher.local/" + project + "/service-boxedsrc:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("deploy --source (Dockerfile) stderr: want %q, got:\n%s", want, r.stderr)
		}
	}
	svc := s.describe(t, "boxedsrc")
	image := s.serviceImage(t, "boxedsrc")
	defer c.ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	tok := strings.TrimSpace(s.mustCLI(t, "auth", "print-identity-token").stdout)
	poll(t, 60*time.Second, "the container built from source answering", func() (bool, string) {
		r := s.get(t, svc.Status.URL, "Authorization", bearer(tok))
		return r.status == 200, r.body
	})
	if _, err := c.ImageInspect(ctx, image); err != nil {
		t.Errorf("the built image %s is not in the engine: %v", image, err)
	}

	// A job from a Dockerfile runs its tasks in containers of the built image.
	jobSrc := t.TempDir()
	build = exec.Command("go", "build", "-trimpath", "-o", filepath.Join(jobSrc, "app"), "github.com/usher-run/usher/test/e2e/testdata/jobtask")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static jobtask: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(jobSrc, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"), 0o644)
	s.mustCLI(t, "run", "jobs", "deploy", "boxedjob", "--source", jobSrc, "--tasks=3", "--region="+region)
	jobImage := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "describe", "boxedjob", "--region="+region, "--format", "value(spec.template.spec.template.spec.containers[0].image)").stdout)
	defer c.ImageRemove(ctx, jobImage, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	if !strings.HasPrefix(jobImage, "usher.local/"+project+"/job-boxedjob:") {
		t.Errorf("job image: got %q, want usher.local/%s/job-boxedjob:BUILD", jobImage, project)
	}
	name := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "execute", "boxedjob", "--wait", "--region="+region).stdout)
	if ex := s.describeExecution(t, name); ex.Status.SucceededCount != 3 {
		t.Errorf("execution of the job built from a Dockerfile: got %d succeeded, want 3", ex.Status.SucceededCount)
	}

	// A Dockerfile build needs only the deploy permission: its RUN steps
	// run in the engine's build containers, not on the host.
	_, dev := s.developer(t, "docker-dev")
	s.mustCLI(t, "run", "deploy", "devboxed", "--source", src, "--region="+region, dev)
	devImage := s.serviceImage(t, "devboxed")
	c.ImageRemove(ctx, devImage, client.ImageRemoveOptions{Force: true, PruneChildren: true})
}

// serviceImage is the image of a service's template.
func (s *server) serviceImage(t *testing.T, name string) string {
	t.Helper()
	return strings.TrimSpace(s.mustCLI(t, "run", "services", "describe", name, "--region="+region, "--format", "value(spec.template.spec.containers[0].image)").stdout)
}

// buildFails checks that a deploy --source failed with one ERROR line
// (after the build's own progress and output) and returns it.
func buildFails(t *testing.T, r cliResult) string {
	t.Helper()
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.HasPrefix(l, "ERROR: ") {
			errs = append(errs, l)
		}
	}
	if r.code == 0 || len(errs) != 1 {
		t.Errorf("got exit %d, stderr:\n%s\nwant a failure with one ERROR line", r.code, r.stderr)
		return ""
	}
	return errs[0]
}
