package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries built once by TestMain.
var (
	usherBin string
	helloBin string
	echoBin  string
	// frontendBin calls another service with a token from the metadata server.
	frontendBin string
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
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: no go.mod at the module root %s: %v\n", root, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "usher-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	usherBin = filepath.Join(dir, "usher")
	helloBin = filepath.Join(dir, "hello")
	echoBin = filepath.Join(dir, "echo")
	frontendBin = filepath.Join(dir, "frontend")
	for _, b := range []struct{ out, pkg string }{
		{usherBin, "./cmd/usher"},
		{helloBin, "./examples/hello"},
		{echoBin, "./test/e2e/testdata/echo"},
		{frontendBin, "./test/e2e/testdata/frontend"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

// server is one `usher serve` process and the directories it owns. Restarts
// reuse the data dir and HOME.
type server struct {
	t       *testing.T
	dir     string
	dataDir string
	home    string
	logPath string
	config  string // DATA_DIR/config.json, the CLI's USHER_CONFIG

	mu   sync.Mutex
	addr string // 127.0.0.1:PORT of the current process
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited

	http *http.Client
	// serveArgs are extra `usher serve` flags (startServerWith).
	serveArgs []string
}

var servingLine = regexp.MustCompile(`msg="usher serving" addr=(\S+)`)

// startServer starts a server on a fresh data dir and a free port; it is
// stopped when the test ends.
func startServer(t *testing.T) *server {
	t.Helper()
	return startServerWith(t)
}

// startServerWith is startServer with extra `usher serve` flags.
func startServerWith(t *testing.T, serveArgs ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:         t,
		dir:       dir,
		dataDir:   filepath.Join(dir, "data"),
		home:      filepath.Join(dir, "home"),
		logPath:   filepath.Join(dir, "usher.log"),
		serveArgs: serveArgs,
	}
	s.config = filepath.Join(s.dataDir, "config.json")
	if err := os.MkdirAll(s.home, 0o700); err != nil {
		t.Fatal(err)
	}
	// Every connection goes to the server's listener, whatever the URL's
	// host: service hosts (*.run.localhost) need not resolve.
	s.http = &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, s.currentAddr())
			},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			s.dumpLog()
		}
	})
	s.launch(t, "127.0.0.1:0")
	return s
}

func (s *server) currentAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// port is the port the current process listens on.
func (s *server) port(t *testing.T) string {
	_, port, err := net.SplitHostPort(s.currentAddr())
	if err != nil {
		t.Fatalf("server address %q: %v", s.currentAddr(), err)
	}
	return port
}

// launch starts `usher serve --addr addr` and waits until it answers
// /healthz.
func (s *server) launch(t *testing.T, addr string) {
	t.Helper()
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	fi, err := logFile.Stat()
	if err != nil {
		t.Fatal(err)
	}
	offset := fi.Size()
	cmd := exec.Command(usherBin, append([]string{"serve", "--addr", addr, "--data-dir", s.dataDir}, s.serveArgs...)...)
	cmd.Dir = s.dir
	cmd.Env = append(cleanEnv(), "HOME="+s.home)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting usher serve: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.addr = cmd, done, ""
	s.mu.Unlock()

	// The log line tells the bound address.
	var bound string
	poll(t, 20*time.Second, "the `usher serving` log line", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("usher serve exited before serving: %v\n%s", cmd.ProcessState, s.logSince(offset))
		default:
		}
		m := servingLine.FindStringSubmatch(s.logSince(offset))
		if m == nil {
			return false, "no log line yet"
		}
		bound = m[1]
		return true, ""
	})
	s.mu.Lock()
	s.addr = bound
	s.mu.Unlock()

	poll(t, 20*time.Second, "GET /healthz 200", func() (bool, string) {
		resp, err := s.http.Get("http://" + bound + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

func (s *server) logSince(offset int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func (s *server) dumpLog() {
	b, _ := os.ReadFile(s.logPath)
	const max = 16 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	s.t.Logf("usher serve log (%s):\n%s", s.logPath, b)
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL if it does
// not within 30s).
func (s *server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.t.Errorf("usher serve did not exit 30s after SIGTERM; killing it")
		cmd.Process.Kill()
		<-done
	}
}

// crash kills the server with SIGKILL (kill -9) and waits until it is gone.
func (s *server) crash() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	cmd.Process.Kill()
	<-done
}

// restart starts the server again on the same data dir, at addr ("" for the
// same address as before).
func (s *server) restart(t *testing.T, addr string) {
	t.Helper()
	if addr == "" {
		addr = s.currentAddr()
	}
	s.launch(t, addr)
}

// cleanEnv is the test's environment without variables that would point the
// server or the CLI elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HOME", "USHER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// cliResult is what a CLI run printed and its exit code.
type cliResult struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r cliResult) String() string {
	return fmt.Sprintf("usher %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, usherBin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(cleanEnv(), "HOME="+s.home, "USHER_CONFIG="+s.config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	default:
		return r, fmt.Errorf("running usher %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
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
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
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
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", timeout, what, last)
		}
		time.Sleep(delay)
		delay = min(delay*2, 250*time.Millisecond)
	}
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
