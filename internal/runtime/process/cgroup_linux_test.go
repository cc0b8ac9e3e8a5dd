package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

// limitedRuntime is a sandboxed runtime whose instances get cgroup limits,
// or skips, loudly, where this machine gives Usher no cgroups.
func limitedRuntime(t *testing.T, sb Sandbox) *Runtime {
	t.Helper()
	rt := sandboxRuntime(t, sb)
	t.Cleanup(func() { rt.Close() })
	if err := rt.Limits(); err != nil {
		t.Skipf("LIMITS NOT TESTED: this machine gives Usher no cgroups for instances: %v", err)
	}
	return rt
}

// cgroupFile reads one of the instance's cgroup files, in whichever
// hierarchy has it.
func cgroupFile(t *testing.T, in runtime.Instance, name string) string {
	t.Helper()
	for _, dir := range in.(*instance).cgroup.dirs {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

func TestSandboxLimits(t *testing.T) {
	app := buildTestApp(t)
	rt := limitedRuntime(t, Sandbox{Pids: 64})
	v2 := rt.cgroups.v2 != ""

	t.Run("Files", func(t *testing.T) {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app, Memory: "64Mi", CPU: "500m"})
		if err != nil {
			t.Fatal(err)
		}
		defer in.Stop(context.Background())
		want := map[string]string{"pids.max": "64"}
		if v2 {
			want["memory.max"] = "67108864"
			want["cpu.max"] = "50000 100000"
			if _, err := os.Stat(filepath.Join(in.(*instance).cgroup.dirs[0], "memory.swap.max")); err == nil {
				want["memory.swap.max"] = "0"
			}
		} else {
			want["memory.limit_in_bytes"] = "67108864"
			want["cpu.cfs_quota_us"] = "50000"
			want["cpu.cfs_period_us"] = "100000"
			if _, ok := rt.cgroups.v1["memory"]; ok {
				if _, err := os.Stat(filepath.Join(rt.cgroups.v1["memory"], "memory.memsw.limit_in_bytes")); err == nil {
					want["memory.memsw.limit_in_bytes"] = "67108864"
				}
			}
		}
		for name, w := range want {
			if got := cgroupFile(t, in, name); got != w {
				t.Errorf("%s: got %q, want %q", name, got, w)
			}
		}
	})

	t.Run("DefaultMemory", func(t *testing.T) {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app})
		if err != nil {
			t.Fatal(err)
		}
		defer in.Stop(context.Background())
		name := "memory.limit_in_bytes"
		if v2 {
			name = "memory.max"
		}
		if got := cgroupFile(t, in, name); got != "536870912" {
			t.Errorf("%s without --memory: got %q, want 512Mi", name, got)
		}
	})

	t.Run("OutOfMemoryKilled", func(t *testing.T) {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: "file://" + app, Memory: "64Mi"})
		if err != nil {
			t.Fatal(err)
		}
		defer in.Stop(context.Background())
		code, body, err := runtimetest.Get(in, "/alloc?mb=256")
		if err == nil {
			t.Errorf("allocating 256Mi under a 64Mi limit: %d %q, want the instance killed", code, body)
		}
		select {
		case <-in.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("instance over its memory limit still running")
		}
		var x *runtime.ExitError
		if !errors.As(in.Err(), &x) || x.Signal != "killed" {
			t.Errorf("exit: %v, want killed by SIGKILL (the OOM killer)", in.Err())
		}
		if !v2 {
			if oc := cgroupFile(t, in, "memory.oom_control"); oc != "" && strings.Contains(oc, "oom_kill 0") {
				t.Errorf("memory.oom_control says no OOM kill: %q", oc)
			}
		}
	})

	t.Run("ForkBombStopped", func(t *testing.T) {
		logs := runtimetest.NewLogBuffer(t)
		// 200 processes that would each live for a minute.
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{
			Image:           "file://" + app,
			Command:         []string{"/bin/sh", "-c", `i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done; echo "started $i"`},
			RunToCompletion: true,
			Logs:            logs,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer in.Stop(context.Background())
		select {
		case <-in.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("fork bomb still running")
		}
		out := logs.String()
		if strings.Contains(out, "started 200") || !strings.Contains(strings.ToLower(out), "fork") {
			t.Errorf("200 processes under pids.max=64: output %q, want the shell unable to fork", out)
		}
	})

	t.Run("InvalidLimitsRefused", func(t *testing.T) {
		for _, spec := range []runtime.InstanceSpec{
			{Image: "file://" + app, Memory: "lots"},
			{Image: "file://" + app, Memory: "1Mi"},
			{Image: "file://" + app, CPU: "-1"},
		} {
			if in, err := rt.Start(context.Background(), spec); err == nil {
				in.Stop(context.Background())
				t.Errorf("Start with memory %q cpu %q: started, want refused", spec.Memory, spec.CPU)
			}
		}
	})
}

// TestCgroupV2Files: what a cgroup v2 instance cgroup is given, written to a
// stand-in directory (this test machine may have only v1 hierarchies, where
// TestSandboxLimits tests the kernel's side; on a v2 machine it tests v2's).
func TestCgroupV2Files(t *testing.T) {
	own := t.TempDir()
	if err := os.WriteFile(filepath.Join(own, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := v2Base(own)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(own, "cgroup.subtree_control")); string(b) != "+memory +pids +cpu" {
		t.Errorf("subtree_control: got %q, want +memory +pids +cpu", b)
	}
	set := &cgroupSet{v2: base}
	g, err := set.create("abc", limits{memory: 64 << 20, milliCPUs: 1500, pids: 100})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"memory.max":      "67108864",
		"memory.swap.max": "0",
		"cpu.max":         "150000 100000",
		"pids.max":        "100",
	} {
		b, err := os.ReadFile(filepath.Join(g.dirs[0], name))
		if err != nil || string(b) != want {
			t.Errorf("%s: got %q (%v), want %q", name, b, err, want)
		}
	}
	if filepath.Base(g.dirs[0]) != "usher-abc" || filepath.Dir(g.dirs[0]) != own {
		t.Errorf("instance cgroup at %s, want %s/usher-abc", g.dirs[0], own)
	}

	// Without the memory or pids controller there is nothing to enforce.
	bare := t.TempDir()
	os.WriteFile(filepath.Join(bare, "cgroup.controllers"), []byte("cpu io\n"), 0o644)
	if _, err := v2Base(bare); !errors.Is(err, errNoControllers) {
		t.Errorf("v2Base without memory and pids: %v, want errNoControllers", err)
	}
}

// TestCgroupDiscovery: where Usher's own cgroups are, on a v2 machine (as
// systemd sets one up) and a hybrid v1 one (this test machine's kind).
func TestCgroupDiscovery(t *testing.T) {
	v2own, _ := parseOwnCgroups(strings.NewReader("0::/system.slice/usher.service\n"))
	v2mounts, _ := parseCgroupMounts(strings.NewReader(
		"30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"))
	if v2own[""] != "/system.slice/usher.service" || v2mounts["cgroup2"].point != "/sys/fs/cgroup" {
		t.Errorf("v2: own %v, mounts %v", v2own, v2mounts)
	}
	v1own, _ := parseOwnCgroups(strings.NewReader("8:pids:/\n4:memory:/process_api/fb05\n1:cpu,cpuacct:/\n0::/\n"))
	v1mounts, _ := parseCgroupMounts(strings.NewReader(
		"40 30 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
			"41 30 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n" +
			"42 30 0:37 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n" +
			"43 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"))
	for ctrl, want := range map[string]string{"memory": "/process_api/fb05", "pids": "/", "cpu": "/", "cpuacct": "/", "": "/"} {
		if v1own[ctrl] != want {
			t.Errorf("own %s cgroup: got %q, want %q", ctrl, v1own[ctrl], want)
		}
	}
	for ctrl, want := range map[string]string{"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct", "pids": "/sys/fs/cgroup/pids", "cgroup2": "/sys/fs/cgroup/unified"} {
		if v1mounts[ctrl].point != want {
			t.Errorf("%s mounted at %q, want %q", ctrl, v1mounts[ctrl].point, want)
		}
	}
}
