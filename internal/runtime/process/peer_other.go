//go:build !linux

package process

import (
	"errors"
	"fmt"
	"net/netip"
)

// Peer lookup reads Linux's /proc; elsewhere every lookup fails, so callers
// that fail closed refuse every peer.

var errPeerUnsupported = fmt.Errorf("peer process lookup: %w on this system", errors.ErrUnsupported)

// PeerPID returns the pid of the process holding the client end of a TCP
// connection on this host. Only implemented on Linux.
func PeerPID(local, remote netip.AddrPort) (int, error) { return 0, errPeerUnsupported }

// PeerPIDs returns every pid holding the client end of a TCP connection on
// this host. Only implemented on Linux.
func PeerPIDs(local, remote netip.AddrPort) ([]int, error) { return nil, errPeerUnsupported }

// ProcessGroup returns the process group of pid. Only implemented on Linux.
func ProcessGroup(pid int) (int, error) { return 0, errPeerUnsupported }

// InGroup reports whether pid is in process group pgid; always false here.
func InGroup(pid, pgid int) bool { return false }

// ErrNotInstance is wrapped by InstanceLeader when a process belongs to no
// instance started by this process.
var ErrNotInstance = errors.New("not a process of an instance started by this process")

// InstanceLeader returns the main process of the instance pid belongs to.
// Only implemented on Linux.
func InstanceLeader(pid int) (int, error) { return 0, errPeerUnsupported }

// Environ returns the environment of pid. Only implemented on Linux.
func Environ(pid int) (map[string]string, error) { return nil, errPeerUnsupported }

// ListensOnPort reports whether a process of group pgid listens on port.
// Only implemented on Linux; elsewhere it answers true, unchecked.
func ListensOnPort(pgid int, port uint16) bool { return true }
