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
	return ParseCIDRs("--trusted-proxies", s)
}

// ParseCIDRs reads "CIDR,CIDR,..." (a bare address means just it), naming
// flag in its errors.
func ParseCIDRs(flag, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR or address", flag, f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR or address", flag, f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Trusts reports whether a is one of the trusted proxies.
func (ps Proxies) Trusts(a netip.Addr) bool {
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
// never reached. An entry is an address, or an address with a port as some
// proxies write it ("192.0.2.1:5000", "[2001:db8::1]:5000"; see
// parseForwardedHop). Should an entry the walk reaches not parse, the
// request is charged to the connection's peer: the header is not believed
// at all, rather than stopping at an entry someone may have placed. ok is
// false only when remoteAddr itself does not parse.
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
	peer := addr.Unmap().WithZone("")
	if len(ps) == 0 || !ps.Trusts(peer) {
		return peer, true
	}
	addr = peer
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		list := forwardedFor[i]
		for {
			var entry string
			j := strings.LastIndexByte(list, ',')
			if j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				entry = list
			}
			hop, ok := parseForwardedHop(entry)
			if !ok {
				return peer, true
			}
			if !ps.Trusts(hop) {
				return hop, true
			}
			addr = hop
			if j < 0 {
				break
			}
		}
	}
	return addr, true
}

// parseForwardedHop reads one X-Forwarded-For entry, strictly: optional
// spaces or tabs around one of "ADDR" (IPv4, or IPv6 with an optional zone),
// "IPv4:PORT", "[IPv6]:PORT" or "[IPv6]", PORT being 1 to 5 digits up to
// 65535 and a zone letters, digits, '.', '_' or '-'. Anything else, an empty entry included, does not parse. An
// unbracketed IPv6 address is read whole: "2001:db8::1:80" is that address,
// not a port, as the brackets rule has it. The form is told by its syntax
// before any address is parsed, so that a well-formed entry costs no
// allocation (a failed netip parse allocates its error). The address comes
// back unmapped and without a zone.
func parseForwardedHop(s string) (netip.Addr, bool) {
	s = trimOWS(s)
	var host string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 || (end+1 < len(s) && !(s[end+1] == ':' && validPort(s[end+2:]))) {
			return netip.Addr{}, false
		}
		host = s[1:end]
		if !strings.Contains(host, ":") { // IPv4 inside brackets
			return netip.Addr{}, false
		}
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		if !validPort(s[i+1:]) {
			return netip.Addr{}, false
		}
		host = s[:i]
		if strings.Contains(host, "%") { // only IPv6 has zones; this is IPv4
			return netip.Addr{}, false
		}
	default:
		host = s
	}
	if i := strings.IndexByte(host, '%'); i >= 0 && !validZone(host[i+1:]) {
		return netip.Addr{}, false // netip takes any bytes as a zone
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// validZone reports whether s is a plausible interface name (eth0,
// en0.100, wlp2s0-x).
func validZone(s string) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validPort reports whether s is a port: 1 to 5 ASCII digits, at most 65535.
func validPort(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n <= 65535
}

// trimOWS strips the optional whitespace HTTP allows around list elements
// (spaces and tabs), and nothing else.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
