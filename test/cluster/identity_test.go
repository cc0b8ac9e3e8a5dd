package cluster

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxConf is the README's load balancer, run by the test with its ports
// replaced.
const nginxConf = "../../examples/cluster/nginx.conf"

// startNginx runs examples/cluster/nginx.conf listening on lbPort in front of
// nodePorts (the example's 8081–8083). The returned node has no process of
// its own: requests sent through it go to nginx.
func startNginx(t *testing.T, lbPort string, nodePorts []string) *node {
	t.Helper()
	const bin = "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing, and CI must run the cluster tests: %v", bin, err)
		}
		t.Skip("*** /usr/sbin/nginx not installed: load-balanced tests NOT RUN ***")
	}
	b, err := os.ReadFile(nginxConf)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ReplaceAll(string(b), "127.0.0.1:8080", "127.0.0.1:"+lbPort)
	for i, p := range nodePorts {
		conf = strings.ReplaceAll(conf, fmt.Sprintf("127.0.0.1:%d", 8081+i), "127.0.0.1:"+p)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful stop
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	lb := &node{t: t, name: "nginx", dir: dir, addr: "127.0.0.1:" + lbPort, http: dialing("127.0.0.1:" + lbPort)}
	poll(t, 10*time.Second, "nginx listening", func() (bool, string) {
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s", b)
		default:
		}
		code, _, err := lb.get("http://localhost:" + lbPort + "/readyz")
		return err == nil && code == 200, fmt.Sprint(code, err)
	})
	return lb
}

// startCluster starts etcd, three nodes on fixed ports sharing one public
// URL (the third given none: it adopts the stored one), and nginx in front
// on that URL's port.
func startCluster(t *testing.T) (nodes []*node, lb *node, public string) {
	t.Helper()
	e := startEtcd(t)
	st := storeURL(e)
	lbPort := freePort(t)
	public = "http://localhost:" + lbPort
	ports := []string{freePort(t), freePort(t), freePort(t)}
	for i, name := range []string{"a", "b", "c"} {
		// The frontends call other nodes' addresses directly, which a
		// sandboxed instance cannot reach (it reaches its own node only).
		args := []string{"--addr", "127.0.0.1:" + ports[i], "--unsandboxed-processes"}
		if name != "c" {
			args = append(args, "--public-url", public)
		}
		nodes = append(nodes, startNode(t, name, st, args...))
	}
	return nodes, startNginx(t, lbPort, ports), public
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// kid is a JWT's key id.
func kid(t *testing.T, jwt string) string {
	t.Helper()
	h, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err != nil || json.Unmarshal(b, &hdr) != nil || hdr.Kid == "" {
		t.Fatalf("token header %q: %v", h, err)
	}
	return hdr.Kid
}

// TestOneIdentityEveryNode: every kind of token minted by any node is
// accepted by every node and through nginx in front of all three, before
// and right after a key rotation on one node (issue 13). The cluster has one
// issuer and service URLs name the load balancer, never a node's port.
func TestOneIdentityEveryNode(t *testing.T) {
	ns, lb, public := startCluster(t)
	a, b, c := ns[0], ns[1], ns[2]
	via := []*node{a, b, c, lb}

	for _, n := range ns {
		code, body, err := n.get("http://" + n.addr + "/.well-known/openid-configuration")
		if err != nil || code != 200 || !strings.Contains(body, `"issuer":"`+public+`"`) {
			t.Fatalf("node %s discovery: %d %v %s, want issuer %s", n.name, code, err, body, public)
		}
	}

	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region)
	url := a.serviceURL(t, "hello")
	if want := "localhost:" + strings.TrimPrefix(public, "http://localhost:"); !strings.HasSuffix(url, want) {
		t.Fatalf("service URL %s does not name the public URL's port (want suffix %s)", url, want)
	}
	const sa = "caller@local-project.iam.gserviceaccount.com"
	a.mustCLI(t, "iam", "service-accounts", "create", "caller")
	b.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=serviceAccount:"+sa, "--role=roles/run.invoker", "--region="+region)
	// Frontends call hello with a token from their node's metadata server:
	// fe-a, fe-b, fe-c send it to node a, b, c; fe-lb through nginx.
	for _, to := range via {
		c.mustCLI(t, "run", "deploy", "fe-"+to.name, "--image=file://"+frontendBin, "--region="+region, "--allow-unauthenticated",
			"--service-account="+sa, "--set-env-vars=BACKEND_URL="+url+",USHER_ADDR="+to.addr)
	}
	adminURL := public + "/v1/projects/local-project/locations/" + region + "/services"

	check := func(t *testing.T, when string) {
		t.Helper()
		for _, m := range ns {
			tokens := []struct{ kind, tok, url string }{
				{"user identity token", strings.TrimSpace(m.mustCLI(t, "auth", "print-identity-token")), url},
				{"service-account identity token", strings.TrimSpace(m.mustCLI(t, "auth", "print-identity-token",
					"--impersonate-service-account="+sa, "--audiences="+url)), url},
				{"access token on the admin API", strings.TrimSpace(m.mustCLI(t, "auth", "print-access-token")), adminURL},
			}
			for _, tk := range tokens {
				for _, v := range via {
					// Every node has seen the grant (CLI writes wait for
					// their own node only): poll briefly for the first use.
					poll(t, 10*time.Second, fmt.Sprintf("%s: %s minted by %s, sent to %s", when, tk.kind, m.name, v.name), func() (bool, string) {
						code, body, err := v.get(tk.url, bearer(tk.tok)...)
						return err == nil && code == 200, fmt.Sprintf("%d %v %.120q", code, err, body)
					})
				}
			}
		}
		for _, fe := range via {
			feURL := c.serviceURL(t, "fe-"+fe.name)
			for _, v := range via {
				poll(t, 20*time.Second, fmt.Sprintf("%s: metadata-server token, fe-%s reached through %s", when, fe.name, v.name), func() (bool, string) {
					code, body, err := v.get(feURL + "/call")
					return err == nil && code == 200 && body == "200 Hello World!", fmt.Sprintf("%d %v %.120q", code, err, body)
				})
			}
		}
	}
	check(t, "before rotation")

	// Rotate on b; a token b mints with the new key verifies on a and c at
	// once (an unknown kid makes a node read the store).
	before := kid(t, strings.TrimSpace(b.mustCLI(t, "auth", "print-access-token")))
	b.cmd.Process.Signal(syscall.SIGUSR1)
	var fresh string
	poll(t, 10*time.Second, "a token signed by b's new key", func() (bool, string) {
		fresh = strings.TrimSpace(b.mustCLI(t, "auth", "print-access-token"))
		return kid(t, fresh) != before, kid(t, fresh)
	})
	for _, v := range via {
		if code, body, err := v.get(adminURL, bearer(fresh)...); err != nil || code != 200 {
			t.Errorf("access token signed by b's new key, right after rotation, sent to %s: %d %v %.120q, want 200", v.name, code, err, body)
		}
	}
	check(t, "after rotation")
}

// TestPublicURLMismatchRefused: a node started with another --public-url
// than the cluster's refuses to start, saying why.
func TestPublicURLMismatchRefused(t *testing.T) {
	e := startEtcd(t)
	st := storeURL(e)
	startNode(t, "a", st, "--public-url", "http://localhost:18080")
	dir := t.TempDir()
	cmd := exec.Command(usherBin, "serve", "--store", st, "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--node-name", "b", "--public-url", "http://localhost:18081")
	cmd.Env = append(cleanEnv(), "HOME="+dir)
	done := make(chan []byte, 1)
	go func() { out, _ := cmd.CombinedOutput(); done <- out }()
	select {
	case out := <-done:
		if cmd.ProcessState.Success() || !strings.Contains(string(out), "differs from the cluster's public URL http://localhost:18080") {
			t.Fatalf("node b with another --public-url: %v\n%s\nwant a failed start naming the cluster's public URL", cmd.ProcessState, out)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("node b with another --public-url kept running")
	}
}
