package gateway

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/routing"
)

// ForwardAuthPath is where the forward-auth endpoint is mounted on API hosts.
const ForwardAuthPath = "/forward-auth/"

// HeaderPrincipal is the forward-auth answer's header naming the verified
// principal ("user:x@y", "serviceAccount:…"), for the proxy to pass on to
// its upstream. Clients cannot smuggle it in through the gateway (it is in
// spoofable); behind a proxy, the proxy must set it (see the README).
const HeaderPrincipal = "X-Usher-Principal"

// ForwardAuth returns Usher's forward-auth endpoint, which lets a reverse
// proxy in front of an app Usher does not run ask Usher's IAM whether to let
// a request through: nginx auth_request, Traefik forwardAuth, Envoy
// ext_authz in HTTP mode.
//
//	ANY /forward-auth/{project}/{region}/{service}[/anything]
//
// The protected app borrows the IAM policy of an Usher service: the one
// named, by project ID, region and name, which must exist. The request
// carries the original request's headers, as those proxies send them, and
// is decided exactly as the gateway decides a request to that service:
// the same credentials (X-Serverless-Authorization, else Authorization),
// the same verifier, the same audiences (the service's URL and custom
// audiences; a user's CLI token), the same compiled invokers from the same
// routing table. The answer is
//
//   - 200, empty, with X-Usher-Principal: the verified member (absent when
//     the service is public, which needs no credentials);
//   - 401 with WWW-Authenticate: Bearer (no credentials) or Bearer
//     error="invalid_token" (credentials that fail verification);
//   - 403 when the principal may not invoke the service;
//   - 404 when no such service exists, 503 before the first routing table:
//     proxies treat anything but 2xx as a refusal, so it fails closed.
//
// Refusals reach Config.OnDenied like the gateway's, marked ForwardAuth,
// with Host taken from X-Forwarded-Host (or X-Original-Host) when the proxy
// sends one. The path after the service is ignored (Envoy appends the
// original path): the decision is per service, not per path. domain is
// the gateway's service domain (the routing table is keyed by host).
func (g *Gateway) ForwardAuth(domain string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.serveForwardAuth(w, r, domain)
	})
}

func (g *Gateway) serveForwardAuth(w http.ResponseWriter, r *http.Request, domain string) {
	arrived := time.Now()
	w.Header().Set("Cache-Control", "no-store")
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, ForwardAuthPath), "/", 4)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || strings.ContainsAny(parts[0]+parts[1]+parts[2], ".:") {
		http.Error(w, "usher forward-auth: the path must be "+ForwardAuthPath+"PROJECT/REGION/SERVICE", http.StatusNotFound)
		return
	}
	if g.cfg.Fresh != nil && !g.cfg.Fresh() {
		writeStale(w)
		return
	}
	t := g.table.Load()
	if t == nil {
		writePage(w, http.StatusServiceUnavailable, pageUnavailable)
		return
	}
	project, region, service := parts[0], parts[1], parts[2]
	tgt := t.Lookup(apis.ServiceHost(service, project, region, domain))
	if tgt == nil || tgt.Project != project || tgt.Region != region || tgt.Service != service {
		http.Error(w, "usher forward-auth: no service "+service+" in project "+project+", region "+region, http.StatusNotFound)
		return
	}
	if !g.ingressAllows(r, tgt) { // the subrequest's connection: the proxy's
		g.denyIngress(w, r, tgt, true, forwardedHost(r))
		return
	}
	if tgt.Public || g.conditionallyPublic(r, tgt) {
		w.WriteHeader(http.StatusOK)
		return
	}
	_, status, reason, principal := g.authorize(r, tgt)
	if status != 0 {
		g.denyForwardAuth(w, r, tgt, status, reason, principal, arrived)
		return
	}
	w.Header().Set(HeaderPrincipal, principal.Member())
	w.WriteHeader(http.StatusOK)
}

// denyForwardAuth answers a refused forward-auth request as the gateway
// answers a refused request (deny), naming the protected upstream's host.
func (g *Gateway) denyForwardAuth(w http.ResponseWriter, r *http.Request, tgt *routing.Target, status int, reason string, p iam.Principal, arrived time.Time) {
	host := forwardedHost(r)
	if g.cfg.Log.Enabled(r.Context(), slog.LevelInfo) {
		g.cfg.Log.Info("request denied", "via", "forward-auth", "status", status, "service", tgt.Service, "project", tgt.Project,
			"region", tgt.Region, "host", host, "principal", p.String(), "reason", reason)
	}
	if g.cfg.OnDenied != nil {
		g.cfg.OnDenied(Denial{Status: status, Host: host, Target: tgt, Principal: p, Reason: reason, ForwardAuth: true, Request: r, Arrived: arrived})
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

// forwardedHost is the protected upstream's host a forward-auth subrequest
// names.
func forwardedHost(r *http.Request) string {
	host := r.Header.Get("X-Forwarded-Host")
	if host == "" {
		host = r.Header.Get("X-Original-Host")
	}
	if host == "" {
		host = r.Host
	}
	return host
}
