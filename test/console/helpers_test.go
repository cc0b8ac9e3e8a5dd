// Package console_test drives Usher's web console the way a person does: the
// built `usher` binary serves it, `usher console --no-browser` prints the
// sign-in link, Debian's Chromium (through chromedp) clicks through it, and
// plain HTTP checks what anonymous and cross-site requests get.
package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binaries built once by TestMain.
var (
	usherBin string
	helloBin string
)

const (
	project = "local-project"
	region  = "us-central1"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "console tests:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "usher-console-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "console tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	usherBin = filepath.Join(dir, "usher")
	helloBin = filepath.Join(dir, "hello")
	for _, b := range []struct{ out, pkg string }{{usherBin, "./cmd/usher"}, {helloBin, "./examples/hello"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "console tests: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

// server is one `usher serve` process with its own data dir and HOME.
type server struct {
	t       *testing.T
	dir     string
	dataDir string
	home    string
	logPath string
	config  string
	addr    string // 127.0.0.1:PORT
	cmd     *exec.Cmd
	done    chan struct{}
	http    *http.Client
}

var servingLine = regexp.MustCompile(`msg="usher serving" addr=(\S+)`)

// startServer starts a server on a fresh data dir and a free port; it stops
// when the test ends.
func startServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, dataDir: filepath.Join(dir, "data"), home: filepath.Join(dir, "home"), logPath: filepath.Join(dir, "usher.log")}
	s.config = filepath.Join(s.dataDir, "config.json")
	if err := os.MkdirAll(s.home, 0o700); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	s.cmd = exec.Command(usherBin, "serve", "--addr", "127.0.0.1:0", "--data-dir", s.dataDir)
	s.cmd.Dir = dir
	s.cmd.Env = append(cleanEnv(), "HOME="+s.home)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting usher serve: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			if len(b) > 16<<10 {
				b = b[len(b)-16<<10:]
			}
			t.Logf("usher serve log:\n%s", b)
		}
	})
	poll(t, 20*time.Second, "the `usher serving` log line", func() (bool, string) {
		select {
		case <-s.done:
			t.Fatalf("usher serve exited before serving")
		default:
		}
		b, _ := os.ReadFile(s.logPath)
		m := servingLine.FindSubmatch(b)
		if m == nil {
			return false, "no log line yet"
		}
		s.addr = string(m[1])
		return true, ""
	})
	// Every connection goes to the server's listener, whatever the URL's
	// host says: service hosts (*.run.localhost) need not resolve.
	s.http = &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, s.addr)
			},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	poll(t, 20*time.Second, "GET /healthz 200", func() (bool, string) {
		resp, err := s.http.Get("http://" + s.addr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return s
}

func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Errorf("usher serve did not exit 30s after SIGTERM; killing it")
		s.cmd.Process.Kill()
		<-s.done
	}
}

// base is the server's own URL, as the CLI configuration and browsers name it.
func (s *server) base() string {
	_, port, _ := net.SplitHostPort(s.addr)
	return "http://localhost:" + port
}

// cleanEnv is the environment without variables that would point the server
// or the CLI elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HOME", "USHER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "DISPLAY", "WAYLAND_DISPLAY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("usher %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cli runs the usher CLI against s.
func (s *server) cli(t *testing.T, args ...string) cliResult {
	t.Helper()
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
		t.Fatalf("running usher %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (s *server) mustCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := s.cli(t, args...)
	if r.code != 0 {
		t.Fatalf("got %s\nwant exit 0", r)
	}
	return r
}

// signInLink runs `usher console --no-browser` (with extra flags) and returns
// the link it printed.
func (s *server) signInLink(t *testing.T, flags ...string) string {
	t.Helper()
	r := s.mustCLI(t, append([]string{"console", "--no-browser"}, flags...)...)
	link := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(link, s.base()+"/console/signin?code=") {
		t.Fatalf("usher console printed %q on stdout, want one line %s/console/signin?code=…", r.stdout, s.base())
	}
	return link
}

// deploy deploys examples/hello as service name and returns its URL.
func (s *server) deploy(t *testing.T, name string) string {
	t.Helper()
	s.mustCLI(t, "run", "deploy", name, "--image=file://"+helloBin, "--region="+region)
	r := s.mustCLI(t, "run", "services", "describe", name, "--region="+region, "--format", "value(status.url)")
	u := strings.TrimSpace(r.stdout)
	if u == "" {
		t.Fatalf("service %s has no URL after deploy", name)
	}
	return u
}

// members returns who holds role on service name, per the CLI.
func (s *server) members(t *testing.T, name, role string) []string {
	t.Helper()
	r := s.mustCLI(t, "run", "services", "get-iam-policy", name, "--region="+region, "--format", "json")
	var p struct {
		Bindings []struct {
			Role    string   `json:"role"`
			Members []string `json:"members"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("get-iam-policy --format json: %v\n%s", err, r.stdout)
	}
	var out []string
	for _, b := range p.Bindings {
		if b.Role == role {
			out = append(out, b.Members...)
		}
	}
	return out
}

// response is an HTTP answer, read in full.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request through the server's listener. headers are name, value
// pairs.
func (s *server) do(t *testing.T, method, target string, body io.Reader, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// postForm posts form values with headers (name, value pairs).
func (s *server) postForm(t *testing.T, target string, form url.Values, headers ...string) response {
	t.Helper()
	return s.do(t, http.MethodPost, target, strings.NewReader(form.Encode()),
		append([]string{"Content-Type", "application/x-www-form-urlencoded"}, headers...)...)
}

// invoke calls a service URL without credentials, as curl would.
func (s *server) invoke(t *testing.T, serviceURL string) response {
	t.Helper()
	return s.do(t, http.MethodGet, serviceURL+"/", nil)
}

// servicePage is a service's console page (tab "" for Overview).
func (s *server) servicePage(name, tab string) string {
	u := s.base() + "/console/projects/" + project + "/locations/" + region + "/services/" + name
	if tab != "" {
		u += "/" + tab
	}
	return u
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	etagField = regexp.MustCompile(`name="etag" value="([^"]+)"`)
)

// field returns the value of the first hidden field re matches in html.
func field(t *testing.T, re *regexp.Regexp, html string) string {
	t.Helper()
	m := re.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no %s in page:\n%s", re, html)
	}
	return m[1]
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

func sameMembers(got, want []string) bool {
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// policyEtag returns the etag of service name's policy, per the CLI.
func (s *server) policyEtag(t *testing.T, name string) string {
	t.Helper()
	r := s.mustCLI(t, "run", "services", "get-iam-policy", name, "--region="+region, "--format", "value(etag)")
	return strings.TrimSpace(r.stdout)
}

func urlValues(m map[string]string) url.Values {
	v := url.Values{}
	for k, val := range m {
		v.Set(k, val)
	}
	return v
}
