// Package gateway is Usher's data plane: every request to a service host goes
// route → ingress → authenticate → authorize → proxy, in that order, as
// separate steps (ingress.go: a service that is not "all" answers 404 to
// connections from outside, as if it did not exist).
//
// It reads an immutable routing table swapped in atomically; it never reads the
// store, never calls the admin API and never blocks on a global lock. It fails
// closed: without a table, a verifier answer or a decision it refuses. Public
// services (allUsers, or the invoker check disabled) skip authentication and
// get the request untouched, credentials included.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/pool"
	"github.com/usher-run/usher/internal/ratelimit"
	"github.com/usher-run/usher/internal/routing"
)

// Verifier checks a bearer token's signature and claims (not its audience).
type Verifier interface {
	Verify(token string) (*authn.Identity, error)
}

// Instances finds (or starts) an instance of a revision with a free slot;
// key identifies the revision (routing.Route.Key). Errors wrapping
// pool.ErrOverloaded or pool.ErrQueueTimeout mean "retry later".
type Instances interface {
	Acquire(ctx context.Context, key string, rev *apis.Revision) (Lease, error)
}

// Lease is a request's slot on an instance, released when the request ends.
type Lease interface {
	Addr() string
	Release()
}

// Config wires a gateway.
type Config struct {
	Verifier  Verifier
	Instances Instances
	// CLIAudience is the audience of identity tokens the CLI mints for a user
	// without --audiences; like Cloud Run, such user tokens are accepted on
	// any service the user may invoke. Service-account tokens never are.
	CLIAudience string
	Log         *slog.Logger
	// OnDenied, if set, is told of every refused request (audit, metrics).
	OnDenied func(Denial)
	// OnRouted, if set, is told of every request that passed authorization
	// (or needed none) once it is answered: per-service metrics.
	OnRouted func(Routed)
	// Now is the clock IAM conditions see as request.time (default
	// time.Now); tests inject one.
	Now func() time.Time
	// Fresh, if set, reports whether the routing table is known current
	// (mirror.Mirror.Fresh: one atomic load). While it is false every
	// request, to private and public services alike, gets 503: a node that
	// cannot confirm its access policies fails closed.
	Fresh func() bool
	// IAP signs people in for services behind the identity-aware proxy
	// (iap.go); without it such services answer 503.
	IAP IAP
	// DialInstance, if set, connects to an instance's Lease.Addr instead of
	// a plain TCP dial: sandboxed process instances listen only inside
	// their own network namespace (process.Runtime.DialContext).
	DialInstance func(ctx context.Context, network, addr string) (net.Conn, error)
	// TrustedProxies may name the client in X-Forwarded-For, which anonymous
	// rate limits charge (anonymous.go); from anyone else it is ignored.
	TrustedProxies ratelimit.Proxies
	// InternalNetworks are the operator's networks whose requests count as
	// internal for ingress (ingress.go).
	InternalNetworks []netip.Prefix
	// FromInstance, if set, tells whether a request's connection comes
	// from one of Usher's instances: internal for ingress (ingress.go).
	FromInstance FromInstanceFunc
}

// Denial describes a refused request, for audit trails and explanations.
type Denial struct {
	Status int
	Host   string
	Target *routing.Target // nil when no service matched
	// Principal is the verified caller (anonymous when none): on an
	// anonymous rate-limit refusal, the holder of a valid token that was
	// charged because no binding names it.
	Principal iam.Principal
	Reason    string
	// ForwardAuth marks a refusal answered to a forward-auth subrequest
	// (forwardauth.go); Host is then the protected upstream's.
	ForwardAuth bool
	// Client is the client address charged, on anonymous rate-limit
	// refusals only.
	Client string
	// Request is the refused request (the forward-auth subrequest for
	// ForwardAuth), for request logs; read it during the call only.
	Request *http.Request
	// Arrived is when the request arrived: its latency runs from there
	// to the refusal.
	Arrived time.Time
}

// Routed describes a request that passed authorization, once answered.
type Routed struct {
	Target *routing.Target
	// Revision took the request ("" when none could).
	Revision string
	// Status is what the client got (the instance's, or the gateway's own
	// 429/502/503/504; 499 when the client left).
	Status int
	// Forwarded: an instance answered (Status is then the instance's, or a
	// proxy error's).
	Forwarded bool
	// UsherTime is Usher's share of the latency: from arrival to the
	// request's forwarding (routing, authorization, the wait for an
	// instance, a cold start included); InstanceTime the rest, until the
	// answer was written (zero when not forwarded).
	UsherTime, InstanceTime time.Duration
	// Anonymous: admitted without authorization (the service is public to
	// allUsers); Client is then the caller's address as the anonymous rate
	// limit charges it (zero if unknown).
	Anonymous bool
	Client    netip.Addr
	// Request is the request, for request logs; read it during the call
	// only.
	Request *http.Request
}

// Gateway serves service hosts.
type Gateway struct {
	cfg   Config
	table atomic.Pointer[routing.Table]
	proxy *httputil.ReverseProxy
	// limits holds the anonymous rate limiters (anonymous.go).
	limits anonymousLimits
}

// New returns a gateway with no table: it answers 503 until SetTable.
func New(cfg Config) *Gateway {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Gateway{cfg: cfg}
	g.limits.routed = func(k serviceKey) bool {
		t := g.table.Load()
		return t != nil && t.HasService(routing.ServiceKey{Project: k.project, Region: k.region, Service: k.service})
	}
	tr := newInstanceTransport()
	tr.dial = cfg.DialInstance
	h2c := newH2CTransport()
	if cfg.DialInstance != nil {
		h2c.DialContext = cfg.DialInstance // sandboxed instances speak h2c too
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		ModifyResponse: recordStatus,
		Transport:      byProtocol{h1: tr, h2c: h2c},
		ErrorHandler:   g.proxyError,
		// FlushInterval stays 0: ReverseProxy already flushes server-sent
		// events and unsized (streamed) responses after every write, and a
		// sized answer then goes out in one write instead of two.
		BufferPool: copyBuffers{},
	}
	return g
}

// SetTable swaps in a new routing table; the next request uses it.
func (g *Gateway) SetTable(t *routing.Table) {
	g.table.Store(t) // anonymous limits follow lazily (anonymous.go)
}

// Table returns the table in force.
func (g *Gateway) Table() *routing.Table { return g.table.Load() }

// Header names Usher reads or sets.
const (
	headerAuthorization   = "Authorization"
	headerServerlessAuthz = "X-Serverless-Authorization"
	// signatureRemoved is what Cloud Run puts in place of a forwarded token's
	// signature; apps check for this literal.
	signatureRemoved = "SIGNATURE_REMOVED_BY_GOOGLE"
)

// spoofable are request headers a client could use to impersonate the proxy
// or an identity layer; they never reach an instance from outside. They are
// spelled in canonical form (textproto.CanonicalMIMEHeaderKey).
var spoofable = []string{
	"Forwarded",
	"X-Real-Ip",
	"X-Forwarded-Host",
	"X-Forwarded-Proto",
	"X-Forwarded-For",
	"X-Goog-Authenticated-User-Email",
	"X-Goog-Authenticated-User-Id",
	"X-Goog-Iap-Jwt-Assertion",
	"X-Usher-Principal",
}

// proxied is the per-request state handed from ServeHTTP to rewrite.
type proxied struct {
	addr string
	// iap holds what the identity-aware proxy tells the instance (iap.go).
	iap *iapIdentity
	// credentialHeader is the header whose token authorized the request
	// (empty on public services); its signature is removed before forwarding.
	credentialHeader string
	// h2c: the revision asked for HTTP/2 without TLS (--use-http2).
	h2c bool
	// status is the answer's status, set by the proxy's hooks.
	status int
}

type proxiedKey struct{}

// ServeHTTP implements the request flow.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	if g.cfg.Fresh != nil && !g.cfg.Fresh() {
		refuse(w, r)
		writeStale(w)
		return
	}
	t := g.table.Load()
	if t == nil {
		refuse(w, r)
		writePage(w, http.StatusServiceUnavailable, pageUnavailable)
		return
	}
	tgt := t.Lookup(r.Host)
	if tgt == nil {
		refuse(w, r)
		writePage(w, http.StatusNotFound, pageNotFound)
		return
	}
	if !g.ingressAllows(r, tgt) { // ingress.go: before anything else, as if the service did not exist
		refuse(w, r)
		g.denyIngress(w, r, tgt, false, r.Host)
		return
	}
	p := proxied{}
	done := Routed{Target: tgt, Request: r} // what OnRouted is told
	if tgt.IAP != nil {
		if !g.throughIAP(w, r, tgt, &p, arrived) { // iap.go; it refused (refuse was called)
			return
		}
	} else if !tgt.Public && !g.conditionallyPublic(r, tgt) {
		header, status, reason, principal := g.authorize(r, tgt)
		if status != 0 {
			refuse(w, r)
			g.deny(w, r, tgt, status, reason, principal, arrived)
			return
		}
		p.credentialHeader = header
	} else {
		if tgt.AnonymousLimit.Enabled() && !g.admitAnonymous(w, r, tgt, arrived) {
			return // anonymous.go; it answered 429
		}
		done.Anonymous = true
		if g.cfg.OnRouted != nil {
			done.Client, _ = g.cfg.TrustedProxies.ClientAddress(r.RemoteAddr, r.Header["X-Forwarded-For"])
		}
	}
	route := tgt.Pick(pickPercent(tgt.TotalPercent))
	if route == nil {
		refuse(w, r)
		writePage(w, http.StatusServiceUnavailable, pageNoRevision)
		done.Status, done.UsherTime = http.StatusServiceUnavailable, time.Since(arrived)
		g.routed(done)
		return
	}
	done.Revision = route.Revision.Metadata.Name
	// The revision's timeoutSeconds bounds the whole request, the wait for a
	// slot included: after it the client gets 504 (or, once the answer has
	// begun, a cut connection) and the instance's slot is freed.
	ctx := r.Context()
	if s := route.Revision.Spec.TimeoutSeconds; s > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s)*time.Second)
		defer cancel()
	}
	// Waiting for a slot (a cold start, or a busy revision) is bounded by the
	// pool's queue and by the client's patience (the request context).
	lease, err := g.cfg.Instances.Acquire(ctx, route.Key, route.Revision)
	if err != nil {
		refuse(w, r)
		done.Status = g.noInstance(w, r, tgt, route, err)
		done.UsherTime = time.Since(arrived)
		g.routed(done)
		return
	}
	defer lease.Release()
	p.addr = lease.Addr()
	p.h2c = route.Revision.UsesHTTP2()
	forwarded := time.Now()
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, proxiedKey{}, &p)))
	done.Status, done.Forwarded = p.status, true
	done.UsherTime, done.InstanceTime = forwarded.Sub(arrived), time.Since(forwarded)
	g.routed(done)
}

func (g *Gateway) routed(r Routed) {
	if g.cfg.OnRouted != nil {
		g.cfg.OnRouted(r)
	}
}

// recordStatus keeps the instance's status for OnRouted.
func recordStatus(resp *http.Response) error {
	if p, ok := resp.Request.Context().Value(proxiedKey{}).(*proxied); ok {
		p.status = resp.StatusCode
	}
	return nil
}

// refuse prepares the answer to a request the gateway will not forward: an
// unread request body is never read. Over HTTP/1 the server would otherwise
// drain up to 256 KiB of it, before answering and again when the handler
// returns, so a client stalling its body would hold the connection for as
// long as it likes. "Connection: close" skips the first drain; a read
// deadline already passed ends the second at once. Over HTTP/2 the stream is
// reset and the connection lives on.
func refuse(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header()["Connection"] = connectionClose
	http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

var connectionClose = []string{"close"}

// noInstance answers a request no instance could take: 429 when the revision
// is at its limits, 503 otherwise, both with Retry-After.
func (g *Gateway) noInstance(w http.ResponseWriter, r *http.Request, tgt *routing.Target, route *routing.Route, err error) (status int) {
	if errors.Is(err, context.Canceled) {
		w.WriteHeader(499) // the client left while queued
		return 499
	}
	if errors.Is(err, context.DeadlineExceeded) { // the revision's timeoutSeconds
		writePage(w, http.StatusGatewayTimeout, pageGatewayTimeout)
		return http.StatusGatewayTimeout
	}
	if g.cfg.Log.Enabled(r.Context(), slog.LevelWarn) {
		g.cfg.Log.Warn("no instance", "service", tgt.Service, "revision", route.Revision.Metadata.Name, "err", err)
	}
	w.Header()["Retry-After"] = retryAfter
	if errors.Is(err, pool.ErrOverloaded) {
		writePage(w, http.StatusTooManyRequests, pageOverloaded)
		return http.StatusTooManyRequests
	}
	writePage(w, http.StatusServiceUnavailable, pageUnavailable)
	return http.StatusServiceUnavailable
}

var retryAfter = []string{"1"}

// pickPercent draws the point of a traffic split that a request falls on.
// math/rand/v2's top-level source is per-thread: no lock, no allocation.
func pickPercent(total int) int {
	if total <= 1 {
		return 0
	}
	return rand.IntN(total)
}

// authorize authenticates and authorizes a request to a private target. It
// returns the credential header used, or a non-zero status with the reason.
func (g *Gateway) authorize(r *http.Request, tgt *routing.Target) (header string, status int, reason string, principal iam.Principal) {
	header, status, reason, principal = g.authenticate(r, tgt)
	if status != 0 {
		return "", status, reason, principal
	}
	if d := tgt.Invokers.DecideAt(principal, g.cfg.Now()); !d.Allowed {
		return "", http.StatusForbidden, d.Explain(principal), principal
	}
	return header, 0, "", principal
}

// authenticate verifies a request's bearer token for tgt: it returns the
// credential header used and the principal, or a 401 status with the reason.
func (g *Gateway) authenticate(r *http.Request, tgt *routing.Target) (header string, status int, reason string, principal iam.Principal) {
	header = headerServerlessAuthz
	value := r.Header.Get(headerServerlessAuthz)
	if value == "" {
		header = headerAuthorization
		value = r.Header.Get(headerAuthorization)
	}
	if value == "" {
		return "", http.StatusUnauthorized, "no credentials", principal
	}
	token, ok := authn.BearerToken(value)
	if !ok {
		return "", http.StatusUnauthorized, "credentials are not a Bearer token", principal
	}
	id, err := g.cfg.Verifier.Verify(token)
	if err != nil {
		return "", http.StatusUnauthorized, err.Error(), principal
	}
	if !id.IsIdentityToken() {
		// An access token (the admin API's kind) never invokes a service.
		return "", http.StatusUnauthorized, "token is not an identity token", principal
	}
	if id.External { // a trusted external issuer (authn/external.go)
		principal = iam.NewExternalPrincipal(id.Email, id.Issuer+"#"+id.Subject, id.Groups)
	} else {
		principal = iam.NewPrincipal(id.Email)
	}
	if id.Email == "" && !id.External {
		return "", http.StatusUnauthorized, "token has no email claim", principal
	}
	if !g.audienceOK(id, tgt, principal) {
		return "", http.StatusUnauthorized, "token audience is not this service", principal
	}
	return header, 0, "", principal
}

func (g *Gateway) audienceOK(id *authn.Identity, tgt *routing.Target, p iam.Principal) bool {
	for _, aud := range id.Audience {
		if tgt.AcceptsAudience(aud) {
			return true
		}
		if aud == g.cfg.CLIAudience && g.cfg.CLIAudience != "" && p.Kind == iam.User && !id.External {
			return true
		}
	}
	return false
}

func (g *Gateway) deny(w http.ResponseWriter, r *http.Request, tgt *routing.Target, status int, reason string, p iam.Principal, arrived time.Time) {
	if g.cfg.Log.Enabled(r.Context(), slog.LevelInfo) {
		g.cfg.Log.Info("request denied", "status", status, "service", tgt.Service, "project", tgt.Project,
			"region", tgt.Region, "principal", p.String(), "reason", reason)
	}
	if g.cfg.OnDenied != nil {
		g.cfg.OnDenied(Denial{Status: status, Host: r.Host, Target: tgt, Principal: p, Reason: reason, Request: r, Arrived: arrived})
	}
	switch {
	case status == http.StatusForbidden:
		writePage(w, status, pageForbidden)
	case reason == "no credentials":
		w.Header()["Www-Authenticate"] = wwwAuthBearer
		writePage(w, status, pageUnauthorized)
	default:
		w.Header()["Www-Authenticate"] = wwwAuthInvalid
		writePage(w, status, pageUnauthorized)
	}
}

var (
	wwwAuthBearer  = []string{`Bearer`}
	wwwAuthInvalid = []string{`Bearer error="invalid_token"`}
)

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers and X-Forwarded-* from the outbound copy.
func rewrite(pr *httputil.ProxyRequest) {
	p := pr.In.Context().Value(proxiedKey{}).(*proxied)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = p.addr
	pr.Out.Host = pr.In.Host
	for _, h := range spoofable {
		delete(pr.Out.Header, h) // keys are canonical: skip Del's re-canonicalizing
	}
	stripAliases(pr.Out.Header)
	pr.SetXForwarded()
	if pr.In.TLS == nil {
		pr.Out.Header.Set("X-Forwarded-Proto", "http")
	}
	if p.credentialHeader != "" {
		if v := pr.Out.Header.Get(p.credentialHeader); v != "" {
			pr.Out.Header.Set(p.credentialHeader, stripSignature(v))
		}
	}
	if p.iap != nil {
		p.iap.set(pr.Out) // iap.go
	}
}

// stripSignature replaces a JWT's signature so the instance can read the claims
// but never replay the token.
func stripSignature(header string) string {
	if i := strings.LastIndexByte(header, '.'); i >= 0 {
		return header[:i+1] + signatureRemoved
	}
	return header
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	page := pageBadGateway
	switch {
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		setStatus(r, 499)
		w.WriteHeader(499)
		return
	case errors.Is(err, context.DeadlineExceeded):
		status, page = http.StatusGatewayTimeout, pageGatewayTimeout
	}
	if g.cfg.Log.Enabled(r.Context(), slog.LevelWarn) {
		g.cfg.Log.Warn("proxy error", "host", r.Host, "err", err)
	}
	setStatus(r, status)
	writePage(w, status, page)
}

func setStatus(r *http.Request, status int) {
	if p, ok := r.Context().Value(proxiedKey{}).(*proxied); ok {
		p.status = status
	}
}

// copyBuffers recycles ReverseProxy's 32 KiB response copy buffers, which it
// would otherwise allocate (and zero) for every request.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }
