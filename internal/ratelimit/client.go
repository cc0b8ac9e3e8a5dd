package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
)

// Proxies are the operator's trusted reverse proxies (--trusted-proxies):
// only a connection from one of them may name the client in X-Forwarded-For.
type Proxies []netip.Prefix

// ParseProxies reads "CIDR,CIDR,..." (a bare address means just it).
func ParseProxies(s string) (Proxies, error) {
	var out Proxies
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR or address", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR or address", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (ps Proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddress is the address a request is charged to: the connection's
// peer (remoteAddr, "host:port"), unless that peer is a trusted proxy, in
// which case X-Forwarded-For is read right to left past trusted proxies and
// the first address that is not one is the client. Entries a client wrote
// itself sit to the left of what the trusted proxies appended, so they are
// never reached. A malformed entry stops the walk at the last trusted hop.
// ok is false only when remoteAddr itself does not parse.
func (ps Proxies) ClientAddress(remoteAddr string, forwardedFor []string) (addr netip.Addr, ok bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		a, err2 := netip.ParseAddr(remoteAddr)
		if err2 != nil {
			return netip.Addr{}, false
		}
		addr = a
	} else {
		addr = ap.Addr()
	}
	addr = addr.Unmap()
	if len(ps) == 0 || !ps.trusts(addr) {
		return addr, true
	}
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		list := forwardedFor[i]
		for list != "" {
			var entry string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				entry, list = list, ""
			}
			hop, err := netip.ParseAddr(strings.TrimSpace(entry))
			if err != nil {
				return addr, true
			}
			hop = hop.Unmap().WithZone("")
			if !ps.trusts(hop) {
				return hop, true
			}
			addr = hop
		}
	}
	return addr, true
}
