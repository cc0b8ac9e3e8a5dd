package gateway

import (
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/ratelimit"
	"github.com/usher-run/usher/internal/routing"
)

// ReasonAnonymousRateLimit is the Denial reason of a request refused by a
// service's anonymous rate limit.
const ReasonAnonymousRateLimit = "anonymous rate limit exceeded"

// anonymousLimits keeps one limiter per service with a limit, keyed by
// service. A limiter is made the first time a limited target is asked for
// one and kept while the target's limit stays the same (its buckets
// survive table swaps, such as a policy write to the service); a changed
// limit gets a new limiter. Requests read it with one atomic load and a map
// lookup; the map is copied only when a limiter is added, so SetTable never
// walks the table (a write costs the same with 1 or 10,000 services).
type anonymousLimits struct {
	mu sync.Mutex // serializes additions; never taken for a known limiter
	m  atomic.Pointer[map[serviceKey]*ratelimit.Limiter]
	// routed tells whether a service is still in the current table, so
	// additions drop the limiters of deleted services.
	routed func(serviceKey) bool
}

// serviceKey names a service; a struct of the target's own strings, so a
// lookup builds no string.
type serviceKey struct{ project, region, service string }

func limitKey(t *routing.Target) serviceKey { return serviceKey{t.Project, t.Region, t.Service} }

func (a *anonymousLimits) limiter(tgt *routing.Target) *ratelimit.Limiter {
	if !tgt.AnonymousLimit.Enabled() {
		return nil
	}
	k := limitKey(tgt)
	if p := a.m.Load(); p != nil {
		if l := (*p)[k]; l != nil && l.Limit() == tgt.AnonymousLimit {
			return l
		}
	}
	return a.add(k, tgt.AnonymousLimit)
}

// add installs a limiter for k's limit (another request may have done it
// first) and forgets those of services no longer routed.
func (a *anonymousLimits) add(k serviceKey, limit ratelimit.Limit) *ratelimit.Limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	var old map[serviceKey]*ratelimit.Limiter
	if p := a.m.Load(); p != nil {
		old = *p
	}
	if l := old[k]; l != nil && l.Limit() == limit {
		return l
	}
	next := make(map[serviceKey]*ratelimit.Limiter, len(old)+1)
	for ok, l := range old {
		if ok != k && (a.routed == nil || a.routed(ok)) {
			next[ok] = l
		}
	}
	l := ratelimit.New(limit)
	next[k] = l
	a.m.Store(&next)
	return l
}

// unknownClient is charged for requests without a network peer address.
var unknownClient = netip.IPv4Unspecified()

// admitAnonymous applies a public target's anonymous rate limit. Only a
// caller the service's owner granted individually is exempt: one presenting
// a token the gateway accepts for this service (signature, kind and
// audience, as on a private service) whose principal holds
// run.routes.invoke through a binding naming it — its user or service
// account, its domain, a group of its — on the service or its project, so
// that it would be let in were allUsers removed. Grants to allUsers and
// allAuthenticatedUsers exempt nobody: anyone can mint a token for some
// account, so such a caller is charged like an anonymous one. Everyone else
// is charged to their client address. It answers 429 with Retry-After and
// reports false when the request is over the limit.
func (g *Gateway) admitAnonymous(w http.ResponseWriter, r *http.Request, tgt *routing.Target, arrived time.Time) bool {
	var principal iam.Principal // who is charged, for the audit trail
	if r.Header.Get(headerServerlessAuthz) != "" || r.Header.Get(headerAuthorization) != "" {
		if _, status, _, p := g.authenticate(r, tgt); status == 0 {
			if tgt.Invokers.DecideIndividuallyAt(p, g.cfg.Now()).Allowed {
				return true
			}
			principal = p
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
		g.cfg.OnDenied(Denial{Status: http.StatusTooManyRequests, Host: r.Host, Target: tgt, Principal: principal, Reason: ReasonAnonymousRateLimit, Client: addr.String(), Request: r, Arrived: arrived})
	}
	w.Header()["Retry-After"] = []string{strconv.Itoa(ratelimit.RetryAfterSeconds(wait))}
	writePage(w, http.StatusTooManyRequests, pageRateLimited)
	return false
}
