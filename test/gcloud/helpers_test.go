package gcloud

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

const (
	project     = "local-project"
	region      = "us-central1"
	invokerRole = "roles/run.invoker"
)

// Set by TestMain.
var (
	gcloudBin string // "" when gcloud is not on PATH: every test skips
	usherBin  string
	helloBin  string
	// jobtaskBin is a Cloud Run job task (jobs_test.go).
	jobtaskBin string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	if gcloudBin, err = exec.LookPath("gcloud"); err != nil {
		gcloudBin = ""
		fmt.Fprintln(os.Stderr, "\n*** test/gcloud: `gcloud` is not on PATH: SKIPPING every gcloud compatibility test ***")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "usher-gcloud-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcloud tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins, err := usherproc.Build(dir, "./cmd/usher", "./examples/hello", "./test/e2e/testdata/jobtask")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcloud tests:", err)
		return 1
	}
	usherBin, helloBin, jobtaskBin = bins[0], bins[1], bins[2]
	return m.Run()
}

// env is one `usher serve` process (see usherproc.Server) and a gcloud
// configuration pointed at it.
type env struct {
	*usherproc.Server
	t       *testing.T
	dir     string
	addr    string // 127.0.0.1:PORT
	port    string
	dataDir string
	home    string
	gcDir   string // CLOUDSDK_CONFIG
	http    *http.Client
}

// newEnv starts a server on a free port and configures gcloud for it as
// DESIGN.md §5 does. Both are torn down when the test ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	if gcloudBin == "" {
		t.Skip("*** gcloud is not on PATH: gcloud compatibility NOT TESTED ***")
	}
	dir := t.TempDir()
	gcDir := filepath.Join(dir, "gcloud")
	if err := os.MkdirAll(gcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: dir, DropEnv: cloudVar, LogTail: 24 << 10})
	e := &env{Server: p, t: t, dir: dir, addr: p.Addr(), port: p.Port(), dataDir: p.DataDir, home: p.Home, gcDir: gcDir, http: p.HTTP}

	tok := strings.TrimSpace(e.mustUsher("auth", "print-access-token").stdout)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	endpoint := "http://localhost:" + e.port + "/"
	var props [][2]string
	for _, api := range []string{"run", "serviceusage", "cloudresourcemanager", "iam", "iamcredentials", "iap", "artifactregistry", "logging", "secretmanager"} {
		props = append(props, [2]string{"api_endpoint_overrides/" + api, endpoint})
	}
	props = append(props,
		[2]string{"proxy/type", "http"},
		[2]string{"proxy/address", "127.0.0.1"},
		[2]string{"proxy/port", e.port},
		[2]string{"auth/access_token_file", tokenFile},
		[2]string{"core/project", project},
		[2]string{"core/should_prompt_to_enable_api", "false"},
		[2]string{"core/disable_usage_reporting", "true"},
	)
	for _, p := range props {
		e.mustGcloud("config", "set", p[0], p[1])
	}
	return e
}

// cloudVar: neither usher nor gcloud sees the test's own gcloud or Google
// settings (CLOUDSDK_PYTHON* stays: gcloud needs it to start).
func cloudVar(key string) bool {
	return (strings.HasPrefix(key, "CLOUDSDK_") && !strings.HasPrefix(key, "CLOUDSDK_PYTHON")) || strings.HasPrefix(key, "GOOGLE_")
}

// result is what a command printed and its exit code.
type result struct {
	cmd    string
	stdout string
	stderr string
	code   int
}

func (r result) String() string {
	return fmt.Sprintf("$ %s\nexit %d\nstdout: %s\nstderr: %s", r.cmd, r.code, r.stdout, r.stderr)
}

// out is stdout and stderr together (gcloud prints progress on stderr).
func (r result) out() string { return r.stdout + r.stderr }

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

func (e *env) run(name string, environ []string, args ...string) result {
	e.t.Helper()
	res, err := e.Exec(3*time.Minute, name, environ, args...)
	r := result{
		cmd:    filepath.Base(name) + " " + shellJoin(args),
		stdout: ansi.ReplaceAllString(res.Stdout, ""),
		stderr: ansi.ReplaceAllString(res.Stderr, ""),
		code:   res.Code,
	}
	if err != nil {
		e.t.Fatalf("running %s: %v", r.cmd, err)
	}
	if os.Getenv("USHER_GCLOUD_TRACE") != "" {
		e.t.Logf("%s", r)
	}
	return r
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " '\"<()*") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// gcloud runs the real gcloud with the test's isolated configuration.
func (e *env) gcloud(args ...string) result {
	e.t.Helper()
	return e.run(gcloudBin, []string{"HOME=" + e.home, "CLOUDSDK_CONFIG=" + e.gcDir, "CLOUDSDK_CORE_DISABLE_PROMPTS=1"}, args...)
}

// mustGcloud runs gcloud and fails the test now unless it exits 0.
func (e *env) mustGcloud(args ...string) result {
	e.t.Helper()
	r := e.gcloud(args...)
	if r.code != 0 {
		e.t.Fatalf("%s\nwant exit 0", r)
	}
	return r
}

// usher runs Usher's own CLI with the server's configuration.
func (e *env) usher(args ...string) result {
	e.t.Helper()
	return e.run(usherBin, e.CLIEnv(), args...)
}

func (e *env) mustUsher(args ...string) result {
	e.t.Helper()
	r := e.usher(args...)
	if r.code != 0 {
		e.t.Fatalf("%s\nwant exit 0", r)
	}
	return r
}

// get sends GET url (a service URL) through the server's listener, with
// optional headers as name, value pairs.
func (e *env) get(url string, headers ...string) (int, string) {
	e.t.Helper()
	r, err := e.Do(http.MethodGet, url, nil, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Status, r.Body
}

// expectGet asserts GET url answers status, and when body is not "" that the
// answer contains it.
func (e *env) expectGet(t *testing.T, what, url string, status int, body string, headers ...string) {
	t.Helper()
	got, b := e.get(url, headers...)
	if got != status || (body != "" && !strings.Contains(b, body)) {
		t.Errorf("%s: GET %s: got %d %q, want %d %q", what, url, got, trunc(b), status, body)
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// svc is the part of a Knative service (gcloud --format=json) the tests read.
type svc struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				ContainerConcurrency *int   `json:"containerConcurrency"`
				ServiceAccountName   string `json:"serviceAccountName"`
				Containers           []struct {
					Image   string   `json:"image"`
					Command []string `json:"command"`
					Args    []string `json:"args"`
					Env     []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"env"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
	Status struct {
		URL                       string `json:"url"`
		LatestReadyRevisionName   string `json:"latestReadyRevisionName"`
		LatestCreatedRevisionName string `json:"latestCreatedRevisionName"`
	} `json:"status"`
}

// envMap is the first container's env as NAME → value.
func (s svc) envMap() map[string]string {
	m := map[string]string{}
	if c := s.Spec.Template.Spec.Containers; len(c) > 0 {
		for _, v := range c[0].Env {
			m[v.Name] = v.Value
		}
	}
	return m
}

// describe is `gcloud run services describe NAME --format=json`.
func (e *env) describe(name string) svc {
	e.t.Helper()
	r := e.mustGcloud("run", "services", "describe", name, "--region="+region, "--format=json")
	var s svc
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("%s\nnot a service: %v", r, err)
	}
	return s
}

// deploy runs `gcloud run deploy NAME --image=file://IMAGE --region` with
// flags, requires exit 0 and returns the service's URL. gcloud reports a
// failed IAM step of a deploy only as a warning (exit 0): that is an error
// here.
func (e *env) deploy(name, image string, flags ...string) string {
	e.t.Helper()
	r := e.mustGcloud(append([]string{"run", "deploy", name, "--image=file://" + image, "--region=" + region, "--quiet"}, flags...)...)
	if strings.Contains(r.out(), "Completed with warnings") {
		e.t.Errorf("%s\nwant no warnings", r)
	}
	m := serviceURLLine.FindStringSubmatch(r.out())
	if m == nil {
		e.t.Fatalf("%s\nwant a \"Service URL: …\" line", r)
	}
	return m[1]
}

var serviceURLLine = regexp.MustCompile(`(?m)^Service URL: (\S+)$`)

// policy is an IAM policy as gcloud prints it with --format=json.
type policy struct {
	Version  int    `json:"version"`
	Etag     string `json:"etag"`
	Bindings []struct {
		Role      string          `json:"role"`
		Members   []string        `json:"members"`
		Condition json.RawMessage `json:"condition"`
	} `json:"bindings"`
}

func (p policy) has(role, member string) bool {
	for _, b := range p.Bindings {
		if b.Role == role {
			for _, m := range b.Members {
				if m == member {
					return true
				}
			}
		}
	}
	return false
}

func parsePolicy(t *testing.T, r result) policy {
	t.Helper()
	var p policy
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("%s\nnot a policy: %v", r, err)
	}
	return p
}

// saEmail is the email of service account NAME in the test project.
func saEmail(name string) string { return name + "@" + project + ".iam.gserviceaccount.com" }

// step runs a subtest and stops the parent when it fails: later steps
// depend on earlier ones.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

func bearer(tok string) string { return "Bearer " + tok }
