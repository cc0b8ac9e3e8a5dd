package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime/docker/dockertest"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

const notTested = "*** no Docker engine: Docker runtime NOT TESTED ***"

// Set up by TestMain when an engine answers.
var (
	engineErr  error          // why there is no engine
	fixtureErr error          // building the test images failed
	engine     *client.Client // for the tests' own inspections
	images     = map[string]string{}
)

// The programs built into FROM scratch images, by name.
var programs = map[string]string{
	runtimetest.App: "github.com/usher-run/usher/internal/runtime/runtimetest/testapp",
	"hello":         "github.com/usher-run/usher/examples/hello",
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx := context.Background()
		c, err := client.New(client.FromEnv)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
			cancel()
			if err != nil {
				err = fmt.Errorf("no engine at %s: %w", c.DaemonHost(), err)
			}
		}
		if err != nil {
			engineErr = err
			fmt.Fprintf(os.Stderr, "%s\n(%v)\n", notTested, err)
			return m.Run()
		}
		engine = c
		defer c.Close()
		tag := randHex()
		defer func() {
			for _, ref := range images {
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				_, err := c.ImageRemove(rctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
				cancel()
				if err != nil {
					fmt.Fprintf(os.Stderr, "removing test image %s: %v\n", ref, err)
				}
			}
		}()
		for name, pkg := range programs {
			ref := "usher-test/" + name + ":" + tag
			if err := dockertest.BuildScratchImage(ctx, c, pkg, ref); err != nil {
				fixtureErr = fmt.Errorf("building image %s: %w", ref, err)
				break
			}
			images[name] = ref
		}
		return m.Run()
	}())
}

// needEngine skips loudly without an engine and returns a client.
//
// With USHER_TEST_REQUIRE_DOCKER=1 (for CI on machines that have an engine), a
// missing engine fails the tests instead.
func needEngine(t *testing.T) *client.Client {
	t.Helper()
	if engineErr != nil {
		if os.Getenv("USHER_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatalf("USHER_TEST_REQUIRE_DOCKER=1 but %v", engineErr)
		}
		t.Skipf("%s (%v)", notTested, engineErr)
	}
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return engine
}

func randHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newRuntime returns a runtime with an owner of its own, and checks when the
// test ends that it left no container behind.
func newRuntime(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	c := needEngine(t)
	if cfg.Owner == "" {
		cfg.Owner = "usher-test-" + randHex()
	}
	rt, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if left := ownedContainers(t, c, cfg.Owner); len(left) > 0 {
			t.Errorf("containers left behind: %v", left)
		}
		rt.Cleanup(context.Background())
		rt.Close()
	})
	return rt
}

// ownedContainers lists the containers (running or not) labelled with owner.
func ownedContainers(t *testing.T, c *client.Client, owner string) []string {
	t.Helper()
	list, err := c.ContainerList(context.Background(), client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelOwner+"="+owner),
	})
	if err != nil {
		t.Fatalf("ContainerList: %v", err)
	}
	var names []string
	for _, ctr := range list.Items {
		names = append(names, strings.Join(ctr.Names, ",")+" ("+string(ctr.State)+")")
	}
	return names
}

func start(t *testing.T, rt runtime.Runtime, spec runtime.InstanceSpec) *instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := rt.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { in.Stop(context.Background()) })
	return in.(*instance)
}

func stop(t *testing.T, in runtime.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := in.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func httpGet(t *testing.T, addr, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}

func containerGone(t *testing.T, cid string) {
	t.Helper()
	_, err := engine.ContainerInspect(context.Background(), cid, client.ContainerInspectOptions{})
	if !cerrdefs.IsNotFound(err) {
		t.Errorf("container %s still exists (inspect: %v)", shortID(cid), err)
	}
}

func TestNewWithoutEngine(t *testing.T) {
	sock := "unix://" + filepath.Join(t.TempDir(), "no-docker.sock")
	_, err := New(context.Background(), Config{Owner: "test", Host: sock, PingTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("New succeeded without an engine")
	}
	if want := "docker: no engine at " + sock; !strings.Contains(err.Error(), want) {
		t.Errorf("New error %q does not say %q", err, want)
	}

	// Dispatching: a container image then fails with the reason, file://
	// images do not need Docker.
	rt := runtime.ByImage{DockerErr: err}
	_, serr := rt.Start(context.Background(), runtime.InstanceSpec{Image: "hello:latest"})
	if serr == nil || !strings.Contains(serr.Error(), `image "hello:latest" needs the Docker runtime, but no Docker engine is reachable: docker: no engine at`) {
		t.Errorf("ByImage.Start = %v, want an error naming the missing engine", serr)
	}
}

func TestNewNeedsOwner(t *testing.T) {
	if _, err := New(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "Owner") {
		t.Errorf("New without Owner = %v, want an error about Owner", err)
	}
}

func TestContainerEnvAndConfig(t *testing.T) {
	// No engine needed: the container's configuration.
	r := &Runtime{cfg: Config{Owner: "me"}, network: "bridge", direct: true}
	spec := runtime.InstanceSpec{
		Image:    "example/app:1",
		Args:     []string{"a"},
		Env:      []runtime.EnvVar{{Name: "HOME", Value: "/home/app"}},
		Service:  "svc",
		Revision: "svc-00001-abc",
	}
	cfg, hc := r.containerConfigs(spec, "0123456789ab", mustResources(t, "2", "1Gi"), nil)
	env := strings.Join(cfg.Env, "\n")
	for _, want := range []string{"PORT=8080", "K_SERVICE=svc", "K_REVISION=svc-00001-abc", "HOME=/home/app"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, cfg.Env)
		}
	}
	if strings.Contains(env, "PATH=") {
		t.Errorf("env sets PATH, which is the image's unless the user sets it: %q", cfg.Env)
	}
	if cfg.WorkingDir != "" {
		t.Errorf("no workingDir: WorkingDir %q, want the image's", cfg.WorkingDir)
	}
	if cfg.Entrypoint != nil || strings.Join(cfg.Cmd, " ") != "a" {
		t.Errorf("args only: Entrypoint %q Cmd %q, want the image's entrypoint and Cmd [a]", cfg.Entrypoint, cfg.Cmd)
	}
	if cfg.Labels[LabelManaged] != "true" || cfg.Labels[LabelOwner] != "me" || cfg.Labels[LabelInstance] != "0123456789ab" {
		t.Errorf("labels = %v", cfg.Labels)
	}
	if hc.NanoCPUs != 2e9 || hc.Memory != 1<<30 || hc.MemorySwap != 1<<30 || hc.AutoRemove {
		t.Errorf("host config: NanoCPUs %d Memory %d MemorySwap %d AutoRemove %v", hc.NanoCPUs, hc.Memory, hc.MemorySwap, hc.AutoRemove)
	}

	spec.Command = []string{"/bin/other"}
	spec.Args = nil
	spec.WorkingDir = "/srv"
	spec.Volumes = []runtime.Volume{{Path: "/cache", SizeBytes: 64 << 20}, {Path: "/scratch"}}
	cfg, hc = r.containerConfigs(spec, "0123456789ab", container.Resources{}, nil)
	if cfg.WorkingDir != "/srv" {
		t.Errorf("workingDir /srv: WorkingDir %q", cfg.WorkingDir)
	}
	if len(hc.Mounts) != 2 || hc.Mounts[0].Type != mount.TypeTmpfs || hc.Mounts[0].Target != "/cache" || hc.Mounts[0].TmpfsOptions.SizeBytes != 64<<20 ||
		hc.Mounts[1].Target != "/scratch" || hc.Mounts[1].TmpfsOptions.SizeBytes != 0 {
		t.Errorf("in-memory volumes: mounts %+v, want tmpfs at /cache (64 MiB) and /scratch", hc.Mounts)
	}
	if strings.Join(cfg.Entrypoint, " ") != "/bin/other" || cfg.Cmd == nil || len(cfg.Cmd) != 0 {
		t.Errorf("command only: Entrypoint %q Cmd %#v, want [/bin/other] and an empty (not inherited) Cmd", cfg.Entrypoint, cfg.Cmd)
	}

	for _, bad := range [][2]string{{"abc", ""}, {"-1", ""}, {"0", ""}, {"", "1Gb"}, {"", "1Ki"}, {"", "0.5"}} {
		if _, err := resources(runtime.InstanceSpec{CPU: bad[0], Memory: bad[1]}); err == nil {
			t.Errorf("resources(cpu %q, memory %q) accepted", bad[0], bad[1])
		}
	}
	if got := containerName("svc-00001-abc", "0123456789ab"); got != "usher-svc-00001-abc-0123456789ab" {
		t.Errorf("containerName = %q", got)
	}
}

func TestDefaultLimits(t *testing.T) {
	res := mustResources(t, "", "")
	if res.Memory != 512<<20 || res.MemorySwap != 512<<20 {
		t.Errorf("no --memory: Memory %d MemorySwap %d, want %d (Cloud Run's default, no swap)", res.Memory, res.MemorySwap, 512<<20)
	}
	if res.PidsLimit == nil || *res.PidsLimit != DefaultPids {
		t.Errorf("PidsLimit = %v, want %d", res.PidsLimit, DefaultPids)
	}
	if res.NanoCPUs != 0 {
		t.Errorf("no --cpu: NanoCPUs %d, want 0 (no limit)", res.NanoCPUs)
	}
}

func mustResources(t *testing.T, cpu, mem string) (res container.Resources) {
	t.Helper()
	res, err := resources(runtime.InstanceSpec{CPU: cpu, Memory: mem})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestConformance(t *testing.T) {
	needEngine(t)
	for _, mode := range []Addressing{AddrContainerIP, AddrPublished} {
		t.Run(string(mode), func(t *testing.T) {
			rt := newRuntime(t, Config{Addressing: mode})
			// Instances cannot reach the test's loopback: the beacon listens
			// on all interfaces and they dial it by the host's alias.
			host := HostAlias
			if !rt.hostAlias {
				host = rt.HostGateway()
			}
			t.Setenv("RUNTIMETEST_BEACON_HOST", host)
			runtimetest.Run(t, rt, func(t *testing.T, app string) string {
				ref, ok := images[app]
				if !ok {
					t.Fatalf("no image for test app %q", app)
				}
				return ref
			})
		})
	}
}

func TestHelloFromScratch(t *testing.T) {
	needEngine(t)
	for _, mode := range []Addressing{AddrContainerIP, AddrPublished} {
		t.Run(string(mode), func(t *testing.T) {
			rt := newRuntime(t, Config{Addressing: mode})
			logs := runtimetest.NewLogBuffer(t)
			in := start(t, runtime.ByImage{Docker: rt}, runtime.InstanceSpec{
				Image:    images["hello"],
				Service:  "hello",
				Revision: "hello-00001-abc",
				Logs:     logs,
			})
			if got := httpGet(t, in.Addr(), "/"); got != "Hello World!\n" {
				t.Errorf("GET / = %q, want Hello World!", got)
			}
			logs.WaitFor(t, "hello: listening on :8080")
			stop(t, in)
			containerGone(t, in.cid)
		})
	}
}

// TestContainersIsolated: on the default network a container reaches the
// host (where Usher's gateway and metadata server listen) but not another
// service's container, and its port is not published on the host.
func TestContainersIsolated(t *testing.T) {
	needEngine(t)
	rt := newRuntime(t, Config{Addressing: AddrContainerIP})
	spec := func(svc string) runtime.InstanceSpec {
		return runtime.InstanceSpec{Image: images[runtimetest.App], Service: svc, Revision: svc + "-00001-abc"}
	}
	a, b := start(t, rt, spec("a")), start(t, rt, spec("b"))
	host, err := net.Listen("tcp", net.JoinHostPort(rt.HostGateway(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name, addr string
		want       int
	}{
		{"OtherContainer", b.Addr(), http.StatusBadGateway},
		{"Host", host.Addr().String(), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + a.Addr() + "/dial?addr=" + tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("container a dialing %s: %d %s, want %d", tc.addr, resp.StatusCode, body, tc.want)
			}
		})
	}
}

func TestLabelsAndLimits(t *testing.T) {
	rt := newRuntime(t, Config{})
	in := start(t, rt, runtime.InstanceSpec{
		Image:    images[runtimetest.App],
		Service:  "svc",
		Revision: "svc-00002-xyz",
		CPU:      "500m",
		Memory:   "64Mi",
	})
	insp, err := engine.ContainerInspect(context.Background(), in.cid, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		LabelManaged:  "true",
		LabelOwner:    rt.cfg.Owner,
		LabelService:  "svc",
		LabelRevision: "svc-00002-xyz",
		LabelInstance: in.ID(),
	}
	for k, v := range want {
		if got := insp.Container.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	hc := insp.Container.HostConfig
	if hc.NanoCPUs != 500_000_000 {
		t.Errorf("NanoCPUs = %d, want 5e8 (--cpu 500m)", hc.NanoCPUs)
	}
	if hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 {
		t.Errorf("Memory = %d, MemorySwap = %d, want %d (--memory 64Mi, no swap)", hc.Memory, hc.MemorySwap, 64<<20)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != DefaultPids {
		t.Errorf("PidsLimit = %v, want %d", hc.PidsLimit, DefaultPids)
	}
	if len(hc.PortBindings) != 0 && rt.direct {
		t.Errorf("PortBindings = %v, want none (instances are dialed at their container IP)", hc.PortBindings)
	}
	if hc.AutoRemove {
		t.Error("AutoRemove is on; Usher removes its containers itself")
	}
	// The app sees the contract, not the image builder's or Usher's world.
	var info runtimetest.EnvInfo
	if err := json.Unmarshal([]byte(httpGet(t, in.Addr(), "/env")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Env["PORT"] != "8080" || info.Executable != "/app" {
		t.Errorf("PORT = %q, executable = %q; want 8080 and /app", info.Env["PORT"], info.Executable)
	}
	stop(t, in)
	containerGone(t, in.cid)

	if _, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: images[runtimetest.App], CPU: "lots"}); err == nil || !strings.Contains(err.Error(), `cpu limit "lots"`) {
		t.Errorf("Start with --cpu lots = %v, want an error about the cpu limit", err)
	}
}

func TestExitByItselfRemovesContainer(t *testing.T) {
	rt := newRuntime(t, Config{})
	in := start(t, rt, runtime.InstanceSpec{Image: images[runtimetest.App]})
	http.Get("http://" + in.Addr() + "/exit?code=0")
	select {
	case <-in.Done():
	case <-time.After(time.Minute):
		t.Fatal("instance did not exit")
	}
	containerGone(t, in.cid)
}

func TestUnknownImage(t *testing.T) {
	// NoPull: no registry is reachable here, and tests never reach for one.
	rt := newRuntime(t, Config{NoPull: true})
	ref := "usher-test/does-not-exist:" + randHex()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := rt.Start(ctx, runtime.InstanceSpec{Image: ref})
	if err == nil {
		t.Fatal("Start of an unknown image succeeded")
	}
	if want := fmt.Sprintf("image %q is not on the Docker engine, and pulling is off", ref); !strings.Contains(err.Error(), want) {
		t.Errorf("Start error %q does not say %q", err, want)
	}
	t.Logf("error: %v", err)

	// A command that is not in the image.
	_, err = rt.Start(ctx, runtime.InstanceSpec{Image: images[runtimetest.App], Command: []string{"/no/such/program"}})
	if err == nil {
		t.Fatal("Start with a missing command succeeded")
	}
	t.Logf("error: %v", err)
}

func TestCleanupRemovesOrphans(t *testing.T) {
	owner := "usher-test-" + randHex()
	rt := newRuntime(t, Config{Owner: owner})
	other := newRuntime(t, Config{})
	orphan := start(t, rt, runtime.InstanceSpec{Image: images[runtimetest.App], Revision: "orphan"})
	exited := start(t, rt, runtime.InstanceSpec{Image: images[runtimetest.App], Revision: "exited"})
	keep := start(t, other, runtime.InstanceSpec{Image: images[runtimetest.App], Revision: "other-owner"})

	// A stopped container of a killed Usher, never removed.
	if _, err := engine.ContainerStop(context.Background(), exited.cid, client.ContainerStopOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}

	// Usher restarts: a new runtime with the same owner.
	rt2, err := New(context.Background(), Config{Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	n, err := rt2.Cleanup(context.Background())
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if n < 1 || n > 2 { // the exited one may have been removed already by its watcher
		t.Errorf("Cleanup removed %d containers, want 1 or 2", n)
	}
	if left := ownedContainers(t, engine, owner); len(left) > 0 {
		t.Errorf("after Cleanup: %v", left)
	}
	select {
	case <-orphan.Done():
	case <-time.After(time.Minute):
		t.Error("the orphan's instance is not done after Cleanup")
	}
	containerGone(t, orphan.cid)
	containerGone(t, exited.cid)

	// Another Usher's container is untouched.
	if got := httpGet(t, keep.Addr(), "/"); got != "ok\n" {
		t.Errorf("other owner's instance: GET / = %q", got)
	}
	stop(t, keep)
	containerGone(t, keep.cid)
}

func TestInstanceAt(t *testing.T) {
	rt := newRuntime(t, Config{Addressing: AddrContainerIP})
	// The instance dials a listener of the host, as it would the metadata
	// server: the connection comes from its container IP.
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	host := HostAlias
	if !rt.hostAlias {
		host = rt.HostGateway()
	}
	beacon := net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	in := start(t, rt, runtime.InstanceSpec{
		Image:    images[runtimetest.App],
		Service:  "svc",
		Revision: "svc-00003-peer",
		Env:      []runtime.EnvVar{{Name: "TESTAPP_BEACON", Value: beacon}},
	})
	l.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("the instance did not reach the host at %s: %v", beacon, err)
	}
	defer c.Close()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	p, ok := rt.InstanceAt(remote)
	if !ok || p.ID != in.ID() || p.Service != "svc" || p.Revision != "svc-00003-peer" {
		t.Errorf("InstanceAt(%s) = %+v, %v; want instance %s of svc-00003-peer", remote, p, ok, in.ID())
	}
	stop(t, in)
	if p, ok := rt.InstanceAt(remote); ok {
		t.Errorf("InstanceAt(%s) = %+v after Stop", remote, p)
	}
}

// TestWorkingDirAndVolumes: the program starts in its workingDir (made by
// the engine when the image lacks it) and finds its in-memory volumes, each
// bounded by its size and its own per instance.
func TestWorkingDirAndVolumes(t *testing.T) {
	rt := newRuntime(t, Config{})
	spec := runtime.InstanceSpec{Image: images[runtimetest.App], WorkingDir: "/srv/app",
		Volumes: []runtime.Volume{{Path: "/cache", SizeBytes: 1 << 20}}}
	a, b := start(t, rt, spec), start(t, rt, spec)
	var info struct{ Cwd string }
	if err := json.Unmarshal([]byte(httpGet(t, a.Addr(), "/env")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Cwd != "/srv/app" {
		t.Errorf("the program runs in %q, want /srv/app", info.Cwd)
	}
	get := func(in runtime.Instance, path string) int {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + in.Addr() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(a, "/write?bytes=1000&path=/cache/f"); code != 200 {
		t.Errorf("write to the volume: %d", code)
	}
	if code := get(a, "/write?bytes=2097152&path=/cache/big"); code != 507 {
		t.Errorf("2 MiB to a 1 MiB volume: %d, want a failure", code)
	}
	if code := get(a, "/read?path=/cache/f"); code != 200 {
		t.Errorf("read back: %d", code)
	}
	if code := get(b, "/read?path=/cache/f"); code == 200 {
		t.Errorf("another instance's volume holds what one wrote")
	}
}

// TestSecretFiles: a read-only volume's files reach the container at its
// path, read-only; on the host they live in memory (/dev/shm), in a
// directory removed with the container.
func TestSecretFiles(t *testing.T) {
	rt := newRuntime(t, Config{})
	spec := runtime.InstanceSpec{Image: images[runtimetest.App],
		Volumes: []runtime.Volume{{Path: "/secrets", Files: []runtime.VolumeFile{{Name: "token", Data: []byte("s3cret-token"), Mode: 0o444}}}}}
	in := start(t, rt, spec)
	if got := httpGet(t, in.Addr(), "/read?path=/secrets/token"); got != "s3cret-token" {
		t.Errorf("the secret file: %q", got)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + in.Addr() + "/write?bytes=3&path=/secrets/new")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Errorf("wrote into a secret volume")
	}
	dirs, _ := filepath.Glob(filepath.Join(volumeFilesRoot, rt.volumeFilesPrefix()+"*"))
	if len(dirs) != 1 {
		t.Fatalf("host directories of the instance's secret files: %v, want one under %s", dirs, volumeFilesRoot)
	}
	if st, err := os.Stat(dirs[0]); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("host directory %s: %v %v, want 0700", dirs[0], st.Mode(), err)
	}
	in.Stop(context.Background())
	if _, err := os.Stat(dirs[0]); !os.IsNotExist(err) {
		t.Errorf("the secret files outlived the container: %v", err)
	}
}
