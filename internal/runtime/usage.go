package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is what an instance has used, as the kernel accounts it.
type Usage struct {
	CPUSeconds  float64 // CPU time since the instance started
	MemoryBytes uint64  // memory in use now (page cache included, as cgroups count it)
}

// UsageReporter is implemented by instances whose usage the runtime can
// read (those in a cgroup of their own: sandboxed processes, containers).
type UsageReporter interface {
	Usage() (Usage, error)
}

// cgroupRoot is where the cgroup file systems are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// CgroupUsage reads the usage of the cgroup v2 directory dir (cpu.stat's
// usage_usec, memory.current) or, failing that, of cgroup v1 directories
// (cpuacct.usage, memory.usage_in_bytes), whichever of dirs hold them.
func CgroupUsage(dirs ...string) (Usage, error) {
	var u Usage
	var gotCPU, gotMem bool
	for _, d := range dirs {
		if !gotCPU {
			if v, err := statField(filepath.Join(d, "cpu.stat"), "usage_usec"); err == nil {
				u.CPUSeconds, gotCPU = float64(v)/1e6, true
			} else if v, err := readUint(filepath.Join(d, "cpuacct.usage")); err == nil {
				u.CPUSeconds, gotCPU = float64(v)/1e9, true
			}
		}
		if !gotMem {
			if v, err := readUint(filepath.Join(d, "memory.current")); err == nil {
				u.MemoryBytes, gotMem = v, true
			} else if v, err := readUint(filepath.Join(d, "memory.usage_in_bytes")); err == nil {
				u.MemoryBytes, gotMem = v, true
			}
		}
	}
	if !gotCPU && !gotMem {
		return Usage{}, fmt.Errorf("no cgroup usage in %v", dirs)
	}
	return u, nil
}

// CgroupDirsOf returns the cgroup directories of process pid, as the host
// sees them: the v2 one, or each v1 hierarchy's.
func CgroupDirsOf(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		// "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || strings.Contains(parts[2], "..") {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			dirs = append(dirs, filepath.Join(cgroupRoot, parts[2]))
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == "cpuacct" || c == "memory" {
				dirs = append(dirs, filepath.Join(cgroupRoot, parts[1], parts[2]))
				break
			}
		}
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup")
	}
	return dirs, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// statField reads "name value" from a flat-keyed cgroup file.
func statField(path, name string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == name {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, name)
}
