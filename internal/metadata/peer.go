package metadata

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/usher-run/usher/internal/runtime/process"
)

// ProcessInstances returns an Identity.CheckPeer for the instances of one
// revision run by the process runtime (package process; Linux only —
// elsewhere it refuses every peer). A connection passes when all of:
//
//  1. Kernel facts: every process holding the client end of the connection
//     (process.PeerPIDs, from /proc/net/tcp and /proc/PID/fd) belongs to
//     the same instance Usher started (process.InstanceLeader: a direct
//     child of Usher leading its own process group, and the peer in that
//     group or descended from it). Processes of other users, of no
//     instance, or Usher itself are refused.
//  2. The instance was started for this listener: its main process's
//     environment has GCE_METADATA_HOST equal to the listener's address and
//     K_REVISION equal to revision, as runtime.ContractEnv set them. This
//     works from the instance's first instruction, before Start returns and
//     before the pool knows the instance.
//  3. If owner is not nil: owner(pgid) — the pool's record of which revision
//     the running instance with that process group
//     (process.ProcessGrouper.ProcessGroup) belongs to — does not name
//     another revision. Instances the pool does not know yet (still
//     starting) are decided by 1 and 2.
//
// Step 2 reads what the instance's main process holds in its environment
// block, which that process could overwrite; steps 1 and 3 are the kernel's
// and Usher's own facts. Instances of the process runtime run as Usher's
// user and are no sandbox (they could read Usher's data directory), so the
// check keeps honest instances, other local users and non-instance
// processes from an identity, not a hostile instance from a sibling
// revision's account before the pool knows it; pass owner to close that for
// every instance the pool already tracks.
func ProcessInstances(revision string, owner func(pgid int) (revision string, known bool)) func(local, remote netip.AddrPort) error {
	return func(local, remote netip.AddrPort) error {
		pids, err := process.PeerPIDs(local, remote)
		if err != nil {
			return err
		}
		leader := 0
		for _, pid := range pids {
			l, err := process.InstanceLeader(pid)
			if err != nil {
				return err
			}
			if leader != 0 && l != leader {
				return fmt.Errorf("the client socket is shared by instances %d and %d", leader, l)
			}
			leader = l
		}
		env, err := process.Environ(leader)
		if err != nil {
			return fmt.Errorf("instance %d: %w", leader, err)
		}
		host, err := netip.ParseAddrPort(env["GCE_METADATA_HOST"])
		if err != nil || host.Addr().Unmap() != local.Addr().Unmap() || host.Port() != local.Port() {
			return fmt.Errorf("instance %d was started for metadata host %q, not %s", leader, env["GCE_METADATA_HOST"], local)
		}
		if got := env["K_REVISION"]; got != revision || revision == "" {
			return fmt.Errorf("instance %d belongs to revision %q, not %q", leader, got, revision)
		}
		if owner != nil {
			if rev, known := owner(leader); known && rev != revision {
				return fmt.Errorf("instance %d belongs to revision %q, not %q", leader, rev, revision)
			}
		}
		return nil
	}
}

// SandboxedProcessInstances returns an Identity.CheckPeer for the instances
// of one revision run by a sandboxed process runtime (process.Sandbox). Such
// an instance has its own network namespace: its connections to the
// metadata host reach this listener through Usher's own relay, which dials
// from a loopback address unique to the instance. A connection passes only
// when the kernel says Usher itself holds its client end (process.PeerPIDs:
// no other local process, which could pick the same source address) and
// lookup (process.Runtime.InstanceAt) places that source address in a live
// instance of revision. Nothing the instance says counts.
func SandboxedProcessInstances(revision string, lookup func(ip netip.Addr) (revision string, known bool)) func(local, remote netip.AddrPort) error {
	self := os.Getpid()
	return func(local, remote netip.AddrPort) error {
		if revision == "" || lookup == nil {
			return errors.New("SandboxedProcessInstances: no revision or lookup")
		}
		pids, err := process.PeerPIDs(local, remote)
		if err != nil {
			return err
		}
		for _, pid := range pids {
			if pid != self {
				return fmt.Errorf("the client socket is held by process %d, not by Usher's relay", pid)
			}
		}
		got, known := lookup(remote.Addr().Unmap())
		if !known {
			return fmt.Errorf("%s is not the address of a sandboxed instance", remote.Addr())
		}
		if got != revision {
			return fmt.Errorf("the instance at %s belongs to revision %q, not %q", remote.Addr(), got, revision)
		}
		return nil
	}
}

// DockerInstances returns an Identity.CheckPeer for the instances of one
// revision run by the Docker runtime, for a listener on the Docker network's
// gateway (see "Docker instances" in the package doc). lookup tells which
// revision the live instance whose container has address ip belongs to, as
// recorded by the runtime that started it (docker.Runtime.WaitInstanceAt,
// which also waits for instances still starting); known is false for any
// other address. A connection passes only when its source address is known
// to lookup and names revision: connections from the host, from containers
// Usher did not start, from instances of other revisions, or that lookup
// cannot place (it panics, or gives up on an instance still starting) are
// refused. Nothing the container says (headers, environment, labels)
// counts.
func DockerInstances(revision string, lookup func(ip netip.Addr) (revision string, known bool)) func(local, remote netip.AddrPort) error {
	return func(local, remote netip.AddrPort) error {
		if revision == "" || lookup == nil {
			return errors.New("DockerInstances: no revision or lookup")
		}
		ip := remote.Addr().Unmap()
		switch {
		case !ip.IsValid() || ip.IsUnspecified():
			return fmt.Errorf("invalid remote address %s", remote)
		case ip == local.Addr().Unmap() || ip.IsLoopback():
			return fmt.Errorf("%s is the host, not a container", ip)
		}
		got, known := lookup(ip)
		if !known {
			return fmt.Errorf("%s is not the address of an instance Usher started", ip)
		}
		if got != revision {
			return fmt.Errorf("the instance at %s belongs to revision %q, not %q", ip, got, revision)
		}
		return nil
	}
}
