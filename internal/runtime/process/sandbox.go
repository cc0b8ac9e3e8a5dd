package process

import (
	"errors"
	"net/netip"
)

// Sandbox isolates every instance of the runtime (Linux; see
// sandbox_linux.go for how). When Usher is not root, the namespaces are
// made inside a user namespace that maps UID:GID to Usher's own ids (and
// nothing else), the init hands Usher the sockets it needs inside, egress
// is pasta's, and there are no cgroup limits:
//
//   - its own network, mount, PID, IPC and UTS namespaces. The network
//     namespace has only a loopback interface: $PORT exists only there, and
//     Usher reaches it by dialing from inside (Runtime.DialContext), so
//     nothing listens on the host for an instance. Inside, Usher's own
//     code listens on each address of Reach and of the ReachEnv variables
//     (the same host:port as outside) and relays each connection to that
//     address on the host, from a loopback source address unique to the
//     instance (Runtime.InstanceAt tells whose it is). No other address,
//     host service or instance is reachable that way. With Egress, an eth0
//     routed through the host with NAT reaches other hosts, like a
//     container (egress_linux.go says what stays out of reach); without,
//     there is no egress at all;
//   - the host's root file system read-only, with the paths of Hide covered
//     (an empty read-only tmpfs over directories, /dev/null over files), a
//     fresh /proc, and private in-memory /tmp (its working directory unless
//     InstanceSpec.WorkingDir says otherwise) and /dev/shm, plus a private
//     tmpfs per in-memory volume (InstanceSpec.Volumes), at a directory that
//     exists or is made under /tmp or /dev/shm;
//   - a cgroup of its own where the machine has them (cgroup_linux.go),
//     with the revision's memory (DefaultMemory when it sets none, and no
//     swap) and CPU limits, and at most Pids processes and threads;
//   - the user UID:GID with no supplementary groups and no_new_privs, so
//     set-uid programs cannot give it root back;
//   - a small init process (Usher's own executable) as PID 1 of its PID
//     namespace: it starts the instance's program, and when that exits
//     every process left in the namespace is killed by the kernel.
type Sandbox struct {
	// UID and GID the instance runs as; both 0 means 65534 (nobody).
	// Root (0) is refused.
	UID, GID int
	// Hide lists host paths the instance must not see: Usher's data
	// directory, its configuration, keys, etcd client certificates.
	// Relative paths are taken from Usher's working directory.
	Hide []string
	// Reach lists host:port addresses the instance may connect to at the
	// same address as on the host: Usher's own listener (the gateway).
	Reach []string
	// ReachEnv names instance environment variables whose values
	// (host:port) are relayed the same way; empty means GCE_METADATA_HOST.
	ReachEnv []string
	// Egress gives instances a way to other hosts (Cloud Run instances may
	// call the internet): a veth pair with NAT (Usher as root). Private
	// networks (RFC 1918, carrier-grade NAT and other non-internet ranges)
	// stay out of reach unless EgressPrivate.
	Egress bool
	// EgressPrivate lets instances with Egress into private networks too
	// (the LAN), as a VPC connector does for Cloud Run.
	EgressPrivate bool
	// Pids caps the processes and threads of one instance (its init
	// included) where cgroups can be had; 0 means DefaultPids.
	Pids int64
}

// Limits of sandboxed instances where cgroups can be had, the same as the
// Docker runtime's.
const (
	DefaultMemory = "512Mi" // when the revision sets none, as on Cloud Run
	DefaultPids   = 1024    // processes and threads
	minMemory     = 6 << 20 // less and the init itself cannot start
)

// ErrNoSandbox is returned by New when a sandbox is asked for and this
// machine cannot provide it (not Linux, namespaces or, without root, user
// namespaces forbidden, egress asked for without its means).
var ErrNoSandbox = errors.New("process sandbox unavailable")

// sourceNet is where instances' relayed connections come from on the host:
// 127.77.0.0/16, one address per live instance.
var sourceNet = netip.MustParsePrefix("127.77.0.0/16")
