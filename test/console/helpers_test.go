// Package console_test drives Usher's web console the way a person does: the
// built `usher` binary serves it, `usher console --no-browser` prints the
// sign-in link, Debian's Chromium (through chromedp) clicks through it, and
// plain HTTP checks what anonymous and cross-site requests get.
package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// Binaries built once by TestMain.
var (
	usherBin string
	helloBin string
	// jobtaskBin is a Cloud Run job task (jobs_test.go).
	jobtaskBin string
)

const (
	project = "local-project"
	region  = "us-central1"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "usher-console-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "console tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins, err := usherproc.Build(dir, "./cmd/usher", "./examples/hello", "./test/e2e/testdata/jobtask")
	if err != nil {
		fmt.Fprintln(os.Stderr, "console tests:", err)
		return 1
	}
	usherBin, helloBin, jobtaskBin = bins[0], bins[1], bins[2]
	return m.Run()
}

// server is one `usher serve` process with its own data dir and HOME (see
// usherproc.Server).
type server struct {
	*usherproc.Server
	http *http.Client
}

// startServer starts a server on a fresh data dir and a free port; it stops
// when the test ends.
func startServer(t *testing.T) *server {
	t.Helper()
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), DropEnv: displayVar})
	return &server{Server: p, http: p.HTTP}
}

// displayVar: the server and the CLI get no display (no browser opens).
func displayVar(key string) bool { return key == "DISPLAY" || key == "WAYLAND_DISPLAY" }

// base is the server's own URL, as the CLI configuration and browsers name it.
func (s *server) base() string {
	return "http://localhost:" + s.Port()
}

type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return usherproc.Result{Args: r.args, Stdout: r.stdout, Stderr: r.stderr, Code: r.code}.String()
}

// cli runs the usher CLI against s.
func (s *server) cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	r, err := s.CLI(args...)
	if err != nil {
		t.Fatal(err)
	}
	return cliResult{args: args, stdout: r.Stdout, stderr: r.Stderr, code: r.Code}
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
	r, err := s.Do(method, target, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: r.Status, header: r.Header, body: r.Body}
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
	usherproc.Poll(t, timeout, what, check)
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
