package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupUsage(t *testing.T) {
	v2 := t.TempDir()
	os.WriteFile(filepath.Join(v2, "cpu.stat"), []byte("usage_usec 2500000\nuser_usec 2000000\n"), 0o644)
	os.WriteFile(filepath.Join(v2, "memory.current"), []byte("1048576\n"), 0o644)
	u, err := CgroupUsage(v2)
	if err != nil || u.CPUSeconds != 2.5 || u.MemoryBytes != 1<<20 {
		t.Errorf("v2: %+v, %v", u, err)
	}
	cpu, mem := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(cpu, "cpuacct.usage"), []byte("1500000000\n"), 0o644)
	os.WriteFile(filepath.Join(mem, "memory.usage_in_bytes"), []byte("4096\n"), 0o644)
	u, err = CgroupUsage(mem, cpu)
	if err != nil || u.CPUSeconds != 1.5 || u.MemoryBytes != 4096 {
		t.Errorf("v1: %+v, %v", u, err)
	}
	if _, err := CgroupUsage(t.TempDir()); err == nil {
		t.Error("an empty directory gave a usage")
	}
	// This very process is in some cgroup the kernel names.
	if dirs, err := CgroupDirsOf(os.Getpid()); err != nil || len(dirs) == 0 {
		t.Logf("no cgroup for this process (%v): not a Linux with cgroups?", err)
	}
}
