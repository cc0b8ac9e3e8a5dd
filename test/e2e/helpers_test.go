package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// Binaries built once by TestMain.
var (
	usherBin string
	helloBin string
	echoBin  string
	// frontendBin calls another service with a token from the metadata server.
	frontendBin string
	// grpcBin serves grpc.health.v1 over h2c (--use-http2).
	grpcBin string
	// proberBin is runtimetest's test app: it reads files, dials addresses
	// and says who it runs as, for the sandbox's escape tests.
	proberBin string
	// jobtaskBin is a Cloud Run job task (jobs_test.go).
	jobtaskBin string
)

const (
	project = "local-project"
	region  = "us-central1"
)

// saEmail is the email of service account NAME in the test project.
func saEmail(name string) string { return name + "@" + project + ".iam.gserviceaccount.com" }

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "usher-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // a server run as nobody runs them too
	bins, err := usherproc.Build(dir, "./cmd/usher", "./examples/hello", "./test/e2e/testdata/echo", "./test/e2e/testdata/frontend", "./test/e2e/testdata/grpchealth", "./internal/runtime/runtimetest/testapp", "./test/e2e/testdata/jobtask")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	usherBin, helloBin, echoBin, frontendBin, grpcBin, proberBin, jobtaskBin = bins[0], bins[1], bins[2], bins[3], bins[4], bins[5], bins[6]
	return m.Run()
}

// server is one `usher serve` process and the directories it owns (see
// usherproc.Server). Restarts reuse the data dir and HOME.
type server struct {
	*usherproc.Server
	t       *testing.T
	dir     string
	dataDir string
	home    string
	logPath string
	config  string // DATA_DIR/config.json, the CLI's USHER_CONFIG

	http *http.Client
	// serveArgs are extra `usher serve` flags (startServerWith); restart
	// passes them again.
	serveArgs []string
}

// startServer starts a server on a fresh data dir and a free port; it is
// stopped when the test ends.
func startServer(t *testing.T) *server {
	t.Helper()
	return startServerWith(t)
}

// startServerWith is startServer with extra `usher serve` flags.
func startServerWith(t *testing.T, serveArgs ...string) *server {
	t.Helper()
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), Args: serveArgs})
	return &server{
		Server:    p,
		t:         t,
		dir:       p.Dir,
		dataDir:   p.DataDir,
		home:      p.Home,
		logPath:   p.LogPath,
		config:    p.ConfigPath,
		http:      p.HTTP,
		serveArgs: serveArgs,
	}
}

func (s *server) currentAddr() string { return s.Addr() }

// port is the port the current process listens on.
func (s *server) port(t *testing.T) string {
	_, port, err := net.SplitHostPort(s.currentAddr())
	if err != nil {
		t.Fatalf("server address %q: %v", s.currentAddr(), err)
	}
	return port
}

func (s *server) logSince(offset int64) string { return s.LogSince(offset) }

// stop sends SIGTERM and waits for the process to exit (SIGKILL if it does
// not within 30s).
func (s *server) stop() { s.Stop() }

// crash kills the server with SIGKILL (kill -9) and waits until it is gone.
func (s *server) crash() { s.Crash() }

// restart starts the server again on the same data dir, at addr ("" for the
// same address as before), with s.serveArgs.
func (s *server) restart(t *testing.T, addr string) {
	t.Helper()
	s.Args = s.serveArgs
	s.Restart(t, addr)
}

// cliResult is what a CLI run printed and its exit code.
type cliResult struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r cliResult) String() string {
	return usherproc.Result{Args: r.args, Stdout: r.stdout, Stderr: r.stderr, Code: r.code}.String()
}

// cli runs the usher CLI against s (USHER_CONFIG) and returns what it printed.
func (s *server) cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	r, err := s.runCLI(args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runCLI is cli for goroutines other than the test's: it returns an error
// when the CLI could not be run at all.
func (s *server) runCLI(args ...string) (cliResult, error) {
	r, err := s.CLI(args...)
	return cliResult{args: args, stdout: r.Stdout, stderr: r.Stderr, code: r.Code}, err
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *server) mustCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := s.cli(t, args...)
	if r.code != 0 {
		t.Fatalf("got %s\nwant exit 0", r)
	}
	return r
}

// cliFails runs a CLI command that must fail: non-zero exit and exactly one
// line on stderr starting with "ERROR:". It returns that line.
func cliFails(t *testing.T, r cliResult) string {
	t.Helper()
	if r.code == 0 {
		t.Errorf("got %s\nwant a non-zero exit", r)
	}
	line := strings.TrimRight(r.stderr, "\n")
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, "ERROR: ") {
		t.Errorf("usher %s: got stderr %q, want one line starting with \"ERROR: \"", strings.Join(r.args, " "), r.stderr)
	}
	return line
}

// response is an HTTP answer, read in full.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends method url with headers (name, value pairs) through the server's
// listener and reads the answer.
func (s *server) do(t *testing.T, method, url string, body io.Reader, headers ...string) response {
	t.Helper()
	if len(headers)%2 != 0 {
		t.Fatalf("do: headers must be name, value pairs: %q", headers)
	}
	r, err := s.Do(method, url, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: r.Status, header: r.Header, body: r.Body}
}

// get sends GET url with headers (name, value pairs).
func (s *server) get(t *testing.T, url string, headers ...string) response {
	t.Helper()
	return s.do(t, http.MethodGet, url, nil, headers...)
}

// serverURL is the admin API's URL from the CLI configuration.
func (s *server) serverURL(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Server string `json:"server"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", s.config, err)
	}
	if cfg.Server == "" {
		t.Fatalf("%s has no \"server\": %s", s.config, b)
	}
	return strings.TrimRight(cfg.Server, "/")
}

// poll calls check until it reports true or the deadline passes.
func poll(t *testing.T, timeout time.Duration, what string, check func() (ok bool, last string)) {
	t.Helper()
	usherproc.Poll(t, timeout, what, check)
}

// service is the part of a Knative service the tests read.
type service struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		URL                     string `json:"url"`
		LatestReadyRevisionName string `json:"latestReadyRevisionName"`
		Conditions              []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"status"`
}

func (sv *service) ready() string {
	for _, c := range sv.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status
		}
	}
	return ""
}

// describe returns `usher run services describe NAME --format json`.
func (s *server) describe(t *testing.T, name string) service {
	t.Helper()
	r := s.mustCLI(t, "run", "services", "describe", name, "--region="+region, "--format", "json")
	var sv service
	if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil {
		t.Fatalf("describe %s --format json: %v\n%s", name, err, r.stdout)
	}
	return sv
}

// deploy deploys image as service name and returns its URL.
func (s *server) deploy(t *testing.T, name, image string, flags ...string) string {
	t.Helper()
	s.mustCLI(t, append([]string{"run", "deploy", name, "--image=file://" + image, "--region=" + region}, flags...)...)
	u := s.describe(t, name).Status.URL
	if u == "" {
		t.Fatalf("service %s has no status.url after deploy", name)
	}
	return u
}

// policy is an IAM policy as the CLI prints it with --format json.
type policy struct {
	Version  int       `json:"version,omitempty"`
	Etag     string    `json:"etag,omitempty"`
	Bindings []binding `json:"bindings,omitempty"`
}

type binding struct {
	Role      string          `json:"role"`
	Members   []string        `json:"members"`
	Condition json.RawMessage `json:"condition,omitempty"`
}

func (p policy) members(role string) []string {
	var out []string
	for _, b := range p.Bindings {
		if b.Role == role {
			out = append(out, b.Members...)
		}
	}
	return out
}

func (p policy) bindingsJSON() string {
	b, _ := json.Marshal(p.Bindings)
	return string(b)
}

// servicePolicy returns `usher run services get-iam-policy NAME --format json`.
func (s *server) servicePolicy(t *testing.T, name string) policy {
	t.Helper()
	r := s.mustCLI(t, "run", "services", "get-iam-policy", name, "--region="+region, "--format", "json")
	var p policy
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("get-iam-policy %s --format json: %v\n%s", name, err, r.stdout)
	}
	return p
}

// projectPolicy returns `usher projects get-iam-policy PROJECT --format json`.
func (s *server) projectPolicy(t *testing.T) policy {
	t.Helper()
	r := s.mustCLI(t, "projects", "get-iam-policy", project, "--format", "json")
	var p policy
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("projects get-iam-policy --format json: %v\n%s", err, r.stdout)
	}
	return p
}

// grant binds role to member on service name.
func (s *server) grant(t *testing.T, name, member, role string) {
	t.Helper()
	s.mustCLI(t, "run", "services", "add-iam-policy-binding", name, "--member="+member, "--role="+role, "--region="+region)
}

// createSA creates service account NAME and returns its email.
func (s *server) createSA(t *testing.T, name string) string {
	t.Helper()
	s.mustCLI(t, "iam", "service-accounts", "create", name)
	return saEmail(name)
}

// idToken mints an identity token for service account email with audience.
func (s *server) idToken(t *testing.T, email, audience string) string {
	t.Helper()
	r := s.mustCLI(t, "auth", "print-identity-token", "--impersonate-service-account", email, "--audiences", audience)
	tok := strings.TrimSpace(r.stdout)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("print-identity-token: got %q, want a JWT", tok)
	}
	return tok
}

// jwtParts splits a JWT into its three base64url parts.
func jwtParts(t *testing.T, tok string) (header, payload, sig string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	return parts[0], parts[1], parts[2]
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

// claims decodes a JWT's payload.
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	_, p, _ := jwtParts(t, tok)
	var m map[string]any
	if err := json.Unmarshal(unb64(t, p), &m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

func bearer(tok string) string { return "Bearer " + tok }
