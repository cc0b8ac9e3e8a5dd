package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nginxForwardAuthConf is the README's nginx configuration ("Audit,
// explanations and forward auth"), with the test's paths and ports: Usher's
// IAM guards a plain upstream through auth_request.
const nginxForwardAuthConf = `
pid {{PREFIX}}/nginx.pid;
error_log {{PREFIX}}/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path {{PREFIX}}/tmp/body;
    proxy_temp_path {{PREFIX}}/tmp/proxy;
    fastcgi_temp_path {{PREFIX}}/tmp/fastcgi;
    uwsgi_temp_path {{PREFIX}}/tmp/uwsgi;
    scgi_temp_path {{PREFIX}}/tmp/scgi;

    server {
        listen 127.0.0.1:{{PORT}};

        location / {
            auth_request /_usher_auth;
            # The principal Usher verified, for the app; set here so a client
            # cannot send its own.
            auth_request_set $usher_principal $upstream_http_x_usher_principal;
            proxy_set_header X-Usher-Principal $usher_principal;
            proxy_pass http://{{UPSTREAM}};
        }

        location = /_usher_auth {
            internal;
            proxy_pass http://{{USHER}}/forward-auth/{{PROJECT}}/{{REGION}}/{{SERVICE}};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Original-URI $request_uri;
        }
    }
}
`

// nginxBinary finds Debian's nginx with auth_request, or skips (fails on CI).
func nginxBinary(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("nginx forward auth cannot be tested on CI: %s", why)
		}
		t.Skipf("*** %s: forward auth behind nginx is NOT TESTED (Debian: apt-get install nginx-light) ***", why)
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			missing("no nginx")
		}
		bin = "/usr/sbin/nginx"
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	if !strings.Contains(string(out), "http_auth_request_module") {
		missing(bin + " has no auth_request module")
	}
	return bin
}

// startNginx writes conf (with {{PREFIX}} and {{PORT}} filled in) and runs
// nginx in the foreground on a free port; it returns the base URL.
func startNginx(t *testing.T, bin, conf string) string {
	t.Helper()
	prefix := t.TempDir()
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		path := filepath.Join(prefix, "nginx.conf")
		text := strings.NewReplacer("{{PREFIX}}", prefix, "{{PORT}}", port).Replace(conf)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-t", "-q", "-e", filepath.Join(prefix, "error.log"), "-c", path, "-p", prefix).CombinedOutput(); err != nil {
			t.Fatalf("nginx -t: %v\n%s\n%s", err, out, text)
		}
		cmd := exec.Command(bin, "-e", filepath.Join(prefix, "error.log"), "-c", path, "-p", prefix, "-g", "daemon off;")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting nginx: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop := func() {
			cmd.Process.Signal(os.Interrupt) // SIGINT: nginx's fast shutdown
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		base := "http://127.0.0.1:" + port
		up := listening("127.0.0.1:"+port, done, 10*time.Second)
		if up {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					b, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
					t.Logf("nginx error.log:\n%s", b)
				}
			})
			return base
		}
		stop()
		if attempt == 5 {
			b, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Fatalf("nginx did not start:\n%s", b)
		}
	}
}

// listening waits until addr accepts connections (true), or the process
// whose exit closes done exits, or timeout passes (false).
func listening(addr string, done <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false // exited: the port was taken, or worse
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestForwardAuthWithNginx: Debian's nginx, with auth_request to Usher's
// forward-auth endpoint, lets a plain upstream be reached only as the
// policy of the Usher service "guard" allows: no token 401, an ungranted
// principal 403, a granted one 200 with its principal passed on.
func TestForwardAuthWithNginx(t *testing.T) {
	bin := nginxBinary(t)
	s := startServer(t)
	guardURL := s.deploy(t, "guard", helloBin)

	var hits atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "upstream: %s %s for %q\n", r.Method, r.URL.Path, r.Header.Get("X-Usher-Principal"))
	}))
	t.Cleanup(upstream.Close)

	conf := strings.NewReplacer(
		"{{UPSTREAM}}", strings.TrimPrefix(upstream.URL, "http://"),
		"{{USHER}}", s.currentAddr(),
		"{{PROJECT}}", project, "{{REGION}}", region, "{{SERVICE}}", "guard",
	).Replace(nginxForwardAuthConf)
	base := startNginx(t, bin, conf)

	client := &http.Client{Timeout: 30 * time.Second}
	get := func(t *testing.T, path string, headers ...string) response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s through nginx: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}
	refused := func(t *testing.T, r response, status int, wwwAuth string) {
		t.Helper()
		if r.status != status {
			t.Fatalf("got %d %q, want %d", r.status, r.body, status)
		}
		if got := r.header.Get("WWW-Authenticate"); got != wwwAuth {
			t.Errorf("WWW-Authenticate: got %q, want %q", got, wwwAuth)
		}
	}

	sa := s.createSA(t, "fa-invoker")
	tok := s.idToken(t, sa, guardURL)

	mustStep(t, "no token is 401", func(t *testing.T) {
		before := hits.Load()
		refused(t, get(t, "/app"), 401, "Bearer")
		refused(t, get(t, "/app", "Authorization", "Bearer garbage"), 401, `Bearer error="invalid_token"`)
		if hits.Load() != before {
			t.Errorf("the upstream was reached by a refused request")
		}
	})

	mustStep(t, "a principal without the invoker role is 403", func(t *testing.T) {
		before := hits.Load()
		refused(t, get(t, "/app", "Authorization", bearer(tok)), 403, "")
		if hits.Load() != before {
			t.Errorf("the upstream was reached by a refused request")
		}
	})

	mustStep(t, "granted is 200 with the upstream's answer and the principal", func(t *testing.T) {
		s.grant(t, "guard", "serviceAccount:"+sa, invokerRole)
		want := fmt.Sprintf("upstream: GET /app/x for %q\n", "serviceAccount:"+sa)
		for _, h := range []string{"Authorization", "X-Serverless-Authorization"} {
			if r := get(t, "/app/x", h, bearer(tok)); r.status != 200 || r.body != want {
				t.Errorf("%s: got %d %q, want 200 %q", h, r.status, r.body, want)
			}
		}
		// A client's own X-Usher-Principal never reaches the upstream.
		if r := get(t, "/app/x", "Authorization", bearer(tok), "X-Usher-Principal", "user:owner@usher.localhost"); r.body != want {
			t.Errorf("spoofed X-Usher-Principal: got %q, want %q", r.body, want)
		}
		// A token for another audience is refused as the gateway refuses it.
		refused(t, get(t, "/app", "Authorization", bearer(s.idToken(t, sa, "http://elsewhere.example"))), 401, `Bearer error="invalid_token"`)
	})

	mustStep(t, "revoking is in force at once", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "remove-iam-policy-binding", "guard", "--member=serviceAccount:"+sa, "--role="+invokerRole, "--region="+region)
		refused(t, get(t, "/app", "Authorization", bearer(tok)), 403, "")
	})

	mustStep(t, "allUsers opens it to anyone", func(t *testing.T) {
		s.grant(t, "guard", "allUsers", invokerRole)
		if r := get(t, "/open"); r.status != 200 || r.body != "upstream: GET /open for \"\"\n" {
			t.Errorf("got %d %q, want 200 from the upstream, no principal", r.status, r.body)
		}
	})

	t.Run("refusals are on the audit trail, marked forward-auth", func(t *testing.T) {
		got := find(s.auditLog(t, "--service", "guard", "--kind", "invoke.denied"), func(r auditRecord) bool { return r.Details.Via == "forward-auth" })
		if len(got) != 5 {
			t.Errorf("got %d forward-auth refusals, want 5 (two 401s, a 403, the wrong audience, the revoked 403):\n%s", len(got), records(got))
		}
	})
}
