// Package remotehost makes "another machine" for tests that need one
// outside the host, such as the egress tests of sandboxed instances: a
// network namespace joined to the host by a veth pair, routed like a
// neighbour on a LAN, with an HTTP server that answers with the address it
// was reached from. Traffic to it never leaves this machine.
//
// It needs root (Linux) and must never be imported outside tests.
package remotehost

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is the other machine.
type Host struct {
	// Addr is its HTTP server, IP:PORT. GET / answers the client's IP as
	// the server saw it.
	Addr string
	// Local is the host's own address on the link: the source of what the
	// host forwards there with NAT.
	Local netip.Addr

	ns     netns.NsHandle
	link   string
	remote netip.Addr
}

// Alias makes the host answer at ip too (same port), routed from the host
// through the link, for the test's life: a test can stand in for an
// address that must never be reached (a cloud's metadata server at
// 169.254.169.254) without any packet leaving the machine if it is.
func (h *Host) Alias(t testing.TB, ip netip.Addr) string {
	t.Helper()
	nh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		t.Fatalf("remotehost: netlink inside: %v", err)
	}
	defer nh.Close()
	eth, err := nh.LinkByName("eth0")
	if err == nil {
		err = nh.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}})
	}
	if err != nil {
		t.Fatalf("remotehost: alias %s: %v", ip, err)
	}
	hostEnd, err := netlink.LinkByName(h.link)
	if err != nil {
		t.Fatal(err)
	}
	route := &netlink.Route{LinkIndex: hostEnd.Attrs().Index, Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Gw: h.remote.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		t.Fatalf("remotehost: route to %s: %v", ip, err)
	}
	t.Cleanup(func() { netlink.RouteDel(route) })
	_, port, _ := net.SplitHostPort(h.Addr)
	return net.JoinHostPort(ip.String(), port)
}

// linkNet is where the links are numbered, a random /30 each.
var linkNet = netip.MustParsePrefix("10.202.0.0/16")

// Start makes a Host; it is gone when the test ends.
func Start(t testing.TB) *Host {
	t.Helper()
	var (
		ns  netns.NsHandle
		ln  net.Listener
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked: the thread dies with the goroutine
		ns, err = netns.New()
		if err != nil {
			return
		}
		// A socket stays in the namespace it was made in.
		ln, err = net.Listen("tcp4", "0.0.0.0:0")
	}()
	<-done
	if err != nil {
		t.Fatalf("remotehost: namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, ip)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var b [3]byte
	rand.Read(b[:])
	name := "uxt" + hex.EncodeToString(b[:])
	local, err := pickLocal(b)
	if err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		t.Fatalf("remotehost: veth: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	hostEnd, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.AddrAdd(hostEnd, addr(local))
	}
	if err == nil {
		err = netlink.LinkSetUp(hostEnd)
	}
	if err != nil {
		t.Fatalf("remotehost: host end: %v", err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("remotehost: netlink inside: %v", err)
	}
	defer h.Close()
	remote := local.Next()
	for _, ifname := range []string{"lo", "eth0"} {
		l, err := h.LinkByName(ifname)
		if err == nil && ifname == "eth0" {
			err = h.AddrAdd(l, addr(remote))
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("remotehost: %s inside: %v", ifname, err)
		}
	}
	return &Host{
		Addr:   netip.AddrPortFrom(remote, uint16(ln.Addr().(*net.TCPAddr).Port)).String(),
		Local:  local,
		ns:     ns,
		link:   name,
		remote: remote,
	}
}

// pickLocal picks a /30 of linkNet no address of the host is in, from the
// random seed b, and returns its first host address.
func pickLocal(b [3]byte) (netip.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("remotehost: addresses: %w", err)
	}
	base := linkNet.Addr().As4()
	for i := range 1 << 14 {
		n := (uint32(b[0])<<8 | uint32(b[1]) + uint32(i)) % (1 << 14)
		cand := netip.AddrFrom4([4]byte{base[0], base[1], byte(n >> 6), byte(n<<2) + 1})
		taken := false
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && netip.PrefixFrom(cand, 30).Masked().Contains(ip) {
				taken = true
			}
		}
		if !taken {
			return cand, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("remotehost: no free /30 in %s", linkNet)
}

func addr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(30, 32)}}
}
