package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

const helperEnv = "USHER_PROCESS_TEST_HELPER"

func TestMain(m *testing.M) {
	SandboxInit() // sandboxed instances' init is this binary
	if os.Getenv(helperEnv) == "1" {
		helperMain()
		return
	}
	os.Exit(m.Run())
}

// helperMain plays a Usher that starts one instance and is then SIGKILLed by
// TestDiesWithUsher.
func helperMain() {
	cfg := Config{WorkDir: os.Getenv("HELPER_WORKDIR")}
	if os.Getenv("HELPER_SANDBOX") == "1" {
		cfg.Sandbox = &Sandbox{ReachEnv: []string{"TESTAPP_BEACON"}}
	}
	rt := New(cfg)
	in, err := rt.Start(context.Background(), runtime.InstanceSpec{
		Image: os.Getenv("HELPER_IMAGE"),
		Env:   []runtime.EnvVar{{Name: "TESTAPP_BEACON", Value: os.Getenv("HELPER_BEACON")}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	fmt.Println("started", in.ID())
	for {
		time.Sleep(time.Hour)
	}
}

// buildTestApp builds runtimetest/testapp and returns its path.
func buildTestApp(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), runtimetest.App)
	cmd := exec.Command(gotool, "build", "-o", out, "github.com/usher-run/usher/internal/runtime/runtimetest/testapp")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testapp: %v\n%s", err, b)
	}
	return out
}

func TestProcessRuntime(t *testing.T) {
	app := buildTestApp(t)
	image := "file://" + app
	workDir := t.TempDir()
	rt := New(Config{WorkDir: workDir})

	t.Run("Conformance", func(t *testing.T) {
		runtimetest.Run(t, rt, func(t *testing.T, name string) string {
			if name != runtimetest.App {
				t.Fatalf("unknown test app %q", name)
			}
			return image
		})
	})

	t.Run("WorkDirsRemoved", func(t *testing.T) {
		ents, err := os.ReadDir(workDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("instance work dir left behind: %s", e.Name())
		}
	})

	t.Run("WorkDir", func(t *testing.T) {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: image})
		if err != nil {
			t.Fatal(err)
		}
		defer in.Stop(context.Background())
		resp, err := http.Get("http://" + in.Addr() + "/env")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Resolve symlinks: the app reports its cwd with them resolved.
		root, _ := filepath.EvalSymlinks(workDir)
		if !strings.Contains(string(body), `"cwd":"`+root+`/usher-`+in.ID()+`-`) {
			t.Errorf("instance cwd not a fresh dir under %s: %s", root, body)
		}
		if err := in.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if m, _ := filepath.Glob(filepath.Join(workDir, "usher-"+in.ID()+"-*")); len(m) > 0 {
			t.Errorf("work dir %v not removed after exit", m)
		}
	})

	t.Run("BadImages", func(t *testing.T) {
		dir := t.TempDir()
		notExec := filepath.Join(dir, "notexec")
		if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ image, want string }{
			{"", "runs file:///ABS/PATH executables"},
			{app, "runs file:///ABS/PATH executables"},
			{"docker.io/library/nginx", "runs file:///ABS/PATH executables"},
			{"file://relative/app", "runs file:///ABS/PATH executables"},
			{"file://" + filepath.Join(dir, "missing"), "no such file"},
			{"file://" + notExec, "not an executable file"},
			{"file://" + dir, "not an executable file"},
		} {
			_, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: tc.image})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start(image %q) = %v, want error containing %q", tc.image, err, tc.want)
			}
		}
	})

	t.Run("CommandNotFound", func(t *testing.T) {
		_, err := rt.Start(context.Background(), runtime.InstanceSpec{
			Image:   image,
			Command: []string{"usher-no-such-command"},
		})
		if err == nil || !strings.Contains(err.Error(), "not found in PATH") {
			t.Errorf("Start = %v, want a not found in PATH error", err)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := rt.Start(ctx, runtime.InstanceSpec{Image: image})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Start with canceled ctx = %v, want context.Canceled", err)
		}
	})

	t.Run("DiesWithUsher", func(t *testing.T) {
		if goruntime.GOOS != "linux" {
			t.Skip("Pdeathsig is Linux only")
		}
		b := runtimetest.NewBeacon(t)
		helper := exec.Command(os.Args[0], "-test.run=^$")
		helper.Env = append(os.Environ(),
			helperEnv+"=1",
			"HELPER_WORKDIR="+t.TempDir(),
			"HELPER_IMAGE="+image,
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
	})
}

// TestPortLostToAnotherProgram: unsandboxed, another program can bind the
// port Usher picked before the instance does; Start then tries another port
// instead of failing (or, worse, probing the other program).
func TestPortLostToAnotherProgram(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	rt := New(Config{WorkDir: t.TempDir()})
	picks := 0
	rt.freePort = func() (int, error) {
		picks++
		if picks == 1 {
			return taken.Addr().(*net.TCPAddr).Port, nil
		}
		return kernelFreePort()
	}
	in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + buildTestApp(t)})
	if err != nil {
		t.Fatalf("Start after losing the first port: %v", err)
	}
	defer in.Stop(context.Background())
	if picks != 2 || in.Addr() == taken.Addr().String() {
		t.Fatalf("instance at %s after %d picks; the taken port was %s", in.Addr(), picks, taken.Addr())
	}
}

// TestPortProbeReachesAnotherProgram: an instance that listens on IPv6
// only (a program binding "localhost" may get ::1; nginx's [::] is
// IPv6-only) leaves 127.0.0.1:PORT free, and another program that binds it
// answers the runtime's probe and then every request the gateway forwards
// to the instance's address. The instance's own listener elsewhere must not
// vouch for the one the probe reached.
func TestPortProbeReachesAnotherProgram(t *testing.T) {
	port, err := kernelFreePort()
	if err != nil {
		t.Fatal(err)
	}
	rt := New(Config{WorkDir: t.TempDir()})
	picks := 0
	rt.freePort = func() (int, error) {
		picks++
		if picks == 1 {
			return port, nil
		}
		return kernelFreePort()
	}
	type started struct {
		in  runtime.Instance
		err error
	}
	done := make(chan started, 1)
	go func() {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + buildTestApp(t),
			Env: []runtime.EnvVar{{Name: "TESTAPP_LISTEN_HOST", Value: "::1"}}, StartupTimeout: 10 * time.Second})
		done <- started{in, err}
	}()
	// Once the instance listens on [::1]:PORT, the other program takes
	// 127.0.0.1:PORT, where the runtime probes.
	var other net.Listener
	for other == nil {
		select {
		case s := <-done:
			t.Fatalf("Start returned before the other program listened: %v, %v", s.in, s.err)
		default:
		}
		if _, err := socketInode(netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)), netip.AddrPortFrom(netip.IPv6Unspecified(), 0)); err != nil {
			time.Sleep(10 * time.Millisecond) // not listening yet
			continue
		}
		if other, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			t.Fatal(err)
		}
	}
	defer other.Close()
	s := <-done
	if s.err != nil {
		return // refused: fine
	}
	defer s.in.Stop(context.Background())
	if s.in.Addr() == other.Addr().String() {
		t.Fatalf("instance started at %s, which another program holds", s.in.Addr())
	}
}
