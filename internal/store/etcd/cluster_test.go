package etcd

// Real etcd members for the tests: /usr/bin/etcd (Debian's etcd-server,
// installed by .ci/run) on loopback ports, with temp data dirs. Members run
// with etcd's default durability (WAL fsync on every commit); this etcd has
// no --unsafe-no-fsync and the tests do not need it.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const etcdBin = "/usr/bin/etcd"

// startTimeout bounds a member (or cluster) becoming healthy.
const startTimeout = 30 * time.Second

const notTested = "*** etcd not installed: etcd backend NOT TESTED ***"

func etcdInstalled() bool {
	_, err := os.Stat(etcdBin)
	return err == nil
}

func TestMain(m *testing.M) {
	if !etcdInstalled() {
		// Loud even without -v: a silent skip would hide an untested backend.
		fmt.Fprintf(os.Stderr, "\n%s\n(install Debian's etcd-server: apt-get install -y etcd-server)\n\n", notTested)
	}
	os.Exit(m.Run())
}

// needEtcd skips without /usr/bin/etcd, except in CI where it fails.
func needEtcd(t *testing.T) {
	t.Helper()
	if etcdInstalled() {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: %s is missing and CI is set (.ci/run installs etcd-server)", notTested, etcdBin)
	}
	t.Skip(notTested)
}

type member struct {
	name      string
	dataDir   string
	clientURL string // http(s)://127.0.0.1:PORT
	peerURL   string
	args      []string
	logPath   string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// endpoint is the member's HOST:PORT.
func (m *member) endpoint() string {
	_, hostport, _ := strings.Cut(m.clientURL, "://")
	return hostport
}

func (m *member) running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *member) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(etcdBin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// etcd reads ETCD_* variables as flags; keep the caller's out.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Die with the test binary even if it is killed before its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", etcdBin, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		logf.Close()
		close(done)
	}(m.done)
}

// kill SIGKILLs the member and waits for it to exit.
func (m *member) kill() {
	if !m.running() {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

func (m *member) logTail(n int) string {
	f, err := os.Open(m.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

type cluster struct {
	members []*member
	// tls is the client TLS config for members serving https.
	tls *tls.Config
}

// freePorts reserves n distinct loopback ports and releases them for etcd.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// tlsFiles, when set, serves client URLs over https with client
// certificate authentication.
type tlsFiles struct{ cert, key, ca string }

// startCluster starts an n-member etcd cluster on loopback and waits until
// every member is healthy. Members are SIGKILLed when the test ends.
func startCluster(t *testing.T, n int, serverTLS *tlsFiles, clientTLS *tls.Config) *cluster {
	t.Helper()
	needEtcd(t)
	dir := t.TempDir()
	ports := freePorts(t, 2*n)
	scheme := "http"
	if serverTLS != nil {
		scheme = "https"
	}
	c := &cluster{tls: clientTLS}
	var initial []string
	for i := range n {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			clientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name+".etcd") // etcd creates it 0700
		m.logPath = filepath.Join(dir, m.name+".log")
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	token := fmt.Sprintf("usher-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	for _, m := range c.members {
		m.args = []string{
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap", "--log-outputs", "stderr",
		}
		if serverTLS != nil {
			m.args = append(m.args, "--cert-file", serverTLS.cert, "--key-file", serverTLS.key,
				"--trusted-ca-file", serverTLS.ca, "--client-cert-auth")
		}
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.kill()
		}
		if t.Failed() {
			for _, m := range c.members {
				t.Logf("etcd %s log tail:\n%s", m.name, m.logTail(30))
			}
		}
	})
	for _, m := range c.members {
		m.start(t)
	}
	c.waitHealthy(t, c.members...)
	return c
}

// endpoints are the HOST:PORT of every member, dead or alive.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.endpoint())
	}
	return eps
}

// waitHealthy polls each member's /health until it reports a leader and
// serves a quorum read.
func (c *cluster) waitHealthy(t *testing.T, ms ...*member) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	deadline := time.Now().Add(startTimeout)
	for _, m := range ms {
		for {
			if !m.running() {
				t.Fatalf("etcd %s exited: %v\n%s", m.name, m.cmd.ProcessState, m.logTail(30))
			}
			resp, err := hc.Get(m.clientURL + "/health")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`) {
					break
				}
				err = fmt.Errorf("%s: %s", resp.Status, body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd %s not healthy after %v: %v\n%s", m.name, startTimeout, err, m.logTail(30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// rawClient is a plain etcd client for what the store does not do
// (compaction, member status, peeking at raw keys).
func (c *cluster) rawClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 5 * time.Second, TLS: c.tls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// leader is the running member that currently leads.
func (c *cluster) leader(t *testing.T, cli *clientv3.Client) *member {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		for _, m := range c.members {
			if !m.running() {
				continue
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			st, err := cli.Status(ctx, m.endpoint())
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no etcd leader after %v", startTimeout)
	return nil
}

func (c *cluster) running() []*member {
	var ms []*member
	for _, m := range c.members {
		if m.running() {
			ms = append(ms, m)
		}
	}
	return ms
}
