package gateway

// Ingress (run.googleapis.com/ingress, gcloud --ingress). A service whose
// ingress is not "all" answers only requests whose connection comes from:
//
//   - one of Usher's own instances (Config.FromInstance: the runtime that
//     started it places the connection's source address in a live
//     instance);
//   - an operator's internal network (Config.InternalNetworks, usher serve
//     --internal-cidrs);
//   - for internal-and-cloud-load-balancing, also an operator's trusted
//     proxy (Config.TrustedProxies, usher serve --trusted-proxies).
//
// Only the connection's peer counts: X-Forwarded-For and the like are what
// a client says, and a trusted proxy naming an internal client does not make
// the request internal. Everyone else gets 404, as on Cloud Run, before any
// authentication, and the refusal is explained to OnDenied. The check is a
// byte compare for "all" services and, for the others, a parse of
// RemoteAddr and lookups that neither allocate nor do I/O.

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/routing"
)

// ingressAllows reports whether tgt's ingress admits r.
func (g *Gateway) ingressAllows(r *http.Request, tgt *routing.Target) bool {
	if tgt.Ingress == routing.IngressAll {
		return true
	}
	peer, ok := peerAddr(r.RemoteAddr)
	if !ok {
		return false
	}
	for _, p := range g.cfg.InternalNetworks {
		if p.Contains(peer) {
			return true
		}
	}
	if g.cfg.FromInstance != nil && g.cfg.FromInstance(r.Context(), peer) {
		return true
	}
	return tgt.Ingress == routing.IngressInternalAndLB && g.cfg.TrustedProxies.Trusts(peer)
}

func peerAddr(remoteAddr string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// denyIngress answers 404 to a request tgt's ingress does not admit and
// explains why to the log and OnDenied (not to the client: to it the
// service does not exist).
func (g *Gateway) denyIngress(w http.ResponseWriter, r *http.Request, tgt *routing.Target, forwardAuth bool, host string) {
	reason := ingressReason(r.RemoteAddr, tgt.Ingress)
	if g.cfg.Log.Enabled(r.Context(), slog.LevelInfo) {
		g.cfg.Log.Info("request denied", "status", http.StatusNotFound, "service", tgt.Service, "project", tgt.Project,
			"region", tgt.Region, "reason", reason)
	}
	if g.cfg.OnDenied != nil {
		g.cfg.OnDenied(Denial{Status: http.StatusNotFound, Host: host, Target: tgt, Principal: iam.Principal{}, Reason: reason, ForwardAuth: forwardAuth})
	}
	writePage(w, http.StatusNotFound, pageNotFound)
}

func ingressReason(remoteAddr string, in routing.Ingress) string {
	who := "an instance of Usher or an internal network (usher serve --internal-cidrs)"
	if in == routing.IngressInternalAndLB {
		who = "an instance of Usher, an internal network (usher serve --internal-cidrs) or a trusted proxy (usher serve --trusted-proxies)"
	}
	return "ingress is " + in.String() + ": the connection came from " + remoteAddr + ", not from " + who
}

// FromInstanceFunc is Config.FromInstance's type: whether a connection
// whose request context is ctx and whose peer is addr comes from one of
// Usher's instances. It is called on the request path: it must neither
// allocate nor do I/O.
type FromInstanceFunc func(ctx context.Context, addr netip.Addr) bool

// GuardIngress wraps h, a handler of service hosts outside the gateway's
// flow (the identity-aware proxy's /_gcp_iap/ sign-in paths), so that a
// service's ingress holds there too: a refused connection gets the same 404
// and denial record, and never learns the service exists.
func (g *Gateway) GuardIngress(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t := g.table.Load(); t != nil {
			if tgt := t.Lookup(r.Host); tgt != nil && !g.ingressAllows(r, tgt) {
				refuse(w, r)
				g.denyIngress(w, r, tgt, false, r.Host)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
