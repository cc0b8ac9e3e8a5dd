package metadata

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/usher-run/usher/internal/runtime/process"
)

// ProcessInstances returns a Network.Identify for instances run by the
// unsandboxed process runtime (package process; Linux only — elsewhere it
// refuses every peer). Every process holding the client end of the
// connection (process.PeerPIDs, from /proc/net/tcp and /proc/PID/fd) must
// belong to one instance Usher started (process.InstanceLeader: a direct
// child of Usher leading its own process group, and the peer in that group
// or descended from it), and lookup (process.Runtime.WaitInstanceOfGroup)
// must know that instance: it names the instance's registration. Processes
// of other users, of no instance, or Usher itself are refused. Nothing the
// instance says (its environment, headers) counts. Unsandboxed instances
// run as Usher's user and could read Usher's data directory anyway: the
// check keeps honest instances, other local users and other processes from
// an identity.
func ProcessInstances(lookup func(pgid int) (key string, known bool)) func(local, remote netip.AddrPort) (string, error) {
	return func(local, remote netip.AddrPort) (string, error) {
		if lookup == nil {
			return "", errors.New("ProcessInstances: no lookup")
		}
		pids, err := process.PeerPIDs(local, remote)
		if err != nil {
			return "", err
		}
		leader := 0
		for _, pid := range pids {
			l, err := process.InstanceLeader(pid)
			if err != nil {
				return "", err
			}
			if leader != 0 && l != leader {
				return "", fmt.Errorf("the client socket is shared by instances %d and %d", leader, l)
			}
			leader = l
		}
		key, known := lookup(leader)
		if !known {
			return "", fmt.Errorf("process %d leads no instance of this runtime", leader)
		}
		return key, nil
	}
}

// SandboxedProcessInstances returns a Network.Identify for instances run by
// a sandboxed process runtime (process.Sandbox). Such an instance has its
// own network namespace: its connections to the metadata host reach the
// listener through Usher's own relay, which dials from a loopback address
// unique to the instance. A connection is identified only when the kernel
// says Usher itself holds its client end (process.PeerPIDs: no other local
// process, which could pick the same source address) and lookup
// (process.Runtime.InstanceAt) places that source address in a live
// instance. Nothing the instance says counts.
func SandboxedProcessInstances(lookup func(ip netip.Addr) (key string, known bool)) func(local, remote netip.AddrPort) (string, error) {
	self := os.Getpid()
	return func(local, remote netip.AddrPort) (string, error) {
		if lookup == nil {
			return "", errors.New("SandboxedProcessInstances: no lookup")
		}
		pids, err := process.PeerPIDs(local, remote)
		if err != nil {
			return "", err
		}
		for _, pid := range pids {
			if pid != self {
				return "", fmt.Errorf("the client socket is held by process %d, not by Usher's relay", pid)
			}
		}
		key, known := lookup(remote.Addr().Unmap())
		if !known {
			return "", fmt.Errorf("%s is not the address of a sandboxed instance", remote.Addr())
		}
		return key, nil
	}
}

// DockerInstances returns a Network.Identify for instances run by the
// Docker runtime, for a listener on the Docker network's gateway (see
// "Docker instances" in the package doc). lookup tells which registration
// the live instance whose container has address ip belongs to, as recorded
// by the runtime that started it (docker.Runtime.WaitInstanceAt, which also
// waits for instances still starting); known is false for any other
// address. Connections from the host, from containers Usher did not start,
// or that lookup cannot place (it panics, or gives up on an instance still
// starting) are refused. Nothing the container says (headers, environment,
// labels) counts.
func DockerInstances(lookup func(ip netip.Addr) (key string, known bool)) func(local, remote netip.AddrPort) (string, error) {
	return func(local, remote netip.AddrPort) (string, error) {
		if lookup == nil {
			return "", errors.New("DockerInstances: no lookup")
		}
		ip := remote.Addr().Unmap()
		switch {
		case !ip.IsValid() || ip.IsUnspecified():
			return "", fmt.Errorf("invalid remote address %s", remote)
		case ip == local.Addr().Unmap() || ip.IsLoopback():
			return "", fmt.Errorf("%s is the host, not a container", ip)
		}
		key, known := lookup(ip)
		if !known {
			return "", fmt.Errorf("%s is not the address of an instance Usher started", ip)
		}
		return key, nil
	}
}
