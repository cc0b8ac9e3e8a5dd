//go:build !linux

package process

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	goruntime "runtime"

	"github.com/usher-run/usher/internal/runtime"
)

// SandboxInit does nothing: there is no sandbox on this system.
func SandboxInit() {}

func sandboxAvailable() error {
	return fmt.Errorf("%w: no namespaces on %s", ErrNoSandbox, goruntime.GOOS)
}

type userNS struct{ UID, GID int }

func sandboxCmd(cmd *exec.Cmd, program *os.File, uns *userNS) (cfgW, statusR *os.File, ctl *net.UnixConn, err error) {
	return nil, nil, nil, sandboxAvailable()
}

type initControl struct{ c *net.UnixConn }

func (ic *initControl) relays(n int) ([]net.Listener, error) { return nil, sandboxAvailable() }

func (ic *initControl) dial(ctx context.Context) (net.Conn, error) { return nil, sandboxAvailable() }

func (ic *initControl) Close() error { return nil }

func startPasta(pasta string, pid int) (*exec.Cmd, error) { return nil, sandboxAvailable() }

func closeAfterStart(cmd *exec.Cmd) {}

type initConfig struct {
	Args     []string
	Env      []string
	UID, GID int
	Hide     []string
	Image    string
	Dir      string
	Volumes  []runtime.Volume

	UserNS    bool
	Relay     []string
	Local     []netip.Addr
	Port      int
	WaitRoute bool
}

type netns struct{}

func openNetns(pid int) (*netns, error) { return nil, sandboxAvailable() }

func (ns *netns) Close() error { return nil }

func (ns *netns) dial(ctx context.Context, addr string) (net.Conn, error) {
	return nil, sandboxAvailable()
}

func (ns *netns) relay(reach []string, local []netip.Addr, src netip.Addr) ([]net.Listener, error) {
	return nil, sandboxAvailable()
}

func sandboxExitError(status *os.File, ps *os.ProcessState) *runtime.ExitError {
	return exitError(ps)
}

func absPaths(paths []string) []string { return paths }

type egress struct{}

func acquireEgress() (*egress, error) { return nil, sandboxAvailable() }

func (e *egress) release() {}

type egressLink struct{}

func (e *egress) attach(ns *netns, id string) (*egressLink, error) { return nil, sandboxAvailable() }

func (l *egressLink) remove() {}

type cgroupSet struct{}

type limits struct{ memory, milliCPUs, pids int64 }

type instanceCgroup struct{}

func findCgroups() (*cgroupSet, error) { return nil, sandboxAvailable() }

func (s *cgroupSet) create(id string, lim limits) (*instanceCgroup, error) {
	return nil, sandboxAvailable()
}

func (g *instanceCgroup) add(pid int) error { return sandboxAvailable() }

func (g *instanceCgroup) remove() {}

func serveRelay(ln net.Listener, target string, src netip.Addr) {}

func hostTarget(addr string) string { return addr }

func relayLocalAddrs(reach []string) []netip.Addr { return nil }

func (g *instanceCgroup) usage() (runtime.Usage, error) { return runtime.Usage{}, sandboxAvailable() }
