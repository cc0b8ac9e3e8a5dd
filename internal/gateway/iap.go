package gateway

// The identity-aware proxy's step of the request flow, for services with
// IAP on (run.googleapis.com/iap-enabled): instead of the invoker check of
// a bearer token, a person signed in with a browser (a session cookie for
// this host only) or a program with an identity token must hold
// iap.webServiceVersions.accessViaIAP; the request is then invoked as the
// IAP service agent, which needs run.routes.invoke, as on Google. A browser
// without a session is sent to sign in. What reaches the instance says who
// it is, signed: X-Goog-Iap-Jwt-Assertion, and Google's
// X-Goog-Authenticated-User-Email and -Id headers (client copies of all
// three are stripped with the other spoofable headers).

import (
	"html"
	"net/http"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/routing"
)

// IAP is what the gateway needs of the identity-aware proxy (package iap).
type IAP interface {
	// VerifySession returns the email a session cookie for host is for.
	VerifySession(token, host string) (string, error)
	// Assertion signs what the instance receives.
	Assertion(audience, email, subject string) (string, error)
	// SignInURL is where a browser signs in to reach returnTo.
	SignInURL(returnTo string) string
	// TroubleshootURL is the console page explaining why principal may not
	// pass the proxy of a service.
	TroubleshootURL(project, region, service, principal string) string
}

// IAPCookie holds a browser's IAP session on one service host.
const IAPCookie = "GCP_IAP_AUTH_TOKEN"

// iapUserPrefix is the "PREFIX:" of Google's X-Goog-Authenticated-User-*
// values; apps strip it, so Usher uses Google's.
const iapUserPrefix = "accounts.google.com:"

// iapIdentity is what the instance is told of the person IAP let through.
type iapIdentity struct {
	assertion, email string
}

func (id *iapIdentity) set(out *http.Request) {
	h := out.Header
	h["X-Goog-Iap-Jwt-Assertion"] = []string{id.assertion}
	h["X-Goog-Authenticated-User-Email"] = []string{iapUserPrefix + id.email}
	h["X-Goog-Authenticated-User-Id"] = []string{iapUserPrefix + id.email}
	// The session is this proxy's, not the app's: it never reaches it.
	if cookies := out.Cookies(); len(cookies) > 0 {
		h.Del("Cookie")
		for _, c := range cookies {
			if c.Name != IAPCookie {
				out.AddCookie(c)
			}
		}
	}
}

// throughIAP authenticates and authorizes a request to a target behind IAP;
// it answers the request itself (and returns false) when it may not pass,
// without reading its body (refuse).
func (g *Gateway) throughIAP(w http.ResponseWriter, r *http.Request, tgt *routing.Target, p *proxied, arrived time.Time) bool {
	if g.cfg.IAP == nil {
		refuse(w, r)
		writePage(w, http.StatusServiceUnavailable, pageUnavailable)
		return false
	}
	var principal iam.Principal
	if c, err := r.Cookie(IAPCookie); err == nil {
		if email, err := g.cfg.IAP.VerifySession(c.Value, hostOnly(r.Host)); err == nil {
			principal = iam.NewPrincipal(email)
		}
	}
	if principal.Kind == iam.Anonymous {
		if r.Header.Get(headerServerlessAuthz) == "" && r.Header.Get(headerAuthorization) == "" {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				// A browser: sign in, then come back here.
				refuse(w, r)
				http.Redirect(w, r, g.cfg.IAP.SignInURL(requestURL(r)), http.StatusFound)
				return false
			}
			refuse(w, r)
			g.deny(w, r, tgt, http.StatusUnauthorized, "no credentials", principal, arrived)
			return false
		}
		header, status, reason, pr := g.authenticate(r, tgt)
		if status != 0 {
			refuse(w, r)
			g.deny(w, r, tgt, status, reason, pr, arrived)
			return false
		}
		principal, p.credentialHeader = pr, header
	}
	now := g.cfg.Now()
	if d := tgt.IAP.Accessors.DecideAt(principal, now); !d.Allowed {
		g.denyIAP(w, r, tgt, principal, d.Explain(principal), false, arrived)
		return false
	}
	if !tgt.Public && !tgt.Invokers.DecideAt(tgt.IAP.Agents[0], now).Allowed && !tgt.Invokers.DecideAt(tgt.IAP.Agents[1], now).Allowed {
		g.denyIAP(w, r, tgt, principal, "the IAP service agent "+tgt.IAP.Agents[0].Member()+" may not invoke the service", true, arrived)
		return false
	}
	assertion, err := g.cfg.IAP.Assertion(tgt.IAP.Audience, principal.Email, iapUserPrefix+principal.Email)
	if err != nil {
		g.cfg.Log.Error("iap: signing an assertion", "err", err)
		refuse(w, r)
		writePage(w, http.StatusServiceUnavailable, pageUnavailable)
		return false
	}
	p.iap = &iapIdentity{assertion: assertion, email: principal.Email}
	return true
}

// denyIAP answers 403 saying whom the browser is signed in as and how to
// get access; the email is escaped (it came from a token Usher signed, but
// a page never trusts what it prints).
func (g *Gateway) denyIAP(w http.ResponseWriter, r *http.Request, tgt *routing.Target, principal iam.Principal, reason string, agent bool, arrived time.Time) {
	refuse(w, r)
	if g.cfg.OnDenied != nil {
		g.cfg.OnDenied(Denial{Status: http.StatusForbidden, Host: r.Host, Target: tgt, Principal: principal, Reason: "iap: " + reason, Request: r, Arrived: arrived})
	}
	if agent {
		writePage(w, http.StatusForbidden, page(403, "Forbidden", "The identity-aware proxy let you through, but the service does not let its proxy invoke it: its owner must grant "+
			html.EscapeString(tgt.IAP.Agents[0].Member())+" roles/run.invoker (usher run deploy --iap does)."))
		return
	}
	who := html.EscapeString(principal.Member())
	writePage(w, http.StatusForbidden, page(403, "Forbidden",
		"You are signed in as <b>"+who+"</b>, who may not access this service through IAP. Ask its owner for roles/iap.httpsResourceAccessor "+
			"(usher iap web add-iam-policy-binding --resource-type=cloud-run --service="+html.EscapeString(tgt.Service)+" --region="+html.EscapeString(tgt.Region)+
			" --member="+who+" --role=roles/iap.httpsResourceAccessor), or <a href=\"/_gcp_iap/clear_login_cookie\">sign out</a> and sign in as someone else. "+
			"<a href=\""+html.EscapeString(g.cfg.IAP.TroubleshootURL(tgt.Project, tgt.Region, tgt.Service, principal.Member()))+"\">Why?</a>"))
}

// hostOnly is a Host header without its port, lower-case.
func hostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// requestURL is the URL a request was sent to.
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}
