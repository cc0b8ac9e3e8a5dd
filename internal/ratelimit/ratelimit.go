// Package ratelimit keeps anonymous callers of a public service from costing
// more than its owner allows: a token bucket per client address plus one for
// the service as a whole, both written as GCRA (a single "theoretical arrival
// time" per bucket), so that a bucket is one int64.
//
// It never allocates on the request path once an address has a bucket, never
// takes a lock shared by all addresses (per-address buckets live in 64
// shards; the overall bucket is a compare-and-swap), and never holds more
// than MaxAddresses buckets per service however many distinct addresses
// flood it. It does no I/O and knows nothing of HTTP.
package ratelimit

import (
	"errors"
	"fmt"
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
	shards                        [shards]shard
}

type shard struct {
	mu sync.Mutex
	// tat holds each address's theoretical arrival time (unix nanoseconds).
	tat map[netip.Addr]int64
}

// New returns a limiter enforcing l (which must be Enabled).
func New(l Limit) *Limiter {
	lim := &Limiter{limit: l}
	lim.interval = int64(float64(time.Second) / l.RPS)
	lim.tolerance = lim.interval * int64(l.Burst)
	lim.totalInterval = int64(float64(time.Second) / l.TotalRPS)
	lim.totalTolerance = lim.totalInterval * int64(l.TotalBurst)
	for i := range lim.shards {
		lim.shards[i].tat = make(map[netip.Addr]int64)
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
	s := &l.shards[shardOf(addr)]
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, ok := s.tat[addr]
	if !ok && len(s.tat) >= perShard {
		s.evictLocked(now)
	}
	next := max(tat, now) + l.interval
	if over := next - now - l.tolerance; over > 0 {
		return over
	}
	s.tat[addr] = next
	return 0
}

// evictLocked makes room in a full shard: buckets that have refilled carry
// no state and go first; if none has, an arbitrary one does (its address
// gets a fresh bucket, still bounded by the overall one).
func (s *shard) evictLocked(now int64) {
	removed := false
	for a, tat := range s.tat {
		if tat <= now {
			delete(s.tat, a)
			removed = true
		}
	}
	if removed {
		return
	}
	for a := range s.tat {
		delete(s.tat, a)
		return
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
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	// FNV-1a over the address: cheap, and enough to spread a flood.
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % shards)
}

// RetryAfterSeconds rounds a wait up to the whole seconds Retry-After
// carries (at least 1).
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
