package process

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Egress as a container has it, for Usher running as root: each sandboxed
// instance gets one end of a veth pair as eth0 with a /30 of egressNet and a
// default route to the other end, which stays on the host; the host
// masquerades what leaves by any other interface. Netfilter rules (a table of
// Usher's own, inet family, so IPv6 is covered too) keep the rest of the
// sandbox's promises:
//
//   - input from an instance's veth is dropped: the host itself, on any of its
//     addresses, is out of reach (the relays do not need it: they run inside
//     the instance's namespace and dial the host's loopback from there);
//   - forwarding from one instance veth to another is dropped, and so is
//     forwarding to Docker's bridges (other services' containers), to
//     link-local addresses (a cloud's metadata server hands out the machine's
//     own credentials) and all of IPv6 (instances get only IPv4);
//   - nothing may open a connection into an instance over its veth: only
//     replies go that way.
//
// Where Docker has set the forward policy to drop, accept rules for the
// instances' veths go first in its DOCKER-USER chain (the chain Docker
// leaves to its users), in iptables' own encoding, tagged with a comment
// naming this process. Tables and tagged rules of Usher processes that are
// gone are removed at start (by pid: a Usher in another PID namespace
// sharing this network namespace would look gone).

const (
	// vethHostPrefix starts the host end's name: "usv" and the instance id
	// (12 hex digits) fill IFNAMSIZ.
	vethHostPrefix = "usv"
	// vethPrivatePrefix marks an instance allowed into private networks
	// too (Sandbox.EgressPrivate): "usvP" and 11 digits of its id. The id's
	// digits are lowercase hex, so no internet-only instance's name starts
	// so.
	vethPrivatePrefix = "usvP"
	egressTablePrefix = "usher-egress-"
	egressLockPath    = "/run/usher-egress.lock"
)

// egressNet is where instances' veth pairs are numbered, a /30 each (the
// host end .1, the instance .2): 16384 instances per machine.
var egressNet = netip.MustParsePrefix("10.201.0.0/16")

// egress is the host's side of instance egress, one per process (the rules
// are the same for every runtime in it); runtimes share it by reference
// count.
type egress struct {
	// mu with the lock file serializes numbering across runtimes and Usher
	// processes (flock does not between goroutines sharing the file).
	mu   sync.Mutex
	lock *os.File
	refs int
	err  error
	// stopWatch ends watchEgressRules.
	stopWatch chan struct{}
}

var sharedEgress egress

// acquireEgress sets the host up for egress the first time it is asked for.
func acquireEgress() (*egress, error) {
	e := &sharedEgress
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refs == 0 {
		e.err = e.setupLocked()
	}
	if e.err != nil {
		return nil, e.err
	}
	e.refs++
	return e, nil
}

// release removes this process's rules when its last runtime is closed.
func (e *egress) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refs--; e.refs > 0 {
		return
	}
	if e.stopWatch != nil {
		close(e.stopWatch)
		e.stopWatch = nil
	}
	removeEgressRules(func(pid int) bool { return pid == os.Getpid() })
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
}

func (e *egress) setupLocked() error {
	lock, err := os.OpenFile(egressLockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("egress lock: %w", err)
	}
	e.lock = lock
	removeEgressRules(func(pid int) bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return errors.Is(err, os.ErrNotExist)
	})
	if err := installEgressRules(); err != nil {
		lock.Close()
		e.lock = nil
		return err
	}
	// Forwarding only once the rules that confine it are in place.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0); err != nil {
		removeEgressRules(func(pid int) bool { return pid == os.Getpid() })
		lock.Close()
		e.lock = nil
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	e.stopWatch = make(chan struct{})
	go watchEgressRules(e.stopWatch)
	return nil
}

// egressCheckInterval is how often the rules are checked for.
const egressCheckInterval = 2 * time.Second

// watchEgressRules puts the rules back when something removed them (a
// firewall reload, `nft flush ruleset`): without them instances would
// reach the host, each other and the LAN. It checks until stop closes.
func watchEgressRules(stop <-chan struct{}) {
	t := time.NewTicker(egressCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c, err := nftables.New()
		if err != nil {
			continue
		}
		if _, err := c.ListTableOfFamily(egressTag(), nftables.TableFamilyINet); err == nil {
			continue
		}
		sharedEgress.mu.Lock()
		select {
		case <-stop:
		default:
			err := installEgressRules()
			slog.Error("instance egress rules were removed from the host's firewall; put back", "table", egressTag(), "err", err)
		}
		sharedEgress.mu.Unlock()
	}
}

func egressTag() string { return egressTablePrefix + strconv.Itoa(os.Getpid()) }

// pidOfTag parses the pid out of a table name or rule comment.
func pidOfTag(s string) (int, bool) {
	p, ok := strings.CutPrefix(s, egressTablePrefix)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	return pid, err == nil
}

// Expression builders, in nft's own encoding.

// ifName compares an interface name (key: iifname or oifname). Without the
// NUL that ends a whole name, name is compared as a prefix: "usv" is nft's
// "usv*".
func ifName(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(name)},
	}
}

func isIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func isIPv6() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
	}
}

// ipIn matches the IPv4 source (offset 12) or destination (16) in p.
func ipIn(offset uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	addr := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
	}
}

func replies() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func rule(verdict expr.VerdictKind, parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, &expr.Verdict{Kind: verdict})
}

var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

// privateNets are the IPv4 ranges that are not the internet: private
// networks (the LAN, other hosts' containers and VMs), carrier-grade NAT,
// this network, loopback, IETF protocol assignments, benchmarking,
// multicast and reserved. Instances reach them only with
// Sandbox.EgressPrivate, as Cloud Run reaches a VPC only through a
// connector.
var privateNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

func installEgressRules() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	fromInstance := ifName(expr.MetaKeyIIFNAME, expr.CmpOpEq, vethHostPrefix)
	toInstance := ifName(expr.MetaKeyOIFNAME, expr.CmpOpEq, vethHostPrefix)
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: egressTag()})
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: rule(expr.VerdictDrop, fromInstance)})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	for _, r := range [][]expr.Any{
		rule(expr.VerdictDrop, fromInstance, toInstance),
		rule(expr.VerdictDrop, fromInstance, ifName(expr.MetaKeyOIFNAME, expr.CmpOpEq, "docker0\x00")),
		rule(expr.VerdictDrop, fromInstance, ifName(expr.MetaKeyOIFNAME, expr.CmpOpEq, "br-")),
		rule(expr.VerdictDrop, fromInstance, isIPv4(), ipIn(16, linkLocal)),
		rule(expr.VerdictDrop, fromInstance, isIPv6()),
	} {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
	internetOnly := append(append([]expr.Any{}, fromInstance...), ifName(expr.MetaKeyIIFNAME, expr.CmpOpNeq, vethPrivatePrefix)...)
	for _, p := range privateNets {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: rule(expr.VerdictDrop, internetOnly, isIPv4(), ipIn(16, p))})
	}
	for _, r := range [][]expr.Any{
		rule(expr.VerdictAccept, toInstance, replies()),
		rule(expr.VerdictDrop, toInstance),
	} {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
	nat := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	masq := append(append(append(isIPv4(), ipIn(12, egressNet)...),
		ifName(expr.MetaKeyOIFNAME, expr.CmpOpNeq, vethHostPrefix)...), &expr.Masq{})
	c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: masq})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install table %s: %w", egressTag(), err)
	}
	// Docker's forward policy drops what its own rules do not accept. The
	// chain is iptables-nft's: the rules are encoded as iptables would
	// (`-i usv+ -m comment --comment usher-egress-PID -j ACCEPT`), or
	// iptables, and so Docker, could no longer read it. What comes back to
	// an instance needs no conntrack match here: this table's forward
	// chain lets only replies through.
	if ch := dockerUserChain(c); ch != nil {
		for _, match := range [][]expr.Any{fromInstance, toInstance} {
			comment := xt.Comment(egressTag())
			exprs := append(append([]expr.Any{}, match...), &expr.Match{Name: "comment", Rev: 0, Info: &comment},
				&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})
			c.InsertRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: exprs})
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: accept instances in %s: %w", ch.Name, err)
		}
	}
	return nil
}

// ruleTag is the usher-egress-PID comment of a rule, as iptables or nft
// writes it, or "".
func ruleTag(r *nftables.Rule) string {
	if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
		return s
	}
	for _, e := range r.Exprs {
		if m, ok := e.(*expr.Match); ok && m.Name == "comment" {
			if c, ok := m.Info.(*xt.Comment); ok {
				return string(*c)
			}
		}
	}
	return ""
}

// dockerUserChain finds Docker's DOCKER-USER chain (iptables-nft), if any.
func dockerUserChain(c *nftables.Conn) *nftables.Chain {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil
	}
	for _, ch := range chains {
		if ch.Table.Name == "filter" && ch.Name == "DOCKER-USER" {
			return ch
		}
	}
	return nil
}

// removeEgressRules deletes the tables and tagged rules of the Usher
// processes gone says are gone. Best effort: leftovers only duplicate rules.
func removeEgressRules(gone func(pid int) bool) {
	c, err := nftables.New()
	if err != nil {
		return
	}
	if tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err == nil {
		for _, t := range tables {
			if pid, ok := pidOfTag(t.Name); ok && gone(pid) {
				c.DelTable(t)
			}
		}
	}
	if ch := dockerUserChain(c); ch != nil {
		if rules, err := c.GetRules(ch.Table, ch); err == nil {
			for _, r := range rules {
				if pid, ok := pidOfTag(ruleTag(r)); ok && gone(pid) {
					c.DelRule(r)
				}
			}
		}
	}
	_ = c.Flush()
}

// egressLink is an instance's veth pair, by its host end.
type egressLink struct{ host string }

// attach gives the instance whose network namespace is ns an eth0 with a
// default route through the host.
func (e *egress) attach(ns *netns, id string, private bool) (*egressLink, error) {
	hostName := vethHostPrefix + id
	if private {
		hostName = vethPrivatePrefix + id
	}
	if len(hostName) > unix.IFNAMSIZ-1 {
		hostName = hostName[:unix.IFNAMSIZ-1]
	}
	hostAddr, err := e.addLink(ns, hostName)
	if err != nil {
		return nil, err
	}
	link := &egressLink{host: hostName}
	if err := configureInside(ns, hostAddr); err != nil {
		link.remove()
		return nil, err
	}
	return link, nil
}

// addLink numbers and creates the pair under the lock: the address on the
// host end is what tells other Usher processes the /30 is taken.
func (e *egress) addLink(ns *netns, hostName string) (netip.Addr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := unix.Flock(int(e.lock.Fd()), unix.LOCK_EX); err != nil {
		return netip.Addr{}, fmt.Errorf("egress lock: %w", err)
	}
	defer unix.Flock(int(e.lock.Fd()), unix.LOCK_UN)
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("egress: list addresses: %w", err)
	}
	used := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && egressNet.Contains(ip) {
			used[netip.PrefixFrom(ip, 30).Masked().Addr()] = true
		}
	}
	var hostAddr netip.Addr
	for base := egressNet.Addr(); egressNet.Contains(base); {
		if !used[base] {
			hostAddr = base.Next()
			break
		}
		b := base.As4()
		n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + 4
		base = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
	if !hostAddr.IsValid() {
		return netip.Addr{}, fmt.Errorf("egress: no free address in %s", egressNet)
	}
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns.f.Fd()))}
	if err := netlink.LinkAdd(veth); err != nil {
		return netip.Addr{}, fmt.Errorf("egress: add veth %s: %w", hostName, err)
	}
	host, err := netlink.LinkByName(hostName)
	if err == nil {
		err = netlink.AddrAdd(host, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(hostAddr, 30))})
	}
	if err == nil {
		err = netlink.LinkSetUp(host)
	}
	if err != nil {
		(&egressLink{host: hostName}).remove()
		return netip.Addr{}, fmt.Errorf("egress: set up %s: %w", hostName, err)
	}
	return hostAddr, nil
}

// configureInside numbers eth0 in the instance's namespace (hostAddr's
// neighbour) and routes everything through the host end.
func configureInside(ns *netns, hostAddr netip.Addr) error {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(int(ns.f.Fd())))
	if err != nil {
		return fmt.Errorf("egress: netlink in the instance: %w", err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err == nil {
		err = h.AddrAdd(eth, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(hostAddr.Next(), 30))})
	}
	if err == nil {
		err = h.LinkSetUp(eth)
	}
	if err == nil {
		err = h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: hostAddr.AsSlice()})
	}
	if err != nil {
		return fmt.Errorf("egress: eth0: %w", err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// remove deletes the pair (both ends) at once, so its /30 is free again;
// it is gone already when the namespace went first.
func (l *egressLink) remove() {
	if link, err := netlink.LinkByName(l.host); err == nil {
		_ = netlink.LinkDel(link)
	}
}
