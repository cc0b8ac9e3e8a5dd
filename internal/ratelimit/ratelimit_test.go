package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Limit
		wantErr bool
	}{
		{in: "5", want: Limit{RPS: 5, Burst: 5, TotalRPS: 500, TotalBurst: 500}},
		{in: "0.5,burst=3", want: Limit{RPS: 0.5, Burst: 3, TotalRPS: 50, TotalBurst: 50}},
		{in: "10, burst=20, total=200", want: Limit{RPS: 10, Burst: 20, TotalRPS: 200, TotalBurst: 200}},
		{in: "1,total=1,total-burst=1", want: Limit{RPS: 1, Burst: 1, TotalRPS: 1, TotalBurst: 1}},
		{in: "0.01,burst=7", want: Limit{RPS: 0.01, Burst: 7, TotalRPS: 1, TotalBurst: 7}},
		{in: "", wantErr: true},
		{in: "0", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "NaN", wantErr: true},
		{in: "Inf", wantErr: true},
		{in: "1e7", wantErr: true},
		{in: "5,burst=0", wantErr: true},
		{in: "5,burst=1.5", wantErr: true},
		{in: "5,burst=2,burst=3", wantErr: true},
		{in: "5,bogus=1", wantErr: true},
		{in: "5,burst", wantErr: true},
		{in: "5,total=1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"5", "0.5,burst=3", "10,burst=20,total=200,total-burst=9", "1e6", ",", "5,burst=", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), ErrSyntax.Error()) {
				t.Fatalf("Parse(%q) error %q lacks the syntax prefix", s, err)
			}
			return
		}
		if !l.Enabled() || l.Burst < 1 || l.TotalBurst < 1 || l.TotalRPS < l.RPS || l.RPS > maxRPS || l.TotalRPS > maxRPS {
			t.Fatalf("Parse(%q) = %+v: out of bounds", s, l)
		}
		again, err := Parse(l.String())
		if err != nil || again != l {
			t.Fatalf("Parse(String()) of %+v = %+v, %v", l, again, err)
		}
		New(l) // must not panic
	})
}

func TestLimiterPerAddressAndTotal(t *testing.T) {
	lim := New(Limit{RPS: 1, Burst: 2, TotalRPS: 2, TotalBurst: 3})
	now := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	c := netip.MustParseAddr("192.0.2.3")
	for i := range 2 {
		if ok, _ := lim.Allow(a, now); !ok {
			t.Fatalf("request %d from a within its burst refused", i)
		}
	}
	ok, wait := lim.Allow(a, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third request from a: ok=%v wait=%v, want refused with a wait within 1s", ok, wait)
	}
	if ok, _ := lim.Allow(b, now); !ok {
		t.Fatal("b refused although it sent nothing yet and the total has room")
	}
	// The total burst (3) is spent: c is refused by the overall bucket.
	if ok, _ := lim.Allow(c, now); ok {
		t.Fatal("c allowed beyond the overall burst")
	}
	// After the refill a is served again.
	if ok, _ := lim.Allow(a, now.Add(time.Second)); !ok {
		t.Fatal("a refused after its bucket refilled")
	}
}

func TestLimiterIPv6By64(t *testing.T) {
	lim := New(Limit{RPS: 1, Burst: 1, TotalRPS: 100, TotalBurst: 100})
	now := time.Unix(1000, 0)
	if ok, _ := lim.Allow(netip.MustParseAddr("2001:db8::1"), now); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := lim.Allow(netip.MustParseAddr("2001:db8::ffff:2"), now); ok {
		t.Fatal("another address of the same /64 drew a fresh bucket")
	}
	if ok, _ := lim.Allow(netip.MustParseAddr("2001:db8:0:1::1"), now); !ok {
		t.Fatal("another /64 shared the bucket")
	}
}

// TestLimiterBoundedUnderFlood: a flood of distinct addresses never grows
// the limiter past MaxAddresses.
func TestLimiterBoundedUnderFlood(t *testing.T) {
	lim := New(Limit{RPS: 0.001, Burst: 1, TotalRPS: maxRPS, TotalBurst: maxBurst})
	now := time.Unix(1000, 0)
	for i := range 4 * MaxAddresses {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		lim.Allow(a, now)
	}
	if got := lim.Addresses(); got > MaxAddresses {
		t.Fatalf("Addresses() = %d after a flood, want at most %d", got, MaxAddresses)
	}
}

// fresh64 is the i-th of ever new IPv6 /64s, as an attacker rotating
// through its allocation would draw them.
func fresh64(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
}

// TestLimiterKeepsLimitingUnderChurn: a client being limited stays limited
// while an attacker sends one request each from 100,000 fresh /64s, far
// more than the limiter holds buckets for, whether time stands still or
// moves on; memory stays bounded throughout.
func TestLimiterKeepsLimitingUnderChurn(t *testing.T) {
	// At 0.02 rps the heavy client gets its next token 50 s after its
	// burst. With time moving on (40 s in all), its bucket carries less
	// debt than each fresh one: only its being limiting keeps it.
	for _, step := range []time.Duration{0, 400 * time.Microsecond} {
		t.Run("step="+step.String(), func(t *testing.T) {
			lim := New(Limit{RPS: 0.02, Burst: 2, TotalRPS: maxRPS, TotalBurst: maxBurst})
			start := time.Unix(1000, 0)
			now := start
			heavy := netip.MustParseAddr("2001:db8:aaaa:1::1")
			for range 2 {
				if ok, _ := lim.Allow(heavy, now); !ok {
					t.Fatal("the heavy client's burst was refused")
				}
			}
			if ok, _ := lim.Allow(heavy, now); ok {
				t.Fatal("the heavy client was allowed past its burst")
			}
			for i := range 100_000 {
				now = now.Add(step)
				if ok, _ := lim.Allow(fresh64(i), now); !ok {
					t.Fatalf("fresh /64 number %d refused: its first request", i)
				}
				if i%1000 == 999 {
					if ok, _ := lim.Allow(heavy, now); ok {
						t.Fatalf("after %d fresh /64s the heavy client was allowed again: its bucket was evicted", i+1)
					}
					if n := lim.Addresses(); n > MaxAddresses {
						t.Fatalf("%d buckets after %d fresh /64s, want at most %d", n, i+1, MaxAddresses)
					}
				}
			}
			// It gets its next token in its own time.
			if ok, _ := lim.Allow(heavy, start.Add(50*time.Second)); !ok {
				t.Error("the heavy client was refused after its bucket refilled")
			}
		})
	}
}

// TestLimiterEvictsLeastDebt: when a full shard has no refilled bucket,
// the one to go is a bucket limiting nobody, and among equals the one
// closest to refilled; a limiting bucket goes only when all are limiting.
func TestLimiterEvictsLeastDebt(t *testing.T) {
	s := shard{buckets: map[netip.Addr]bucket{}}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	s.buckets[addr(1)] = bucket{tat: 500, limiting: true}
	s.buckets[addr(2)] = bucket{tat: 300}
	s.buckets[addr(3)] = bucket{tat: 200}
	s.buckets[addr(4)] = bucket{tat: 150, limiting: true}
	s.evictLocked(100)
	if _, ok := s.buckets[addr(3)]; ok || len(s.buckets) != 3 {
		t.Fatalf("after one eviction: %v, want 192.0.2.3 (not limiting, least debt) gone", s.buckets)
	}
	s.evictLocked(100)
	if _, ok := s.buckets[addr(2)]; ok || len(s.buckets) != 2 {
		t.Fatalf("after two evictions: %v, want 192.0.2.2 gone", s.buckets)
	}
	s.evictLocked(100)
	if _, ok := s.buckets[addr(4)]; ok || len(s.buckets) != 1 {
		t.Fatalf("after three evictions: %v, want 192.0.2.4 (limiting, least debt) gone", s.buckets)
	}
	// Refilled buckets all go at once, and nothing else does.
	s.buckets[addr(5)] = bucket{tat: 50}
	s.buckets[addr(6)] = bucket{tat: 100, limiting: true}
	s.evictLocked(100)
	if _, ok := s.buckets[addr(1)]; !ok || len(s.buckets) != 1 {
		t.Fatalf("after sweeping refilled buckets: %v, want only 192.0.2.1", s.buckets)
	}
}

// TestLimiterLimitingFlag: a refusal marks the bucket limiting; the next
// allowed request clears it.
func TestLimiterLimitingFlag(t *testing.T) {
	lim := New(Limit{RPS: 1, Burst: 1, TotalRPS: 100, TotalBurst: 100})
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	get := func() bucket {
		s := &lim.shards[lim.shardOf(a)]
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.buckets[a]
	}
	lim.Allow(a, now)
	if get().limiting {
		t.Fatal("an allowed request marked the bucket limiting")
	}
	if ok, _ := lim.Allow(a, now); ok || !get().limiting {
		t.Fatalf("a refused request: ok=%v limiting=%v, want refused and limiting", ok, get().limiting)
	}
	if ok, _ := lim.Allow(a, now.Add(time.Second)); !ok || get().limiting {
		t.Fatalf("after the refill: ok=%v limiting=%v, want allowed and not limiting", ok, get().limiting)
	}
}

func TestClientAddress(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8, 192.0.2.7, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		proxies Proxies
		remote  string
		xff     []string
		want    string
	}{
		{"no proxies: header ignored", nil, "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"untrusted peer: header ignored", proxies, "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted peer: rightmost untrusted", proxies, "10.1.2.3:5000", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"chain of proxies skipped", proxies, "10.1.2.3:5000", []string{"203.0.113.9, 192.0.2.7", "10.9.9.9"}, "203.0.113.9"},
		{"no header: the proxy itself", proxies, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"all hops trusted: the leftmost", proxies, "10.1.2.3:5000", []string{"10.7.7.7, 192.0.2.7"}, "10.7.7.7"},
		{"ipv6 peer", nil, "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"mapped ipv4 peer", nil, "[::ffff:198.51.100.1]:443", nil, "198.51.100.1"},
		{"ipv6 proxy, ipv6 client", proxies, "[2001:db8:ffff::1]:443", []string{"2001:db8:1::5"}, "2001:db8:1::5"},

		// Entries with ports, as some proxies write them.
		{"ipv4 with port", proxies, "10.1.2.3:5000", []string{"203.0.113.9:41000"}, "203.0.113.9"},
		{"bracketed ipv6 with port", proxies, "10.1.2.3:5000", []string{"[2001:db8:1::5]:41000"}, "2001:db8:1::5"},
		{"bracketed ipv6 without port", proxies, "10.1.2.3:5000", []string{"[2001:db8:1::5]"}, "2001:db8:1::5"},
		{"mapped ipv4 with port", proxies, "10.1.2.3:5000", []string{"[::ffff:203.0.113.9]:80"}, "203.0.113.9"},
		{"proxy hops with ports skipped", proxies, "10.1.2.3:5000", []string{"203.0.113.9:1, 192.0.2.7:2,[2001:db8:ffff::9]:3"}, "203.0.113.9"},
		{"zone dropped", proxies, "10.1.2.3:5000", []string{"[fe80::1%eth0]:80"}, "fe80::1"},
		{"zone that is no interface name", proxies, "10.1.2.3:5000", []string{"[fe80::1% x]:80"}, "10.1.2.3"},
		{"tabs and spaces around entries", proxies, "10.1.2.3:5000", []string{"\t203.0.113.9:80 ,\t10.2.2.2 "}, "203.0.113.9"},
		{"unbracketed ipv6 is an address, not a port", proxies, "10.1.2.3:5000", []string{"2001:db8:1::5:80"}, "2001:db8:1::5:80"},

		// Whatever the walk reaches and cannot parse: the connection's
		// peer is charged, never an entry past it.
		{"garbage", proxies, "10.1.2.3:5000", []string{"garbage, 10.2.2.2"}, "10.1.2.3"},
		{"unknown", proxies, "10.1.2.3:5000", []string{"unknown"}, "10.1.2.3"},
		{"empty entry", proxies, "10.1.2.3:5000", []string{"203.0.113.9,,10.2.2.2"}, "10.1.2.3"},
		{"trailing comma", proxies, "10.1.2.3:5000", []string{"203.0.113.9,"}, "10.1.2.3"},
		{"empty header", proxies, "10.1.2.3:5000", []string{"203.0.113.9", ""}, "10.1.2.3"},
		{"port without address", proxies, "10.1.2.3:5000", []string{":80"}, "10.1.2.3"},
		{"empty port", proxies, "10.1.2.3:5000", []string{"203.0.113.9:"}, "10.1.2.3"},
		{"port out of range", proxies, "10.1.2.3:5000", []string{"203.0.113.9:65536"}, "10.1.2.3"},
		{"signed port", proxies, "10.1.2.3:5000", []string{"203.0.113.9:+80"}, "10.1.2.3"},
		{"two ports", proxies, "10.1.2.3:5000", []string{"203.0.113.9:80:80"}, "10.1.2.3"},
		{"bracketed ipv4", proxies, "10.1.2.3:5000", []string{"[203.0.113.9]:80"}, "10.1.2.3"},
		{"bracketed ipv4 without port", proxies, "10.1.2.3:5000", []string{"[203.0.113.9]"}, "10.1.2.3"},
		{"unclosed bracket", proxies, "10.1.2.3:5000", []string{"[2001:db8:1::5:80"}, "10.1.2.3"},
		{"ipv6 with port, no brackets", proxies, "10.1.2.3:5000", []string{"::ffff:203.0.113.9:80"}, "10.1.2.3"},
		{"two addresses in one entry", proxies, "10.1.2.3:5000", []string{"203.0.113.9 198.51.100.4"}, "10.1.2.3"},
		{"hostname", proxies, "10.1.2.3:5000", []string{"client.example"}, "10.1.2.3"},
		{"quoted, as Forwarded writes it", proxies, "10.1.2.3:5000", []string{`"[2001:db8:1::5]:80"`}, "10.1.2.3"},
		{"other whitespace", proxies, "10.1.2.3:5000", []string{"203.0.113.9\v"}, "10.1.2.3"},
		{"malformed behind a trusted hop", proxies, "10.1.2.3:5000", []string{"bogus:1, 10.2.2.2:80"}, "10.1.2.3"},
		// A client's own entries left of its real address are never read,
		// parsable or not.
		{"client's entries unread", proxies, "10.1.2.3:5000", []string{"garbage, 10.0.0.9:1, 203.0.113.9"}, "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.proxies.ClientAddress(tt.remote, tt.xff)
			if !ok || got.String() != tt.want {
				t.Errorf("ClientAddress(%q, %q) = %v, %v, want %s", tt.remote, tt.xff, got, ok, tt.want)
			}
		})
	}
	if _, ok := proxies.ClientAddress("@", []string{"203.0.113.9"}); ok {
		t.Error("ClientAddress accepted a peer address that does not parse")
	}
	if _, err := ParseProxies("10.0.0.0/33"); err == nil {
		t.Error("ParseProxies accepted a bad CIDR")
	}
	xff := []string{"203.0.113.9:1, [2001:db8:ffff::9]:3"}
	if n := testing.AllocsPerRun(100, func() { proxies.ClientAddress("10.1.2.3:5000", xff) }); n != 0 {
		t.Errorf("ClientAddress allocates %v times per run, want 0", n)
	}
}

// FuzzClientAddress: whatever the peer and the header say, the answer is a
// valid, unmapped address without a zone, and it is either the peer or an
// entry of the header that parsed.
func FuzzClientAddress(f *testing.F) {
	proxies, _ := ParseProxies("10.0.0.0/8,::1")
	for _, seed := range [][2]string{
		{"10.0.0.1:1", "1.2.3.4, 10.0.0.2"},
		{"[::1]:1", "fe80::1%eth0,::1"},
		{"10.0.0.1:1", "1.2.3.4:80, [::1]:443"},
		{"10.0.0.1:1", "[2001:db8::1]:8080"},
		{"10.0.0.1:1", "[2001:db8::1]"},
		{"10.0.0.1:1", "[1.2.3.4]:80,unknown"},
		{"10.0.0.1:1", "1.2.3.4:,,"},
		{"[::ffff:10.0.0.1]:1", "[::ffff:1.2.3.4]:65535"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		a, ok := proxies.ClientAddress(remote, []string{xff})
		if !ok {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("ClientAddress(%q, %q) = %v: not a plain valid address", remote, xff, a)
		}
		peer, _ := proxies.ClientAddress(remote, nil)
		if a == peer {
			return
		}
		for _, entry := range strings.Split(xff, ",") {
			if hop, ok := parseForwardedHop(entry); ok && hop == a {
				return
			}
		}
		t.Fatalf("ClientAddress(%q, %q) = %v: neither the peer %v nor an entry of the header", remote, xff, a, peer)
	})
}

// FuzzClientAddressIgnoresClientEntries: through a trusted proxy, which
// appends the client's real address (with or without a port), nothing the
// client wrote itself to the left changes who is charged.
func FuzzClientAddressIgnoresClientEntries(f *testing.F) {
	proxies, _ := ParseProxies("10.0.0.0/8")
	f.Add("", uint32(0xcb007109), uint16(0), false)
	f.Add("10.0.0.5", uint32(0xcb007109), uint16(443), true)
	f.Add("garbage,,[::1]:80", uint32(0xc6336401), uint16(1), true)
	f.Add("1.2.3.4:99999, ", uint32(0x01020304), uint16(80), false)
	f.Fuzz(func(t *testing.T, written string, client uint32, port uint16, withPort bool) {
		real := netip.AddrFrom4([4]byte{byte(client >> 24), byte(client >> 16), byte(client >> 8), byte(client)})
		if proxies.Trusts(real) {
			return
		}
		appended := real.String()
		if withPort {
			appended = netip.AddrPortFrom(real, port).String()
		}
		xff := appended
		if written != "" {
			xff = written + ", " + appended
		}
		if got, ok := proxies.ClientAddress("10.0.0.1:5000", []string{xff}); !ok || got != real {
			t.Fatalf("client wrote %q, proxy appended %s: charged %v, want %v", written, appended, got, real)
		}
		// The same through a second trusted proxy, on its own header line.
		if got, ok := proxies.ClientAddress("10.0.0.1:5000", []string{xff, "10.0.0.2:80"}); !ok || got != real {
			t.Fatalf("client wrote %q, proxies appended %s, 10.0.0.2:80: charged %v, want %v", written, appended, got, real)
		}
	})
}

// FuzzParseForwardedHop: an entry that parses held exactly one address, and
// comes back as a plain valid one.
func FuzzParseForwardedHop(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4:80", "[::1]:80", "[::1]", "::1", " 1.2.3.4\t", "[fe80::1%eth0]:1", "1.2.3.4,5.6.7.8", "[1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseForwardedHop(s)
		if !ok {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("parseForwardedHop(%q) = %v: not a plain valid address", s, a)
		}
		if strings.ContainsAny(s, ", \"\r\n\v\f") && strings.ContainsAny(trimOWS(s), ", \"\r\n\v\f") {
			t.Fatalf("parseForwardedHop(%q) accepted a list, quotes or inner whitespace", s)
		}
	})
}

func BenchmarkAllow(b *testing.B) {
	lim := New(Limit{RPS: maxRPS, Burst: maxBurst, TotalRPS: maxRPS, TotalBurst: maxBurst})
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		lim.Allow(a, now)
	}
}

// BenchmarkAllowChurn is a flood of ever new addresses: every request past
// the first MaxAddresses makes room in a full shard.
func BenchmarkAllowChurn(b *testing.B) {
	lim := New(Limit{RPS: 0.001, Burst: 1, TotalRPS: maxRPS, TotalBurst: maxBurst})
	now := time.Now()
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		i++
		a := netip.AddrFrom16([16]byte{0x20, 0x01, byte(i >> 40), byte(i >> 32), byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 1})
		lim.Allow(a, now)
	}
}

// BenchmarkClientAddress reads a client's address from a trusted proxy's
// X-Forwarded-For.
func BenchmarkClientAddress(b *testing.B) {
	proxies, _ := ParseProxies("10.0.0.0/8")
	xff := []string{"203.0.113.9, 10.0.0.2"}
	b.ReportAllocs()
	for b.Loop() {
		proxies.ClientAddress("10.0.0.1:443", xff)
	}
}
