package process

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

// sandboxRuntime returns a sandboxed runtime, or skips where the machine
// cannot sandbox (not root).
func sandboxRuntime(t *testing.T, sb Sandbox) *Runtime {
	t.Helper()
	rt := New(Config{Sandbox: &sb})
	if ok, err := rt.Sandboxed(); !ok {
		t.Skipf("no sandbox here: %v", err)
	}
	return rt
}

func TestSandboxConformance(t *testing.T) {
	app := buildTestApp(t)
	rt := sandboxRuntime(t, Sandbox{ReachEnv: []string{"GCE_METADATA_HOST", "TESTAPP_BEACON"}})
	runtimetest.Run(t, rt, func(t *testing.T, name string) string { return "file://" + app })
}

// TestSandboxDiesWithUsher: a SIGKILLed Usher takes its sandboxed instances
// along, although their init changed credentials (which clears Pdeathsig).
func TestSandboxDiesWithUsher(t *testing.T) {
	sandboxRuntime(t, Sandbox{})
	app := buildTestApp(t)
	b := runtimetest.NewBeacon(t)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(),
		helperEnv+"=1",
		"HELPER_SANDBOX=1",
		"HELPER_IMAGE=file://"+app,
		"HELPER_BEACON="+b.Env().Value,
	)
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "started") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	b.WaitHellos(t, 1)
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	b.WaitGone(t)
}

// TestSandboxEscapes plays a hostile instance: everything it must not reach
// is refused, what it needs still works.
func TestSandboxEscapes(t *testing.T) {
	app := buildTestApp(t)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "usher.db")
	if err := os.WriteFile(secret, []byte("signing keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(secretDir, 0o755)
	// A file outside /tmp, hidden by path (like ~/.config/usher/config.json).
	homeSecret := filepath.Join("/var/tmp", "usher-sandbox-test-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.WriteFile(homeSecret, []byte("credential"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(homeSecret) })

	// The gateway stand-in: reachable from inside at its own address.
	gw := httptestServer(t, "gateway says hi")
	// A host loopback service nobody relays.
	other := httptestServer(t, "private")

	rt := sandboxRuntime(t, Sandbox{Hide: []string{secretDir, homeSecret}, Reach: []string{gw}})
	image := "file://" + app
	start := func() runtime.Instance {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: image, Revision: "r1"})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { in.Stop(context.Background()) })
		return in
	}
	a, b := start(), start()

	t.Run("ImageAtItsPath", func(t *testing.T) {
		// gcloud's --command=/usr/bin/env --args=…,IMAGE names the image
		// by its host path, which is under the hidden /tmp.
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: image, Command: []string{"/usr/bin/env"}, Args: []string{"X=1", app}})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		in.Stop(context.Background())
	})

	t.Run("PortClosedOnHost", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(a.Addr())
		for _, addr := range []string{a.Addr(), "127.0.0.1:" + port} {
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("dial %s from the host: connected, want refused", addr)
			}
		}
	})
	_, bport, _ := net.SplitHostPort(b.Addr())
	for _, tc := range []struct {
		name, path string
		wantCode   int
		want       string // "" any body, "-" an empty one
	}{
		{"NotRoot", "/id", 200, "65534 65534\n"},
		{"DataDirHidden", "/read?path=" + secret, 403, ""},
		{"ConfigHidden", "/read?path=" + homeSecret, 200, "-"}, // /dev/null over it
		{"RootReadOnly", "/read?path=/etc/hostname", 200, ""},
		{"OtherInstance", "/dial?addr=127.0.0.1:" + bport, 502, ""},
		{"OtherInstanceByAddr", "/dial?addr=" + b.Addr(), 502, ""},
		{"HostLoopbackService", "/dial?addr=" + other, 502, ""},
		{"Gateway", "/fetch?url=http://" + gw + "/", 200, "gateway says hi"},
		{"NoEgress", "/dial?addr=10.255.255.1:80", 502, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := runtimetest.Get(a, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			bodyOK := tc.want == "" || body == tc.want || (tc.want == "-" && body == "")
			if code != tc.wantCode || !bodyOK || strings.Contains(body, "credential") || strings.Contains(body, "signing keys") {
				t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.want)
			}
		})
	}
}

// httptestServer serves body on a loopback port and returns its address.
func httptestServer(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
