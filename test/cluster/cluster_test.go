package cluster

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func storeURL(e *etcd) string {
	return fmt.Sprintf("etcd://%s/cluster-%d", e.client, time.Now().UnixNano())
}

// startNodes starts the first node alone (it bootstraps the project), then
// the others.
func startNodes(t *testing.T, url string, names ...string) []*node {
	t.Helper()
	nodes := []*node{startNode(t, names[0], url)}
	for _, n := range names[1:] {
		nodes = append(nodes, startNode(t, n, url))
	}
	return nodes
}

func expectStatus(t *testing.T, n *node, url string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	poll(t, timeout, fmt.Sprintf("%d from node %s", want, n.name), func() (bool, string) {
		code, _, err := n.get(url)
		return err == nil && code == want, n.status(url)
	})
	return time.Since(start)
}

// TestThreeNodesShareState: a deploy on A, a grant on B and a revoke on C
// are in force on every node, and concurrent policy edits through all three
// lose nothing.
func TestThreeNodesShareState(t *testing.T) {
	e := startEtcd(t)
	ns := startNodes(t, storeURL(e), "a", "b", "c")
	a, b, c := ns[0], ns[1], ns[2]

	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region)
	url := a.serviceURL(t, "hello")
	b.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=allUsers", "--role=roles/run.invoker", "--region="+region)
	d := expectStatus(t, c, url, 200, 10*time.Second)
	t.Logf("grant on B in force on C after %s (measured from B's CLI exit)", d)
	c.mustCLI(t, "run", "services", "remove-iam-policy-binding", "hello", "--member=allUsers", "--role=roles/run.invoker", "--region="+region)
	d = expectStatus(t, a, url, 401, 10*time.Second)
	t.Logf("revoke on C in force on A after %s", d)

	// 12 distinct service accounts, bound concurrently, 4 through each node.
	var emails []string
	for i := range 12 {
		name := fmt.Sprintf("invoker-%02d", i)
		a.mustCLI(t, "iam", "service-accounts", "create", name)
		emails = append(emails, name+"@local-project.iam.gserviceaccount.com")
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(emails))
	for i, email := range emails {
		wg.Add(1)
		go func(n *node, email string) {
			defer wg.Done()
			if _, err := n.cli("run", "services", "add-iam-policy-binding", "hello",
				"--member=serviceAccount:"+email, "--role=roles/run.invoker", "--region="+region); err != nil {
				errs <- err
			}
		}(ns[i%3], email)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, n := range ns {
		got := n.members(t, "hello")
		for _, email := range emails {
			if !got["roles/run.invoker serviceAccount:"+email] {
				t.Errorf("node %s: binding for %s lost; policy has %v", n.name, email, got)
			}
		}
	}
}

// TestEtcdOutageFailsClosed: with etcd frozen, nodes answer 503 (even for a
// public service) once --max-staleness has passed, and /readyz fails; after
// etcd restarts on its data dir they recover without a restart.
func TestEtcdOutageFailsClosed(t *testing.T) {
	e := startEtcd(t)
	ns := startNodes(t, storeURL(e), "a", "b")
	a := ns[0]
	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region)
	url := a.serviceURL(t, "hello")
	a.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=allUsers", "--role=roles/run.invoker", "--region="+region)
	for _, n := range ns {
		expectStatus(t, n, url, 200, 10*time.Second)
		if got := n.readyz(); got != 200 {
			t.Fatalf("node %s /readyz = %d before the outage", n.name, got)
		}
	}

	e.signal(syscall.SIGSTOP)
	stopped := time.Now()
	for _, n := range ns {
		poll(t, 15*time.Second, "503 from node "+n.name, func() (bool, string) {
			code, body, err := n.get(url)
			if err == nil && code == 503 && strings.Contains(body, "cannot confirm its access policies are current") {
				return true, ""
			}
			if err == nil && code == 200 && time.Since(stopped) > 5*time.Second+1500*time.Millisecond {
				t.Fatalf("node %s still serves 200 %s after etcd froze (bound 5s)", n.name, time.Since(stopped))
			}
			return false, n.status(url)
		})
		t.Logf("node %s failed closed %s after etcd froze (--max-staleness 5s)", n.name, time.Since(stopped).Round(time.Millisecond))
		if got := n.readyz(); got != 503 {
			t.Errorf("node %s /readyz = %d while etcd is frozen, want 503", n.name, got)
		}
		if code, _, err := n.get("http://" + n.addr + "/healthz"); err != nil || code != 200 {
			t.Errorf("node %s /healthz = %d %v while etcd is frozen, want 200 (liveness)", n.name, code, err)
		}
	}

	// Kill and restart etcd on the same data dir.
	e.kill()
	e.start(t)
	restarted := time.Now()
	for _, n := range ns {
		expectStatus(t, n, url, 200, 30*time.Second)
		t.Logf("node %s serving again %s after etcd restarted", n.name, time.Since(restarted).Round(time.Millisecond))
		poll(t, 10*time.Second, "node "+n.name+" /readyz 200", func() (bool, string) {
			return n.readyz() == 200, fmt.Sprint(n.readyz())
		})
	}
}

// TestNodeCrash: kill -9 of one node does not disturb the others.
func TestNodeCrash(t *testing.T) {
	e := startEtcd(t)
	ns := startNodes(t, storeURL(e), "a", "b", "c")
	a, b, c := ns[0], ns[1], ns[2]
	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region)
	url := a.serviceURL(t, "hello")
	a.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=allUsers", "--role=roles/run.invoker", "--region="+region)
	for _, n := range ns {
		expectStatus(t, n, url, 200, 10*time.Second)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for _, n := range []*node{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := n.get(url)
				mu.Lock()
				if err != nil || code != 200 {
					t.Errorf("node %s: %d %v %.80q", n.name, code, err, body)
				}
				counts[n.name]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	a.crash()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("requests served around the crash: %v", counts)
	// Writes still work through a survivor.
	b.mustCLI(t, "run", "services", "remove-iam-policy-binding", "hello", "--member=allUsers", "--role=roles/run.invoker", "--region="+region)
	expectStatus(t, c, url, 401, 10*time.Second)
}
