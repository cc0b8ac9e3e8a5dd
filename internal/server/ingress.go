package server

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/docker"
	"github.com/usher-run/usher/internal/runtime/process"
)

// Which connections come from Usher's own instances, for services whose
// ingress is internal (gateway/ingress.go):
//
//   - a sandboxed process instance reaches the gateway through Usher's
//     relay, which dials from a loopback address unique to the instance
//     (process.Runtime.InstanceAt). Any local process could bind that
//     address, so the connection counts only once the kernel says Usher
//     itself holds its client end (process.PeerPIDs), checked once per
//     connection, on its first request to an internal service, never on the
//     accept loop nor again on later requests;
//   - a container reaches it from its container IP, which the Docker
//     runtime records (docker.Runtime.InstanceAt) where it addresses
//     containers directly; Usher's containers cannot forge their source
//     address (no NET_RAW).
//
// Unsandboxed process instances connect from 127.0.0.1 like any local
// process and are not told apart (the operator may list 127.0.0.1 in
// --internal-cidrs, which admits every local process).

// relayCheck is the per-connection verdict on a connection from a
// sandboxed instance's relay address, reached once.
type relayCheck struct {
	once          sync.Once
	local, remote netip.AddrPort
	relayed       bool
}

type relayCheckKey struct{}

func (c *relayCheck) fromRelay() bool {
	c.once.Do(func() {
		pids, err := process.PeerPIDs(c.local, c.remote)
		if err != nil {
			return
		}
		self := os.Getpid()
		for _, pid := range pids {
			if pid != self {
				return
			}
		}
		c.relayed = true
	})
	return c.relayed
}

// relayedConns is http.Server.ConnContext: a connection from the address
// of a live sandboxed instance gets a relayCheck (nothing else does; the
// check itself waits for a request that needs it).
func relayedConns(rts runtime.ByImage) func(ctx context.Context, c net.Conn) context.Context {
	p, _ := rts.Process.(*process.Runtime)
	if p == nil {
		return nil
	}
	if sandboxed, _ := p.Sandboxed(); !sandboxed {
		return nil
	}
	return func(ctx context.Context, c net.Conn) context.Context {
		remote, ok1 := addrPort(c.RemoteAddr())
		local, ok2 := addrPort(c.LocalAddr())
		if !ok1 || !ok2 {
			return ctx
		}
		if _, ok := p.InstanceAt(remote.Addr()); !ok {
			return ctx
		}
		return context.WithValue(ctx, relayCheckKey{}, &relayCheck{local: local, remote: remote})
	}
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	t, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := t.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// fromInstance is gateway.Config.FromInstance.
func fromInstance(rts runtime.ByImage) gateway.FromInstanceFunc {
	p, _ := rts.Process.(*process.Runtime)
	d, _ := rts.Docker.(*docker.Runtime)
	direct := d != nil && d.DirectAddressing()
	return func(ctx context.Context, addr netip.Addr) bool {
		if p != nil {
			if c, ok := ctx.Value(relayCheckKey{}).(*relayCheck); ok {
				if _, live := p.InstanceAt(addr); live && c.remote.Addr() == addr && c.fromRelay() {
					return true
				}
			}
		}
		if direct {
			if _, live := d.InstanceAt(addr); live {
				return true
			}
		}
		return false
	}
}
