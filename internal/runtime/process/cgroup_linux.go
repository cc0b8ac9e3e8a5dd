package process

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/runtime"
	"golang.org/x/sys/unix"
)

// Resource limits of sandboxed instances. Each instance gets a cgroup of
// its own under Usher's: cgroup v2 where the memory and pids controllers
// are there (memory.max, memory.swap.max=0, pids.max, cpu.max), else the
// v1 hierarchies of those controllers (memory.limit_in_bytes and
// memory.memsw.limit_in_bytes, pids.max, cpu.cfs_quota_us), as Docker does
// on such machines. The init joins it before it starts the program, so
// everything the instance runs is counted. Where neither can be had
// (no cgroup file system, no write access), instances run without limits
// and Runtime.Limits says why.

// cgroupSet is where instances' cgroups are made.
type cgroupSet struct {
	// v2 is the cgroup v2 directory instances' cgroups go in, "" on v1.
	v2 string
	// v1 maps a v1 controller to the directory instances' cgroups go in.
	v1 map[string]string
}

// limits are one instance's.
type limits struct {
	memory    int64 // bytes; 0 none
	milliCPUs int64 // 0 none
	pids      int64
}

// instanceCgroup is one instance's cgroup (one directory per v1 hierarchy).
type instanceCgroup struct{ dirs []string }

const cpuPeriod = 100000 // µs: CFS's default period

// findCgroups says where this process may make cgroups for instances.
func findCgroups() (*cgroupSet, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	if m, ok := mounts["cgroup2"]; ok {
		if p, ok := own[""]; ok {
			if dir, err := v2Base(filepath.Join(m.point, strings.TrimPrefix(p, m.root))); err == nil {
				return &cgroupSet{v2: dir}, nil
			} else if !errors.Is(err, errNoControllers) {
				return nil, err
			}
		}
	}
	set := &cgroupSet{v1: map[string]string{}}
	// cpuacct only accounts (the instance's CPU time, for metrics).
	for _, ctrl := range []string{"memory", "pids", "cpu", "cpuacct"} {
		m, ok := mounts[ctrl]
		p, okOwn := own[ctrl]
		if !ok || !okOwn {
			continue
		}
		dir := filepath.Join(m.point, strings.TrimPrefix(p, m.root))
		if unix.Access(dir, unix.W_OK) != nil {
			continue
		}
		set.v1[ctrl] = dir
	}
	if set.v1["memory"] == "" || set.v1["pids"] == "" {
		return nil, errors.New("no cgroup v2 with the memory and pids controllers, nor writable v1 memory and pids hierarchies")
	}
	return set, nil
}

var errNoControllers = errors.New("cgroup v2 lacks the memory or pids controller")

// v2Base prepares own (Usher's cgroup) so instances' cgroups can be made
// in it with the memory, pids and cpu controllers. Outside the root, a
// cgroup with processes cannot pass controllers down, so Usher first moves
// itself into a leaf of its own ("usher").
func v2Base(own string) (string, error) {
	b, err := os.ReadFile(filepath.Join(own, "cgroup.controllers"))
	if err != nil {
		return "", err
	}
	have := strings.Fields(string(b))
	if !slices.Contains(have, "memory") || !slices.Contains(have, "pids") {
		return "", errNoControllers
	}
	enable := "+memory +pids"
	if slices.Contains(have, "cpu") {
		enable += " +cpu"
	}
	ctl := filepath.Join(own, "cgroup.subtree_control")
	if err := os.WriteFile(ctl, []byte(enable), 0); errors.Is(err, unix.EBUSY) {
		leaf := filepath.Join(own, "usher")
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return "", fmt.Errorf("move Usher into %s: %w", leaf, err)
		}
		if err := os.WriteFile(ctl, []byte(enable), 0); err != nil {
			return "", fmt.Errorf("enable controllers in %s (other processes share Usher's cgroup?): %w", own, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("enable controllers in %s: %w", own, err)
	}
	return own, nil
}

// ownCgroups reads /proc/self/cgroup: controller → path ("" for v2).
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseOwnCgroups(f)
}

func parseOwnCgroups(r io.Reader) (map[string]string, error) {
	own := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	return own, sc.Err()
}

type cgroupMount struct{ point, root string }

// cgroupMounts reads /proc/self/mountinfo: controller (or "cgroup2") →
// where its hierarchy is mounted.
func cgroupMounts() (map[string]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseCgroupMounts(f)
}

func parseCgroupMounts(r io.Reader) (map[string]cgroupMount, error) {
	mounts := map[string]cgroupMount{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		m := cgroupMount{point: pf[4], root: pf[3]}
		switch sf[0] {
		case "cgroup2":
			if _, seen := mounts["cgroup2"]; !seen {
				mounts["cgroup2"] = m
			}
		case "cgroup":
			for _, opt := range strings.Split(sf[2], ",") {
				if _, seen := mounts[opt]; !seen {
					mounts[opt] = m
				}
			}
		}
	}
	return mounts, sc.Err()
}

// create makes the cgroup of instance id with lim.
func (s *cgroupSet) create(id string, lim limits) (*instanceCgroup, error) {
	name := "usher-" + id
	var g instanceCgroup
	fail := func(err error) (*instanceCgroup, error) {
		g.remove()
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if s.v2 != "" {
		dir := filepath.Join(s.v2, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fail(err)
		}
		g.dirs = append(g.dirs, dir)
		files := [][2]string{{"pids.max", strconv.FormatInt(lim.pids, 10)}}
		if lim.memory > 0 {
			files = append(files, [2]string{"memory.max", strconv.FormatInt(lim.memory, 10)}, [2]string{"memory.swap.max", "0"})
		}
		if lim.milliCPUs > 0 {
			files = append(files, [2]string{"cpu.max", fmt.Sprintf("%d %d", lim.milliCPUs*cpuPeriod/1000, cpuPeriod)})
		}
		for _, f := range files {
			if err := writeCgroupFile(dir, f[0], f[1]); err != nil {
				if f[0] == "memory.swap.max" && errors.Is(err, os.ErrNotExist) {
					continue // no swap accounting: no swap to limit
				}
				return fail(err)
			}
		}
		return &g, nil
	}
	for _, ctrl := range []string{"memory", "pids", "cpu", "cpuacct"} {
		base, ok := s.v1[ctrl]
		if !ok {
			continue
		}
		dir := filepath.Join(base, name)
		if slices.Contains(g.dirs, dir) {
			continue // co-mounted controllers (cpu,cpuacct): one directory
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fail(err)
		}
		g.dirs = append(g.dirs, dir)
		var err error
		switch {
		case ctrl == "pids":
			err = writeCgroupFile(dir, "pids.max", strconv.FormatInt(lim.pids, 10))
		case ctrl == "memory" && lim.memory > 0:
			v := strconv.FormatInt(lim.memory, 10)
			err = writeCgroupFile(dir, "memory.limit_in_bytes", v)
			if err == nil {
				// memory+swap no more than memory: no swap.
				if werr := writeCgroupFile(dir, "memory.memsw.limit_in_bytes", v); werr != nil && !errors.Is(werr, os.ErrNotExist) {
					err = werr
				}
			}
		case ctrl == "cpu" && lim.milliCPUs > 0:
			err = writeCgroupFile(dir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod))
			if err == nil {
				err = writeCgroupFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(lim.milliCPUs*cpuPeriod/1000, 10))
			}
		}
		if err != nil {
			return fail(err)
		}
	}
	return &g, nil
}

func writeCgroupFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
		return fmt.Errorf("%s=%s: %w", filepath.Join(dir, name), value, err)
	}
	return nil
}

// add moves process pid (all its threads) into the cgroup.
func (g *instanceCgroup) add(pid int) error {
	for _, dir := range g.dirs {
		if err := writeCgroupFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
	}
	return nil
}

// remove deletes the cgroup once the kernel has let go of the instance's
// processes (they die with its PID namespace, a moment after its init).
func (g *instanceCgroup) remove() {
	deadline := time.Now().Add(5 * time.Second)
	for _, dir := range g.dirs {
		for {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// usage reads the instance's CPU time and memory from its cgroup.
func (g *instanceCgroup) usage() (runtime.Usage, error) { return runtime.CgroupUsage(g.dirs...) }
