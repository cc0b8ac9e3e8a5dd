// Package ratelimit keeps anonymous callers of a public service from costing
// more than its owner allows: a token bucket per client address plus one for
// the service as a whole, both written as GCRA (a single "theoretical arrival
// time" per bucket), so that a bucket is one int64.
//
// It never allocates on the request path once an address has a bucket, never
// takes a lock shared by all addresses (per-address buckets live in 64
// shards, picked by a hash keyed per limiter; the overall bucket is a
// compare-and-swap), and never holds more than MaxAddresses buckets per
// service however many distinct addresses flood it. When a shard is full,
// the buckets that carry the least are evicted first (refilled ones, then
// those not limiting anyone, then the limiting ones closest to refilled), so
// that an attacker drawing fresh buckets from ever new addresses cannot
// reset the bucket of a client being limited. It does no I/O and knows
// nothing of HTTP.
package ratelimit

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is an anonymous rate limit as the service annotation states it: per
// client address, RPS requests a second with bursts of Burst; and for all
// anonymous callers together, TotalRPS with bursts of TotalBurst. The zero
// Limit means "no limit".
type Limit struct {
	RPS        float64
	Burst      int
	TotalRPS   float64
	TotalBurst int
}

// Bounds on what the annotation may say: beyond them a limit no longer
// limits anything a single node could serve.
const (
	maxRPS   = 1e6
	maxBurst = 1_000_000
	// totalFactor makes the default overall rate: a hundred addresses at
	// their full rate.
	totalFactor = 100
)

// ErrSyntax prefixes every parse error.
var ErrSyntax = errors.New("ratelimit: want RPS[,burst=N][,total=RPS][,total-burst=N]")

// Enabled reports whether l limits anything.
func (l Limit) Enabled() bool { return l.RPS > 0 }

// Parse reads the annotation's value: "RPS[,burst=N][,total=RPS][,total-burst=N]",
// e.g. "5", "0.5,burst=3", "10,burst=20,total=200". Burst defaults to
// ceil(RPS) (at least 1); total to 100×RPS; total-burst to total rounded
// up, at least burst.
func Parse(s string) (Limit, error) {
	parts := strings.Split(s, ",")
	var l Limit
	var err error
	if l.RPS, err = parseRate(strings.TrimSpace(parts[0])); err != nil {
		return Limit{}, fmt.Errorf("%w: rate %q: %v", ErrSyntax, parts[0], err)
	}
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || seen[k] {
			return Limit{}, fmt.Errorf("%w: bad or repeated option %q", ErrSyntax, p)
		}
		seen[k] = true
		switch k {
		case "burst":
			l.Burst, err = parseBurst(v)
		case "total":
			l.TotalRPS, err = parseRate(v)
		case "total-burst":
			l.TotalBurst, err = parseBurst(v)
		default:
			err = errors.New("unknown option")
		}
		if err != nil {
			return Limit{}, fmt.Errorf("%w: %s=%q: %v", ErrSyntax, k, v, err)
		}
	}
	if l.Burst == 0 {
		l.Burst = max(1, int(math.Ceil(l.RPS)))
	}
	if l.TotalRPS == 0 {
		l.TotalRPS = min(maxRPS, l.RPS*totalFactor)
	}
	if l.TotalBurst == 0 {
		l.TotalBurst = min(maxBurst, max(l.Burst, int(math.Ceil(l.TotalRPS))))
	}
	if l.TotalRPS < l.RPS {
		return Limit{}, fmt.Errorf("%w: total (%g) is below the per-address rate (%g)", ErrSyntax, l.TotalRPS, l.RPS)
	}
	return l, nil
}

func parseRate(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
		return 0, errors.New("not a number")
	case v < 0.001 || v > maxRPS:
		return 0, fmt.Errorf("must be from 0.001 to %g requests a second", float64(maxRPS))
	}
	return v, nil
}

func parseBurst(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > maxBurst {
		return 0, fmt.Errorf("must be a whole number from 1 to %d", maxBurst)
	}
	return v, nil
}

// String is the canonical annotation value; Parse(l.String()) == l.
func (l Limit) String() string {
	if !l.Enabled() {
		return ""
	}
	return fmt.Sprintf("%s,burst=%d,total=%s,total-burst=%d",
		strconv.FormatFloat(l.RPS, 'g', -1, 64), l.Burst, strconv.FormatFloat(l.TotalRPS, 'g', -1, 64), l.TotalBurst)
}

// MaxAddresses bounds the per-address buckets one Limiter keeps.
const MaxAddresses = shards * perShard

const (
	shards   = 64
	perShard = 256
)

// Limiter enforces one Limit. The zero value is unusable; use New.
type Limiter struct {
	limit Limit
	// interval and tolerance are the per-address GCRA parameters; total*
	// those of the overall bucket (nanoseconds).
	interval, tolerance           int64
	totalInterval, totalTolerance int64
	totalTAT                      atomic.Int64
	// seed keys the shard hash, so that nobody outside can tell which
	// addresses share a shard and crowd one client's shard on purpose.
	seed   maphash.Seed
	shards [shards]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]bucket
}

// bucket is one address's state.
type bucket struct {
	// tat is the theoretical arrival time (unix nanoseconds): the bucket
	// is full again once it has passed.
	tat int64
	// limiting: the address's last request was refused. It says the bucket
	// is holding someone back right now, which eviction honours.
	limiting bool
}

// evictsBefore reports whether b is to go before o when a shard needs room:
// a bucket that is not limiting anyone before one that is, and then the one
// that refills first, whose address gains the least by losing it.
func (b bucket) evictsBefore(o bucket) bool {
	if b.limiting != o.limiting {
		return !b.limiting
	}
	return b.tat < o.tat
}

// New returns a limiter enforcing l (which must be Enabled).
func New(l Limit) *Limiter {
	lim := &Limiter{limit: l}
	lim.interval = int64(float64(time.Second) / l.RPS)
	lim.tolerance = lim.interval * int64(l.Burst)
	lim.totalInterval = int64(float64(time.Second) / l.TotalRPS)
	lim.totalTolerance = lim.totalInterval * int64(l.TotalBurst)
	lim.seed = maphash.MakeSeed()
	for i := range lim.shards {
		lim.shards[i].buckets = make(map[netip.Addr]bucket)
	}
	return lim
}

// Limit is the limit l enforces.
func (l *Limiter) Limit() Limit { return l.limit }

// Allow takes a token for a request from addr at now. When it refuses it
// says how long to wait before a request would be allowed.
func (l *Limiter) Allow(addr netip.Addr, now time.Time) (ok bool, retryAfter time.Duration) {
	t := now.UnixNano()
	addr = bucketAddr(addr)
	if wait := l.takeAddress(addr, t); wait > 0 {
		return false, time.Duration(wait)
	}
	if wait := l.takeTotal(t); wait > 0 {
		return false, time.Duration(wait)
	}
	return true, 0
}

// bucketAddr is the address a bucket is kept for: IPv4 (and IPv4-mapped)
// addresses as they are, IPv6 addresses by their /64, since one host
// commonly holds a whole /64 and could otherwise draw a fresh bucket per
// request.
func bucketAddr(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a.WithZone("")
}

func (l *Limiter) takeAddress(addr netip.Addr, now int64) (wait int64) {
	s := &l.shards[l.shardOf(addr)]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[addr]
	if !ok && len(s.buckets) >= perShard {
		s.evictLocked(now)
	}
	next := max(b.tat, now) + l.interval
	if over := next - now - l.tolerance; over > 0 {
		if ok && !b.limiting { // (a fresh bucket is never over)
			s.buckets[addr] = bucket{tat: b.tat, limiting: true}
		}
		return over
	}
	s.buckets[addr] = bucket{tat: next}
	return 0
}

// evictLocked makes room in a full shard, in one pass. Buckets that have
// refilled carry no state and all go. If none has, one goes: a bucket not
// limiting anyone before one that is, and among those the one that refills
// first. An evicted address starts again with a full bucket (still bound by
// the overall one), so what an eviction gives away is the evicted bucket's
// debt, and this picks the least. A client being limited thus outlasts any
// number of fresh addresses drawing one request each; to reach its bucket an
// attacker must first exhaust every other bucket of its shard, which the
// keyed hash keeps it from aiming at.
func (s *shard) evictLocked(now int64) {
	removed := false
	var victim netip.Addr
	var least bucket
	found := false
	for a, b := range s.buckets {
		if b.tat <= now {
			delete(s.buckets, a)
			removed = true
			continue
		}
		if !found || b.evictsBefore(least) {
			victim, least, found = a, b, true
		}
	}
	if !removed && found {
		delete(s.buckets, victim)
	}
}

func (l *Limiter) takeTotal(now int64) (wait int64) {
	for {
		tat := l.totalTAT.Load()
		next := max(tat, now) + l.totalInterval
		if over := next - now - l.totalTolerance; over > 0 {
			return over
		}
		if l.totalTAT.CompareAndSwap(tat, next) {
			return 0
		}
	}
}

// Addresses is how many per-address buckets l holds.
func (l *Limiter) Addresses() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

func (l *Limiter) shardOf(a netip.Addr) int {
	b := a.As16()
	return int(maphash.Bytes(l.seed, b[:]) % shards)
}

// RetryAfterSeconds rounds a wait up to the whole seconds Retry-After
// carries (at least 1).
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
