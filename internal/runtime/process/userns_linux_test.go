package process

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
	"github.com/usher-run/usher/internal/testsupport/remotehost"
)

const unprivHelperEnv = "USHER_PROCESS_UNPRIV_HELPER"

// The helper of TestSandboxUnprivileged: this test binary, run as nobody,
// plays a Usher that is not root.
func init() {
	if os.Getenv(unprivHelperEnv) == "1" {
		os.Exit(unprivHelper())
	}
}

// unprivHelper starts two sandboxed instances, prints "started PORT-OF-B"
// (or "nosandbox REASON"), then answers each path read on stdin with the
// JSON of instance a's answer to GET path.
func unprivHelper() int {
	rt := New(Config{Sandbox: &Sandbox{
		Egress: os.Getenv("HELPER_EGRESS") == "1",
		Hide:   []string{os.Getenv("HELPER_HIDE")},
		Reach:  []string{os.Getenv("HELPER_GATEWAY")},
	}})
	defer rt.Close()
	if ok, err := rt.Sandboxed(); !ok {
		fmt.Println("nosandbox", err)
		return 0
	}
	var ins []runtime.Instance
	for range 2 {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: os.Getenv("HELPER_IMAGE"), Revision: "r1"})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		defer in.Stop(context.Background())
		ins = append(ins, in)
	}
	_, bPort, _ := net.SplitHostPort(ins[1].Addr())
	fmt.Println("started", bPort)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var answer struct {
			Code      int
			Body, Err string
		}
		code, body, err := runtimetest.Get(ins[0], sc.Text())
		answer.Code, answer.Body = code, body
		if err != nil {
			answer.Err = err.Error()
		}
		b, _ := json.Marshal(answer)
		fmt.Println(string(b))
	}
	return 0
}

// TestSandboxUnprivileged: a Usher that is not root (this test binary run
// as nobody) sandboxes its instances in a user namespace: the same escape
// attempts fail, the gateway works, and egress is pasta's (or none).
func TestSandboxUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test becomes nobody, which takes root")
	}
	dir, err := os.MkdirTemp("", "usher-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self := filepath.Join(dir, "process.test")
	copyFile(t, os.Args[0], self)
	app := buildTestApp(t)
	appCopy := filepath.Join(dir, runtimetest.App)
	copyFile(t, app, appCopy)
	secrets := filepath.Join(dir, "secrets")
	os.Mkdir(secrets, 0o755)
	secret := filepath.Join(secrets, "usher.db")
	// Readable by nobody on the host: only the sandbox hides it.
	if err := os.WriteFile(secret, []byte("signing keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := httptestServer(t, "gateway says hi")
	other := httptestServer(t, "private")

	// "all-without-pasta": egress asked for, pasta not installed.
	for _, egress := range []string{"none", "all", "all-without-pasta"} {
		t.Run("Egress="+egress, func(t *testing.T) {
			path := os.Getenv("PATH")
			if egress == "all-without-pasta" {
				path = "/nonexistent"
			}
			if egress == "all" {
				if _, err := exec.LookPath("pasta"); err != nil {
					t.Fatalf("egress without root needs pasta (Debian package passt): %v", err)
				}
			}
			helper := exec.Command(self, "-test.run=^$")
			helper.Env = []string{
				unprivHelperEnv + "=1",
				"PATH=" + path,
				"HELPER_IMAGE=file://" + appCopy,
				"HELPER_HIDE=" + secrets,
				"HELPER_GATEWAY=" + gw,
				"HELPER_EGRESS=" + map[bool]string{true: "1", false: "0"}[egress != "none"],
			}
			helper.Dir = dir
			helper.Stderr = os.Stderr
			helper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			stdin, _ := helper.StdinPipe()
			stdout, _ := helper.StdoutPipe()
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stdin.Close()
				done := make(chan struct{})
				go func() { helper.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					helper.Process.Kill()
					<-done
				}
			})
			out := bufio.NewReader(stdout)
			first, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("helper: %q %v", first, err)
			}
			if reason, ok := strings.CutPrefix(first, "nosandbox "); ok {
				t.Skipf("*** NOT TESTED: this kernel lets no unprivileged user make the sandbox's user namespace, so a Usher that is not root refuses file:// images here: %s ***", strings.TrimSpace(reason))
			}
			bPort, ok := strings.CutPrefix(strings.TrimSpace(first), "started ")
			if !ok {
				t.Fatalf("helper: %q", first)
			}
			get := func(path string) (int, string) {
				fmt.Fprintln(stdin, path)
				line, err := out.ReadString('\n')
				if err != nil {
					t.Fatalf("helper: %v", err)
				}
				var a struct {
					Code      int
					Body, Err string
				}
				json.Unmarshal([]byte(line), &a)
				if a.Err != "" {
					t.Fatalf("GET %s: %s", path, a.Err)
				}
				return a.Code, a.Body
			}
			var env runtimetest.EnvInfo
			_, body := get("/env")
			json.Unmarshal([]byte(body), &env)
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+env.Env["PORT"], 2*time.Second); err == nil {
				c.Close()
				t.Errorf("dial 127.0.0.1:%s (the instance's PORT) from the host: connected, want refused", env.Env["PORT"])
			}
			probes := []struct {
				name, path string
				wantCode   int
				want       string // "" any body
			}{
				{"NotRoot", "/id", 200, "65534 65534\n"},
				{"NoCapabilities", "/read?path=/proc/self/status", 200, ""},
				{"DataDirHidden", "/read?path=" + secret, 403, ""},
				{"RootReadOnly", "/read?path=/etc/hostname", 200, ""},
				{"OtherInstance", "/dial?addr=127.0.0.1:" + bPort, 502, ""},
				{"HostLoopbackService", "/dial?addr=" + other, 502, ""},
				{"Gateway", "/fetch?url=http://" + gw + "/", 200, "gateway says hi"},
			}
			switch egress {
			case "none":
				probes = append(probes, struct {
					name, path string
					wantCode   int
					want       string
				}{"NoEgress", "/dial?addr=10.255.255.1:80", 502, ""})
			case "all-without-pasta":
				remote := remotehost.Start(t)
				probes = append(probes, struct {
					name, path string
					wantCode   int
					want       string
				}{"NoEgress", "/dial?addr=" + remote.Addr, 502, ""})
			default:
				remote := remotehost.Start(t)
				// pasta makes the instance's connections as the host's.
				probes = append(probes, struct {
					name, path string
					wantCode   int
					want       string
				}{"Egress", "/fetch?url=http://" + remote.Addr + "/", 200, remote.Local.String()})
			}
			for _, tc := range probes {
				t.Run(tc.name, func(t *testing.T) {
					code, body := get(tc.path)
					if tc.name == "NoCapabilities" && !strings.Contains(body, "CapEff:\t0000000000000000") {
						t.Errorf("the program has capabilities (in its user namespace): %q", body)
					}
					if code != tc.wantCode || (tc.want != "" && body != tc.want) || strings.Contains(body, "signing keys") {
						t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.want)
					}
				})
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
