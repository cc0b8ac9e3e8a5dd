// Package usherproc runs the usher binary as a child process: `usher serve`
// on its own data dir, HOME and port, and the usher CLI pointed at it.
//
// It is for tests only (the end-to-end suites under test/); nothing in the
// product imports it.
package usherproc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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

// ModuleRoot is the directory holding go.mod, found from the working
// directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// Build runs `go build` at the module root for each package (module-relative,
// such as "./cmd/usher") into dir, naming each binary after the package's
// last path element. It returns the binaries' paths in the order of pkgs.
func Build(dir string, pkgs ...string) ([]string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	bins := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		bins[i] = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", bins[i], pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bins, nil
}

// CleanEnv is the test's environment without the variables that would point
// the server or the CLI elsewhere (HOME, USHER_CONFIG, proxies), nor those
// drop reports true for (it gets the upper-cased name; drop may be nil).
func CleanEnv(drop func(key string) bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		k = strings.ToUpper(k)
		switch k {
		case "HOME", "USHER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		if drop != nil && drop(k) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Options configure Start.
type Options struct {
	// Bin is the usher binary. Required.
	Bin string
	// Dir is the server's working directory and holds data/, home/ and
	// usher.log. Required (usually t.TempDir()).
	Dir string
	// Addr is the first --addr; "" for 127.0.0.1:0.
	Addr string
	// Args are extra `usher serve` flags.
	Args []string
	// DropEnv names further variables CleanEnv leaves out, for the server
	// and for every command Exec runs.
	DropEnv func(key string) bool
	// LogTail is how much of the server log a failed test prints (default
	// 16 KiB).
	LogTail int
	// CAFile, for a server started with --tls-cert/--tls-key, is the PEM
	// certificate to trust: HTTP then speaks HTTPS (HTTP/2 when the server
	// offers it), and commands Exec runs get SSL_CERT_FILE pointing at it.
	CAFile string
	// User, if set, is who `usher serve` runs as (the test being root):
	// Dir and HOME are handed to that user, so Dir's parents must let it
	// through.
	User *syscall.Credential
}

// Server is one `usher serve` process and the directories it owns. Restarts
// reuse the data dir and HOME.
type Server struct {
	Bin        string
	Dir        string
	DataDir    string // DIR/data
	Home       string // DIR/home
	LogPath    string // DIR/usher.log
	ConfigPath string // DATA_DIR/config.json, the CLI's USHER_CONFIG
	// Args are the extra `usher serve` flags every (re)start passes.
	Args []string
	// HTTP sends every request to the server's listener, whatever the URL's
	// host (service hosts such as *.run.localhost need not resolve). It does
	// not follow redirects nor keep connections alive.
	HTTP *http.Client

	t       testing.TB
	dropEnv func(string) bool
	logTail int
	caFile  string
	user    *syscall.Credential

	mu   sync.Mutex
	addr string // 127.0.0.1:PORT of the current process
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

var servingLine = regexp.MustCompile(`msg="usher serving" addr=(\S+)`)

// Start starts `usher serve` and waits until it answers /healthz. The server
// is stopped when the test ends, and its log printed if the test failed.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{
		Bin:     o.Bin,
		Dir:     o.Dir,
		DataDir: filepath.Join(o.Dir, "data"),
		Home:    filepath.Join(o.Dir, "home"),
		LogPath: filepath.Join(o.Dir, "usher.log"),
		Args:    o.Args,
		t:       t,
		dropEnv: o.DropEnv,
		logTail: o.LogTail,
		caFile:  o.CAFile,
		user:    o.User,
	}
	if s.logTail == 0 {
		s.logTail = 16 << 10
	}
	s.ConfigPath = filepath.Join(s.DataDir, "config.json")
	if err := os.MkdirAll(s.Home, 0o700); err != nil {
		t.Fatal(err)
	}
	if u := o.User; u != nil {
		for _, dir := range []string{s.Dir, s.Home} {
			if err := os.Chown(dir, int(u.Uid), int(u.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr())
		},
		DisableKeepAlives: true,
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			t.Fatalf("%s: no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		tr.ForceAttemptHTTP2 = true
	}
	s.HTTP = &http.Client{
		Timeout:       60 * time.Second,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("usher serve log (%s):\n%s", s.LogPath, s.Log())
		}
	})
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s.launch(t, addr)
	return s
}

// Addr is 127.0.0.1:PORT of the current process.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Port is the port the current process listens on.
func (s *Server) Port() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return port
}

// Done is closed when the current process has exited.
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Signal sends sig to the current process.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	return cmd.Process.Signal(sig)
}

// launch starts `usher serve --addr addr` and waits until it answers
// /healthz.
func (s *Server) launch(t testing.TB, addr string) {
	t.Helper()
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	fi, err := logFile.Stat()
	if err != nil {
		t.Fatal(err)
	}
	offset := fi.Size()
	cmd := exec.Command(s.Bin, append([]string{"serve", "--addr", addr, "--data-dir", s.DataDir}, s.Args...)...)
	cmd.Dir = s.Dir
	cmd.Env = append(CleanEnv(s.dropEnv), "HOME="+s.Home)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if s.user != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.user}
	}
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
	Poll(t, 20*time.Second, "the `usher serving` log line", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("usher serve exited before serving: %v\n%s", cmd.ProcessState, s.LogSince(offset))
		default:
		}
		m := servingLine.FindStringSubmatch(s.LogSince(offset))
		if m == nil {
			return false, "no log line yet"
		}
		bound = m[1]
		return true, ""
	})
	s.mu.Lock()
	s.addr = bound
	s.mu.Unlock()

	Poll(t, 20*time.Second, "GET /healthz 200", func() (bool, string) {
		scheme := "http://"
		if s.caFile != "" {
			scheme = "https://"
		}
		resp, err := s.HTTP.Get(scheme + "localhost/healthz") // dialled at bound
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// LogSince is the server log from byte offset on.
func (s *Server) LogSince(offset int64) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// Log is the end of the server log (Options.LogTail bytes at most).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	if len(b) > s.logTail {
		b = append([]byte("…\n"), b[len(b)-s.logTail:]...)
	}
	return string(b)
}

// Stop sends SIGTERM and waits for the process to exit; if it has not within
// 30s, the test gets an error and the process SIGKILL.
func (s *Server) Stop() {
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

// Crash kills the server with SIGKILL (kill -9) and waits until it is gone.
func (s *Server) Crash() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same data dir, at addr ("" for the
// same address as before), with the current Args.
func (s *Server) Restart(t testing.TB, addr string) {
	t.Helper()
	if addr == "" {
		addr = s.Addr()
	}
	s.launch(t, addr)
}

// Response is an HTTP answer, read in full.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends method url through the server's listener (HTTP) with headers as
// name, value pairs, and reads the answer in full.
func (s *Server) Do(method, url string, body io.Reader, headers ...string) (Response, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return Response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: reading body: %v", method, url, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// Result is what a command printed and its exit code.
type Result struct {
	Args   []string
	Stdout string
	Stderr string
	Code   int
}

// String reports an usher CLI run: arguments, exit code and output.
func (r Result) String() string {
	return fmt.Sprintf("usher %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// Exec runs name with args in the server's directory, with the clean
// environment plus env, for at most timeout. The error is for a command that
// could not be run at all; a non-zero exit is Result.Code.
func (s *Server) Exec(timeout time.Duration, name string, env []string, args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(CleanEnv(s.dropEnv), env...)
	if s.caFile != "" {
		cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+s.caFile)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.Code = exitErr.ExitCode()
	default:
		return r, err
	}
	return r, nil
}

// CLIEnv is the environment the usher CLI needs on top of the clean one:
// the server's HOME and USHER_CONFIG.
func (s *Server) CLIEnv() []string {
	return []string{"HOME=" + s.Home, "USHER_CONFIG=" + s.ConfigPath}
}

// CLI runs the usher CLI against the server (at most 2 minutes).
func (s *Server) CLI(args ...string) (Result, error) {
	r, err := s.Exec(2*time.Minute, s.Bin, s.CLIEnv(), args...)
	if err != nil {
		err = fmt.Errorf("running usher %s: %w", strings.Join(args, " "), err)
	}
	return r, err
}

// Poll calls check until it reports true or the deadline passes, then fails
// the test with check's last word.
func Poll(t testing.TB, timeout time.Duration, what string, check func() (ok bool, last string)) {
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
