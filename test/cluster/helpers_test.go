// Package cluster tests several `usher serve` nodes sharing one etcd store
// (issue 7). Its helpers are its own, kept minimal on purpose.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
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
	"sync"
	"syscall"
	"testing"
	"time"
)

const region = "us-central1"

var (
	usherBin    string
	helloBin    string
	frontendBin string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "usher-cluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	usherBin, helloBin, frontendBin = filepath.Join(dir, "usher"), filepath.Join(dir, "hello"), filepath.Join(dir, "frontend")
	for _, b := range []struct{ out, pkg string }{{usherBin, "./cmd/usher"}, {helloBin, "./examples/hello"}, {frontendBin, "./test/e2e/testdata/frontend"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// etcd is one single-member etcd on loopback.
type etcd struct {
	bin, dir, client, peer string
	cmd                    *exec.Cmd
	done                   chan struct{}
}

func startEtcd(t *testing.T) *etcd {
	t.Helper()
	const bin = "/usr/bin/etcd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing, and CI must run the cluster tests: %v", bin, err)
		}
		t.Skip("*** /usr/bin/etcd not installed: multi-node tests NOT RUN ***")
	}
	e := &etcd{bin: bin, dir: t.TempDir(), client: "127.0.0.1:" + freePort(t), peer: "127.0.0.1:" + freePort(t)}
	e.start(t)
	t.Cleanup(func() { e.kill() })
	return e
}

func (e *etcd) start(t *testing.T) {
	t.Helper()
	e.cmd = exec.Command(e.bin, "--name", "cluster", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", "http://"+e.client, "--advertise-client-urls", "http://"+e.client,
		"--listen-peer-urls", "http://"+e.peer, "--initial-advertise-peer-urls", "http://"+e.peer,
		"--initial-cluster", "cluster=http://"+e.peer,
		// As the README recommends.
		"--pre-vote", "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h")
	log, err := os.OpenFile(filepath.Join(e.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(e.cmd, e.done)
	poll(t, 20*time.Second, "etcd /health", func() (bool, string) {
		resp, err := http.Get("http://" + e.client + "/health")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}

func (e *etcd) signal(sig syscall.Signal) { e.cmd.Process.Signal(sig) }

func (e *etcd) kill() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGCONT)
	e.cmd.Process.Kill()
	<-e.done
}

// node is one `usher serve` process with its own data dir and HOME.
type node struct {
	t                           *testing.T
	name, dir, dataDir, logPath string
	addr                        string
	scheme                      string // of its listener: http, or https with --acme-email
	args                        []string
	cmd                         *exec.Cmd
	done                        chan struct{}
	http                        *http.Client
}

var servingLine = regexp.MustCompile(`msg="usher serving" addr=(\S+)`)

func startNode(t *testing.T, name, storeURL string, extra ...string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, name: name, dir: dir, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "usher.log")}
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o700); err != nil {
		t.Fatal(err)
	}
	n.args = append([]string{"serve", "--store", storeURL, "--addr", "127.0.0.1:0", "--data-dir", n.dataDir, "--node-name", name}, extra...)
	n.scheme = "http"
	if slices.Contains(extra, "--acme-email") {
		n.scheme = "https"
	}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			b, _ := os.ReadFile(n.logPath)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("node %s log:\n%s", name, b)
		}
	})
	n.launch(t)
	return n
}

// launch starts the node's process (again, after stop: same data dir, same
// flags) and waits for its "usher serving" line.
func (n *node) launch(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	from, _ := log.Seek(0, io.SeekEnd)
	n.cmd = exec.Command(usherBin, n.args...)
	n.cmd.Dir = n.dir
	n.cmd.Env = append(cleanEnv(), "HOME="+filepath.Join(n.dir, "home"))
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	n.done = done
	go func(cmd *exec.Cmd) { cmd.Wait(); close(done) }(n.cmd)
	poll(t, 30*time.Second, "node "+n.name+" serving", func() (bool, string) {
		select {
		case <-done:
			b, _ := os.ReadFile(n.logPath)
			t.Fatalf("node %s exited: %s", n.name, b)
		default:
		}
		b, _ := os.ReadFile(n.logPath)
		m := servingLine.FindSubmatch(b[min(int(from), len(b)):])
		if m == nil {
			return false, "not yet"
		}
		n.addr = string(m[1])
		return true, ""
	})
	n.http = dialing(n.addr)
}

// dialing is an HTTP client whose every connection goes to addr, whatever
// host the URL names (service hosts do not resolve).
func dialing(addr string) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

func (n *node) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *node) crash() { n.cmd.Process.Kill(); <-n.done }

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

// directConfig writes a copy of the node's config.json whose server is this
// node's own listener (config.json names the cluster's public URL).
func (n *node) directConfig() (string, error) {
	b, err := os.ReadFile(filepath.Join(n.dataDir, "config.json"))
	if err != nil {
		return "", err
	}
	var conf map[string]any
	if err := json.Unmarshal(b, &conf); err != nil {
		return "", err
	}
	conf["server"] = "http://" + n.addr
	if n.scheme == "https" { // its certificate names the public host
		_, port, _ := net.SplitHostPort(n.addr)
		conf["server"] = "https://localhost:" + port
	}
	b, _ = json.Marshal(conf)
	// One file per call: concurrent CLI runs against one node must not see
	// each other's half-written file.
	f, err := os.CreateTemp(n.dir, "direct-*.json")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// cli runs the usher CLI with this node's credential against this node
// (credentials live in etcd, so any node's config works against any node).
func (n *node) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conf, err := n.directConfig()
	if err != nil {
		return "", err
	}
	defer os.Remove(conf)
	cmd := exec.CommandContext(ctx, usherBin, args...)
	cmd.Dir = n.dir
	cmd.Env = append(cleanEnv(), "HOME="+filepath.Join(n.dir, "home"), "USHER_CONFIG="+conf)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("usher %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (n *node) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.cli(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// get sends GET rawURL to this node (whatever host:port the URL names).
func (n *node) get(rawURL string, headers ...string) (int, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = u.Host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (n *node) status(rawURL string) string {
	code, body, err := n.get(rawURL)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %.80q", code, body)
}

func (n *node) readyz() int {
	code, _, err := n.get("http://" + n.addr + "/readyz")
	if err != nil {
		return 0
	}
	return code
}

func (n *node) serviceURL(t *testing.T, name string) string {
	t.Helper()
	out := n.mustCLI(t, "run", "services", "describe", name, "--region="+region, "--format", "json")
	var s struct {
		Status struct {
			URL string `json:"url"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Status.URL == "" {
		t.Fatalf("describe %s: %v\n%s", name, err, out)
	}
	return s.Status.URL
}

func (n *node) members(t *testing.T, name string) map[string]bool {
	t.Helper()
	out := n.mustCLI(t, "run", "services", "get-iam-policy", name, "--region="+region, "--format", "json")
	var p struct {
		Bindings []struct {
			Role    string   `json:"role"`
			Members []string `json:"members"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("get-iam-policy: %v\n%s", err, out)
	}
	m := map[string]bool{}
	for _, b := range p.Bindings {
		for _, x := range b.Members {
			m[b.Role+" "+x] = true
		}
	}
	return m
}

func poll(t *testing.T, timeout time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, l := check()
		if ok {
			return
		}
		last = l
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ sync.Mutex
