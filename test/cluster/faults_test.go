package cluster

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFrozenEtcdWrite: while etcd is frozen (SIGSTOP, not dead) an admin
// write answers 503 UNAVAILABLE (outcome unknown, retryable) rather than 500
// or a hang, and the CLI's read-modify-write retries it by etag until etcd
// is back, landing the binding exactly once.
func TestFrozenEtcdWrite(t *testing.T) {
	e := startEtcd(t)
	a := startNode(t, "a", storeURL(e))
	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region)
	tok := strings.TrimSpace(a.mustCLI(t, "auth", "print-access-token"))

	e.signal(syscall.SIGSTOP)
	t.Cleanup(func() { e.signal(syscall.SIGCONT) })
	req, _ := http.NewRequest("POST", "http://"+a.addr+"/v1/projects/local-project/locations/"+region+"/services/hello:setIamPolicy",
		strings.NewReader(`{"policy":{"bindings":[{"role":"roles/run.invoker","members":["allUsers"]}]}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4096)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body[:n]), "UNAVAILABLE") {
		t.Fatalf("setIamPolicy with etcd frozen: %d %s, want 503 UNAVAILABLE", resp.StatusCode, body[:n])
	}
	t.Logf("setIamPolicy with etcd frozen: 503 UNAVAILABLE after %s", time.Since(start).Round(time.Millisecond))

	unavailable := func() int {
		b, _ := os.ReadFile(a.logPath)
		return strings.Count(string(b), "status=UNAVAILABLE") + strings.Count(string(b), "store: unavailable")
	}
	before := unavailable()
	done := make(chan error, 1)
	go func() {
		_, err := a.cli("run", "services", "add-iam-policy-binding", "hello", "--member=user:alice@example.com", "--role=roles/run.invoker", "--region="+region)
		done <- err
	}()
	poll(t, 30*time.Second, "the CLI to meet the frozen etcd", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("CLI write with etcd frozen ended before etcd resumed: %v", err)
		default:
		}
		return unavailable() > before, "no 503 yet"
	})
	e.signal(syscall.SIGCONT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("CLI write across the freeze: %v, want success after retries", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("CLI write across the freeze did not finish")
	}
	got := a.members(t, "hello")
	if !got["roles/run.invoker user:alice@example.com"] {
		t.Fatalf("binding lost across the freeze: %v", got)
	}
}
