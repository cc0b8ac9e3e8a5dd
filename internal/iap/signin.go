package iap

// Browser sign-in. A browser without a session for an IAP service is sent
// (302) to the sign-in page on the API host. For local use the CLI asks for
// a one-time link (`usher iap login URL`, as `usher console` does); spending
// it issues a one-time ticket bound to the service host, and the browser
// carries that ticket to the service host's /_gcp_iap/callback, which sets
// the session cookie for that host only and sends the browser back to where
// it was going. No token ever appears in a URL that reaches the app: the
// ticket is spent by Usher before the app is involved, and works once, for
// a minute. /_gcp_iap/clear_login_cookie signs out, as on Google.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Store prefixes, keyed by the SHA-256 of the secret.
const (
	codesPrefix   = "iap/codes/"
	ticketsPrefix = "iap/tickets/"
)

// Lifetimes of the one-time secrets.
const (
	CodeTTL   = 2 * time.Minute
	TicketTTL = time.Minute
)

// CookieName is the session cookie (gateway.IAPCookie).
const CookieName = "GCP_IAP_AUTH_TOKEN"

// Config wires sign-in.
type Config struct {
	Keys  *Keys
	Store store.Store
	// PublicURL is the API host's URL (the sign-in page lives there).
	PublicURL string
	// Domain is the service hosts' domain: sign-in only ever returns to a
	// host under it.
	Domain string
	// Authenticate returns the caller of an API request (an access token),
	// for one-time links.
	Authenticate func(r *http.Request) (iam.Principal, error)
	// Providers are the external OpenID Connect providers offered on the
	// sign-in page (oidc.go).
	Providers []Provider
	Now       func() time.Time
}

// SignIn serves the sign-in pages and the service hosts' /_gcp_iap/ paths.
type SignIn struct {
	cfg Config
}

// New returns the sign-in handlers.
func New(cfg Config) *SignIn {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SignIn{cfg: cfg}
}

// VerifySession, Assertion and SignInURL are what the gateway needs.
func (s *SignIn) VerifySession(token, host string) (string, error) {
	return s.cfg.Keys.VerifySession(token, host)
}

// Assertion signs what an instance receives.
func (s *SignIn) Assertion(audience, email, subject string) (string, error) {
	return s.cfg.Keys.Assertion(audience, email, subject)
}

// SignInURL is the sign-in page for returnTo.
func (s *SignIn) SignInURL(returnTo string) string {
	return s.cfg.PublicURL + "/_iap/signin?return=" + url.QueryEscape(returnTo)
}

// TroubleshootURL is the console's explanation of why principal may not
// pass the proxy of a service (for those who may read its policy).
func (s *SignIn) TroubleshootURL(project, region, service, principal string) string {
	return s.cfg.PublicURL + "/console/projects/" + url.PathEscape(project) + "/locations/" + url.PathEscape(region) +
		"/services/" + url.PathEscape(service) + "/troubleshoot?permission=" + url.QueryEscape(iam.PermIAPAccess) + "&principal=" + url.QueryEscape(principal)
}

// APIRoutes registers the API host's routes.
func (s *SignIn) APIRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /_iap/signin-codes", s.createCode)
	m.HandleFunc("GET /_iap/signin", s.signInPage)
	m.HandleFunc("POST /_iap/signin", s.spendCode)
	m.HandleFunc("GET /iap/verify/public_key-jwk", s.cfg.Keys.JWKS)
	m.HandleFunc("GET /_iap/oidc/start", s.startOIDC)
	m.HandleFunc("GET /_iap/oidc/callback", s.oidcCallback)
}

// ServiceHandler serves /_gcp_iap/ on service hosts.
func (s *SignIn) ServiceHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /_gcp_iap/callback", s.callback)
	m.HandleFunc("GET /_gcp_iap/clear_login_cookie", s.signOut)
	return m
}

// record is a stored one-time secret.
type record struct {
	Email   string    `json:"email"`
	Return  string    `json:"return"`
	Expires time.Time `json:"expires"`
}

func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// serviceURL checks that u is an http(s) URL of a service host under the
// domain (never anywhere else: no open redirect) and returns it parsed.
func (s *SignIn) serviceURL(u string) (*url.URL, bool) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.User != nil || p.Opaque != "" {
		return nil, false
	}
	host := strings.ToLower(p.Hostname())
	return p, strings.HasSuffix(host, "."+strings.ToLower(s.cfg.Domain)) && !strings.ContainsAny(host, "/\\@")
}

// createCode answers POST /_iap/signin-codes {"url": SERVICE_URL} with a
// one-time link that signs a browser in as the caller.
func (s *SignIn) createCode(w http.ResponseWriter, r *http.Request) {
	who, err := s.cfg.Authenticate(r)
	if err != nil {
		jsonError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	var req struct {
		URL string `json:"url"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "the body must be {\"url\": SERVICE_URL}")
		return
	}
	if _, ok := s.serviceURL(req.URL); !ok {
		jsonError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "url must be a service URL of this server (…"+s.cfg.Domain+")")
		return
	}
	code := newSecret()
	rec := record{Email: who.Email, Return: req.URL, Expires: s.cfg.Now().Add(CodeTTL)}
	if _, err := state.Put(r.Context(), s.cfg.Store, codesPrefix+hashSecret(code), rec, store.MustNotExist); err != nil {
		jsonError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "could not store the sign-in code")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, map[string]string{"url": s.cfg.PublicURL + "/_iap/signin?code=" + code, "principal": who.Member(),
		"expireTime": rec.Expires.UTC().Format(time.RFC3339)})
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!DOCTYPE html><html lang=en><meta charset=utf-8><meta name=viewport content="width=device-width"><title>{{.}}</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>{{.}}</h1>{{end}}
{{define "signin"}}{{template "head" "Sign in"}}
{{if .Code}}<p>Sign in as <b>{{.Principal}}</b> to reach <b>{{.Return}}</b>?</p>
<form method=post action="/_iap/signin"><input type=hidden name=code value="{{.Code}}"><button type=submit>Sign in</button></form>
<p>This link works once, until {{.Expires}}.</p>
{{else}}<p>{{.Return}} is behind Usher's identity-aware proxy: sign in to reach it.</p>
{{range .Providers}}<p><a href="{{.URL}}">Sign in with {{.Name}}</a></p>{{end}}
<p>On the machine running Usher's CLI, <code>usher iap login '{{.Return}}'</code> prints a one-time link.</p>{{end}}
</body></html>{{end}}
{{define "message"}}{{template "head" .Title}}<p>{{.Text}}</p></body></html>{{end}}`))

func (s *SignIn) render(w http.ResponseWriter, status int, name string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The sign-in form posts here and is redirected to a service host:
	// form-action must allow both.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' *."+s.cfg.Domain+":*; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, data)
}

func (s *SignIn) message(w http.ResponseWriter, status int, title, text string) {
	s.render(w, status, "message", struct{ Title, Text string }{title, text})
}

// signInPage shows whom a one-time link signs in as (spending it needs the
// button, so link previews cannot), or how to sign in.
func (s *SignIn) signInPage(w http.ResponseWriter, r *http.Request) {
	if code := r.URL.Query().Get("code"); code != "" {
		rec, _, err := s.lookup(r.Context(), codesPrefix, code)
		if err != nil {
			s.message(w, http.StatusBadRequest, "Sign-in link not valid", "It was already used, or it expired (links work once, for 2 minutes). Run usher iap login again.")
			return
		}
		s.render(w, http.StatusOK, "signin", signInView{Code: code, Principal: iam.NewPrincipal(rec.Email).Member(),
			Return: rec.Return, Expires: rec.Expires.UTC().Format(time.RFC3339)})
		return
	}
	ret := r.URL.Query().Get("return")
	if _, ok := s.serviceURL(ret); !ok {
		s.message(w, http.StatusBadRequest, "Nothing to sign in to", "Open the service you want to reach; it sends you here.")
		return
	}
	s.render(w, http.StatusOK, "signin", signInView{Return: ret, Providers: s.providerLinks(ret)})
}

type signInView struct {
	Code, Principal, Return, Expires string
	Providers                        []providerLink
}

// spendCode spends a one-time link and sends the browser to the service
// host with a one-time ticket.
func (s *SignIn) spendCode(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	rec, err := s.redeem(r.Context(), codesPrefix, r.PostFormValue("code"))
	if err != nil {
		s.message(w, http.StatusBadRequest, "Sign-in link not valid", "It was already used, or it expired. Run usher iap login again.")
		return
	}
	s.sendWithTicket(w, r, rec.Email, rec.Return)
}

// sendWithTicket sends a signed-in browser to the service host of returnTo
// with a one-time ticket for email.
func (s *SignIn) sendWithTicket(w http.ResponseWriter, r *http.Request, email, returnTo string) {
	target, ok := s.serviceURL(returnTo)
	if !ok {
		s.message(w, http.StatusBadRequest, "Sign-in not valid", "It does not lead to a service of this server.")
		return
	}
	ticket := newSecret()
	tr := record{Email: email, Return: returnTo, Expires: s.cfg.Now().Add(TicketTTL)}
	if _, err := state.Put(r.Context(), s.cfg.Store, ticketsPrefix+hashSecret(ticket), tr, store.MustNotExist); err != nil {
		s.message(w, http.StatusServiceUnavailable, "Try again", "The sign-in could not be recorded.")
		return
	}
	cb := url.URL{Scheme: target.Scheme, Host: target.Host, Path: "/_gcp_iap/callback", RawQuery: "ticket=" + url.QueryEscape(ticket)}
	http.Redirect(w, r, cb.String(), http.StatusSeeOther)
}

// callback spends a ticket on the service host it was issued for, sets the
// session cookie for that host only and returns to the page asked for.
func (s *SignIn) callback(w http.ResponseWriter, r *http.Request) {
	rec, err := s.redeem(r.Context(), ticketsPrefix, r.URL.Query().Get("ticket"))
	target, ok := s.serviceURL(rec.Return)
	host := hostOnly(r.Host)
	if err != nil || !ok || hostOnly(target.Host) != host {
		s.message(w, http.StatusBadRequest, "Sign-in not valid", "The sign-in expired or was for another site. Open the service again.")
		return
	}
	tok, exp, err := s.cfg.Keys.Session(host, rec.Email)
	if err != nil {
		s.message(w, http.StatusServiceUnavailable, "Try again", "The session could not be signed.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", Expires: exp, HttpOnly: true,
		Secure: target.Scheme == "https", SameSite: http.SameSiteLaxMode})
	back := target.EscapedPath()
	if back == "" || !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.HasPrefix(back, "/\\") {
		back = "/"
	}
	if target.RawQuery != "" {
		back += "?" + target.RawQuery
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// signOut clears the session cookie (Google's path).
func (s *SignIn) signOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	s.message(w, http.StatusOK, "Signed out", "You are signed out of this service. Open it again to sign in.")
}

var errBadSecret = errors.New("iap: unknown or expired secret")

func (s *SignIn) lookup(ctx context.Context, prefix, secret string) (record, int64, error) {
	var rec record
	if secret == "" || len(secret) > 100 {
		return rec, 0, errBadSecret
	}
	rev, err := state.Get(ctx, s.cfg.Store, prefix+hashSecret(secret), &rec)
	if err != nil || !s.cfg.Now().Before(rec.Expires) {
		return record{}, 0, errBadSecret
	}
	return rec, rev, nil
}

// redeem spends a one-time secret: only one caller ever gets it.
func (s *SignIn) redeem(ctx context.Context, prefix, secret string) (record, error) {
	rec, rev, err := s.lookup(ctx, prefix, secret)
	if err != nil {
		return rec, err
	}
	if _, err := s.cfg.Store.Delete(ctx, prefix+hashSecret(secret), rev); err != nil {
		return record{}, errBadSecret
	}
	return rec, nil
}

func hostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "status": status, "message": msg}})
}
