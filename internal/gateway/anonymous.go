package gateway

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/ratelimit"
	"github.com/usher-run/usher/internal/routing"
)

// ReasonAnonymousRateLimit is the Denial reason of a request refused by a
// service's anonymous rate limit.
const ReasonAnonymousRateLimit = "anonymous rate limit exceeded"

// anonymousLimits keeps one limiter per service with a limit, keyed by
// service. It is rebuilt on SetTable, reusing the limiter of
// a service whose limit did not change (its buckets survive table swaps),
// and read on the hot path with one atomic load and a map lookup.
type anonymousLimits struct {
	mu sync.Mutex // serializes rebuilds; never taken by requests
	m  atomic.Pointer[map[serviceKey]*ratelimit.Limiter]
}

// serviceKey names a service; a struct of the target's own strings, so a
// lookup builds no string.
type serviceKey struct{ project, region, service string }

func limitKey(t *routing.Target) serviceKey { return serviceKey{t.Project, t.Region, t.Service} }

func (a *anonymousLimits) rebuild(t *routing.Table) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var old map[serviceKey]*ratelimit.Limiter
	if p := a.m.Load(); p != nil {
		old = *p
	}
	next := map[serviceKey]*ratelimit.Limiter{}
	if t != nil {
		t.Each(func(tgt *routing.Target) {
			if !tgt.AnonymousLimit.Enabled() {
				return
			}
			k := limitKey(tgt)
			if _, done := next[k]; done {
				return
			}
			if l := old[k]; l != nil && l.Limit() == tgt.AnonymousLimit {
				next[k] = l
				return
			}
			next[k] = ratelimit.New(tgt.AnonymousLimit)
		})
	}
	a.m.Store(&next)
}

func (a *anonymousLimits) limiter(tgt *routing.Target) *ratelimit.Limiter {
	p := a.m.Load()
	if p == nil {
		return nil
	}
	return (*p)[limitKey(tgt)]
}

// unknownClient is charged for requests without a network peer address.
var unknownClient = netip.IPv4Unspecified()

// admitAnonymous applies a public target's anonymous rate limit. A caller
// that presents a token the gateway accepts for this service (signature,
// kind and audience, as on a private service) is not anonymous and is never
// limited; anyone else is charged to their client address. It answers 429
// with Retry-After and reports false when the request is over the limit.
func (g *Gateway) admitAnonymous(w http.ResponseWriter, r *http.Request, tgt *routing.Target) bool {
	if r.Header.Get(headerServerlessAuthz) != "" || r.Header.Get(headerAuthorization) != "" {
		if _, status, _, _ := g.authenticate(r, tgt); status == 0 {
			return true
		}
	}
	lim := g.limits.limiter(tgt)
	if lim == nil {
		return true // the table that named the limit is being swapped in
	}
	addr, ok := g.cfg.TrustedProxies.ClientAddress(r.RemoteAddr, r.Header["X-Forwarded-For"])
	if !ok {
		// Not a network peer (an in-process caller): charged together.
		addr = unknownClient
	}
	allowed, wait := lim.Allow(addr, g.cfg.Now())
	if allowed {
		return true
	}
	refuse(w, r)
	if g.cfg.OnDenied != nil {
		g.cfg.OnDenied(Denial{Status: http.StatusTooManyRequests, Host: r.Host, Target: tgt, Principal: iam.Principal{}, Reason: ReasonAnonymousRateLimit, Client: addr.String()})
	}
	w.Header()["Retry-After"] = []string{strconv.Itoa(ratelimit.RetryAfterSeconds(wait))}
	writePage(w, http.StatusTooManyRequests, pageRateLimited)
	return false
}
