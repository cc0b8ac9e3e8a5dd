package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEtcdStore: usher serve on an etcd store (Debian's etcd-server) keeps
// services and policies there: a restart on the same etcd, with a new data
// dir, still has them.
func TestEtcdStore(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("etcd is not installed, and CI must test the etcd store (.ci/run installs etcd-server)")
		}
		t.Skip("*** etcd not installed: usher serve --store etcd:// NOT TESTED ***")
	}
	client, peer := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--name", "e2e", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "e2e=http://"+peer)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	storeURL := fmt.Sprintf("etcd://%s/e2e-%d", client, time.Now().UnixNano())
	s := startServerWith(t, "--store", storeURL)
	url := s.deploy(t, "on-etcd", helloBin)
	s.grant(t, "on-etcd", "allUsers", "roles/run.invoker")
	if got := s.get(t, url); got.status != 200 {
		t.Fatalf("service on the etcd store: %d %q", got.status, got.body)
	}
	s.stop()

	// A second server with a fresh data dir on the same etcd sees it all:
	// the state is in etcd, not on the node.
	s2 := startServerWith(t, "--store", storeURL, "--admin-timeout", "3s")
	url2 := s2.describe(t, "on-etcd").Status.URL
	if got := s2.get(t, url2); got.status != 200 || !strings.Contains(got.body, "Hello World!") {
		t.Fatalf("after moving to a fresh node: %d %q, want the public service", got.status, got.body)
	}

	// etcd hangs (stopped, not gone): an admin write gets 503 UNAVAILABLE
	// at --admin-timeout instead of hanging with it.
	// (The token is taken first: signing in reads the store too.)
	tok := strings.TrimSpace(s2.mustCLI(t, "auth", "print-access-token").stdout)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Signal(syscall.SIGCONT)
	r := s2.do(t, "POST", s2.serverURL(t)+"/v1/projects/"+project+"/serviceAccounts", strings.NewReader(`{"accountId":"while-etcd-hangs"}`),
		"Authorization", "Bearer "+tok, "Content-Type", "application/json")
	if r.status != 503 || !strings.Contains(r.body, "UNAVAILABLE") {
		t.Errorf("admin write while etcd hangs: got %d %s, want 503 UNAVAILABLE", r.status, r.body)
	}
}
