package process

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Peer lookup: which local process is on the other end of a TCP connection?
//
// The kernel's socket tables (/proc/net/tcp and /proc/net/tcp6, for the
// network namespace Usher runs in) map the client end of a loopback
// connection (local address = the client's, remote address = the server's)
// to a socket inode; /proc/PID/fd/N links read "socket:[INODE]" for the
// processes holding it. Everything here is read from the kernel, never from
// anything the peer says about itself, except Environ (a process can rewrite
// its own environment block).
//
// Only processes of Usher's own user can be inspected (/proc/PID/fd of other
// users is unreadable), so a socket held by another user's process is never
// found: callers fail closed on any error.

// procRoot is /proc; a variable so tests could point it elsewhere.
var procRoot = "/proc"

// netTables is where the kernel's socket tables are read from.
var netTables = "/proc/thread-self/net/"

// maxAncestry bounds the parent walk of InstanceLeader.
const maxAncestry = 256

// PeerPID returns the pid of the process holding the client end of a TCP
// connection on this host. local and remote are the connection's addresses
// as the server sees them (net.Conn LocalAddr and RemoteAddr). If several
// processes hold the socket (inherited across fork) it returns the lowest
// pid; use PeerPIDs to see them all.
func PeerPID(local, remote netip.AddrPort) (int, error) {
	pids, err := PeerPIDs(local, remote)
	if err != nil {
		return 0, err
	}
	return pids[0], nil
}

// PeerPIDs returns every pid holding the client end of a TCP connection on
// this host, sorted, at least one. See PeerPID.
func PeerPIDs(local, remote netip.AddrPort) ([]int, error) {
	inode, err := socketInode(remote, local)
	if err != nil {
		return nil, err
	}
	pids, err := socketOwners(inode)
	if err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("peer %s: no process of uid %d holds socket inode %d", remote, os.Getuid(), inode)
	}
	return pids, nil
}

// errNoSocket is wrapped by socketInode when the tables hold no such socket.
var errNoSocket = errors.New("no socket")

// socketInode finds the TCP socket whose local address is src and whose
// remote address is dst, owned by our uid, and returns its inode.
func socketInode(src, dst netip.AddrPort) (uint64, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !src.IsValid() || !dst.IsValid() {
		return 0, fmt.Errorf("peer lookup: invalid address %s → %s", src, dst)
	}
	var errs []error
	for _, table := range []string{"tcp", "tcp6"} {
		// The calling thread's tables: /proc/net shows the main thread's
		// namespace, which the sandbox may enter for a moment
		// (netns.do); a goroutine here never runs on such a thread.
		inode, found, err := scanTCPTable(netTables+table, src, dst)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if found {
			return inode, nil
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("peer %s: %w", src, err)
	}
	return 0, fmt.Errorf("peer %s: %w connected to %s in this network namespace", src, errNoSocket, dst)
}

// scanTCPTable scans one /proc/net/tcp{,6} file. Rows look like
//
//	sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
//	0: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 1000 0 123456 ...
func scanTCPTable(path string, src, dst netip.AddrPort) (inode uint64, found bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil // e.g. IPv6 disabled
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	uid := os.Getuid()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		l, err := parseProcAddr(fields[1])
		if err != nil || l != src {
			continue
		}
		r, err := parseProcAddr(fields[2])
		if err != nil || r != dst {
			continue
		}
		owner, err := strconv.Atoi(fields[7])
		if err != nil {
			return 0, false, fmt.Errorf("%s: bad uid %q", path, fields[7])
		}
		if owner != uid {
			return 0, false, fmt.Errorf("socket %s → %s belongs to uid %d, not %d", src, dst, owner, uid)
		}
		n, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: bad inode %q", path, fields[9])
		}
		if n == 0 {
			// A socket no process holds any more (e.g. TIME_WAIT): keep
			// looking, a live one may follow.
			continue
		}
		return n, true, nil
	}
	return 0, false, sc.Err()
}

// parseProcAddr parses "HEXADDR:HEXPORT" as the kernel prints it: the
// address as 32-bit words in host byte order, the port as a number.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	// Each 32-bit word was printed as a number: turn it back into the bytes
	// it has in memory (network order).
	buf := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(buf[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad socket port %q", s)
	}
	addr, _ := netip.AddrFromSlice(buf)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// socketOwners returns the pids whose fd table holds socket inode, sorted.
// Processes we may not inspect (other users) or that exit meanwhile are
// skipped.
func socketOwners(inode uint64) ([]int, error) {
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := procRoot + "/" + p.Name() + "/fd"
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours
		}
		for _, fd := range fds {
			if link, err := os.Readlink(fdDir + "/" + fd.Name()); err == nil && link == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// procStat is what Usher needs from /proc/PID/stat.
type procStat struct {
	ppid, pgrp int
}

func readStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, fmt.Errorf("invalid pid %d", pid)
	}
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "PID (COMM) STATE PPID PGRP ..."; COMM may contain spaces and
	// parentheses, so split after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return procStat{}, fmt.Errorf("pid %d: process has exited", pid)
	}
	var st procStat
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	if st.pgrp, err = strconv.Atoi(f[2]); err != nil {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	return st, nil
}

// ProcessGroup returns the process group of pid.
func ProcessGroup(pid int) (int, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.pgrp, nil
}

// InGroup reports whether pid is a live process in process group pgid. Any
// error reading its state answers false.
func InGroup(pid, pgid int) bool {
	if pgid <= 0 {
		return false
	}
	g, err := ProcessGroup(pid)
	return err == nil && g == pgid
}

// ErrNotInstance is wrapped by InstanceLeader when a process belongs to no
// instance started by this process.
var ErrNotInstance = errors.New("not a process of an instance started by this process")

// InstanceLeader returns the main process of the instance pid belongs to:
// a direct child of this (Usher's) process that leads its own process group,
// as every instance of this runtime does (on Unix its pid is
// Instance.ProcessGroup). pid belongs to it when it is in that process
// group, or descends from it (children that moved to a group or session of
// their own). Processes orphaned by their parent and so reparented away
// from the instance count only while they stay in its group. It fails,
// wrapping ErrNotInstance, for every other process, Usher itself included.
func InstanceLeader(pid int) (int, error) {
	self := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	// In the group of an instance?
	if st.pgrp > 0 && st.pgrp != self {
		if lst, err := readStat(st.pgrp); err == nil && lst.ppid == self && lst.pgrp == st.pgrp {
			return st.pgrp, nil
		}
	}
	// A descendant of an instance's main process?
	p := pid
	for range maxAncestry {
		if p == self {
			break
		}
		if st.ppid == self {
			if st.pgrp != p {
				return 0, fmt.Errorf("pid %d: child of this process but not a process group leader: %w", p, ErrNotInstance)
			}
			return p, nil
		}
		if st.ppid <= 1 {
			break
		}
		p = st.ppid
		if st, err = readStat(p); err != nil {
			return 0, fmt.Errorf("pid %d: ancestor %d: %w", pid, p, err)
		}
	}
	return 0, fmt.Errorf("pid %d: %w", pid, ErrNotInstance)
}

// maxEnviron bounds how much of /proc/PID/environ Environ reads.
const maxEnviron = 1 << 20

// Environ returns the environment pid started with (or has since written
// over its environment block) as a map; a later duplicate wins. It is the
// process's own claim, not a kernel fact: use it to tell apart processes that
// a kernel fact (InstanceLeader) already vouches for.
func Environ(pid int) (map[string]string, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("invalid pid %d", pid)
	}
	f, err := os.Open(procRoot + "/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnviron+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEnviron {
		return nil, fmt.Errorf("pid %d: environment larger than %d bytes", pid, maxEnviron)
	}
	env := map[string]string{}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte{'='}); ok && len(k) > 0 {
			env[string(k)] = string(v)
		}
	}
	return env, nil
}

// ListensOnPort reports whether the listener that takes TCP connections to
// 127.0.0.1:port (where the runtime probes and the gateway forwards) is a
// process of group pgid's: the listening socket on 127.0.0.1:port or
// 0.0.0.0:port when there is one (an IPv4 socket takes IPv4 connections
// before a dual-stack [::] one could), else the one on [::]:port. A
// listener elsewhere (::1, or an IPv6-only [::]) vouches for nothing: it
// leaves 127.0.0.1:port to another program. A socket of another user, or
// one held by no process of the group, answers false.
func ListensOnPort(pgid int, port uint16) bool {
	ipv4Found := false
	for _, addr := range []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv4Unspecified()} {
		found, ours := listenerOf(pgid, addr, port)
		if found && !ours {
			return false
		}
		ipv4Found = ipv4Found || found
	}
	if ipv4Found {
		return true
	}
	_, ours := listenerOf(pgid, netip.IPv6Unspecified(), port)
	return ours
}

// listenerOf tells whether a listening socket on addr:port exists (or
// cannot be ruled out: another user's, an unreadable table), and whether a
// process of group pgid holds it.
func listenerOf(pgid int, addr netip.Addr, port uint16) (found, ours bool) {
	// A listening socket's row has the family's zero remote address.
	remote := netip.IPv4Unspecified()
	if addr.Is6() {
		remote = netip.IPv6Unspecified()
	}
	inode, err := socketInode(netip.AddrPortFrom(addr, port), netip.AddrPortFrom(remote, 0))
	if errors.Is(err, errNoSocket) {
		return false, false
	}
	if err != nil {
		return true, false
	}
	pids, err := socketOwners(inode)
	if err != nil {
		return true, false
	}
	for _, pid := range pids {
		if InGroup(pid, pgid) {
			return true, true
		}
	}
	return true, false
}
