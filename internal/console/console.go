// Package console is Usher's web console: the pages a person uses to look at
// services and to change who may invoke them, served by `usher serve` under
// /console/ on API hosts (server-rendered html/template, assets embedded in
// the binary, a little plain JavaScript that nothing depends on).
//
// The console decides nothing itself. Every read and every write is a call to
// the admin API's handler (package api), made in-process as the signed-in
// principal with an access token minted for that principal. So a person sees
// and may change exactly what the same principal could through the CLI or
// gcloud (a viewer sees but cannot grant), validation is the API's, and policy
// writes keep the API's etag compare-and-swap. The console must never read or
// write services, revisions or policies in the store itself; the store holds
// only its sign-in codes and sessions (keys under "console/").
//
// Decisions, as a demanding Cloud Run user would want them:
//
//   - Sign-in. `usher console` asks POST /console/api/sign-in-codes (an API
//     route: Bearer access token, no cookies) for a one-time code that lives
//     two minutes and is stored only as its SHA-256. The printed link
//     /console/signin?code=… shows a page naming the principal with a
//     Continue button; the POST behind it spends the code. A GET never
//     spends it, so link previewers cannot burn it and a link planted on
//     another site cannot sign anyone in without their click. An owner
//     (resourcemanager.projects.setIamPolicy on the project) may ask for a
//     code for another user or service account (`usher console --as`), to
//     see the console as that principal sees it.
//   - Sessions live 12 hours, stored by the SHA-256 of the cookie's secret.
//     The cookie is HttpOnly, SameSite=Strict, Path=/console, Secure on
//     https, and named after the port (usher_session_8080) so two servers on
//     one host do not sign each other out. Signing out deletes the session.
//     Nothing about permissions is cached in a session: the API decides on
//     every request, so a revoked role is gone on the next click.
//   - Browser routes are apart from the API route. Every browser response
//     carries a strict Content-Security-Policy (no inline script or style),
//     nosniff, no-referrer and no framing. Every POST carries the session's
//     CSRF token, and requests a browser marks cross-origin (Sec-Fetch-Site,
//     Origin) are refused before any handler runs.
//   - Anonymous requests get 401 and a page saying how to sign in, never
//     data.
//   - Granting to allUsers or allAuthenticatedUsers needs a second, explicit
//     step: the server answers the first POST with a page that says what the
//     grant means and asks to confirm (confirm_public=yes). It works without
//     JavaScript.
//   - Forms carry the policy etag they were rendered from. A save against a
//     policy that changed since is a conflict: the console shows the current
//     policy and the form again, and writes nothing.
//   - The role list offers Cloud Run roles and the basic roles by title.
//     Service-account roles are left out of a service's list: they grant
//     nothing on a service, although the API would accept them.
//   - Project-level grants are shown on a service as inherited, read-only
//     (they are changed with `usher projects …`). Conditional bindings are
//     shown with their condition and are edited with set-iam-policy.
//   - The Logs tab shows the instances' recent output (the API's
//     services/NAME:logs method) and the requests the gateway refused, when
//     the server records them for the console (Config.Denials); where
//     nothing is recorded it says so and never invents entries.
package console

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/store"
)

// Lifetimes of what the console hands out.
const (
	CodeTTL    = 2 * time.Minute
	SessionTTL = 12 * time.Hour
)

// Config is what the console needs from the server.
type Config struct {
	// Core runs every read and write, as the signed-in principal.
	Core *admin.Core
	// Authenticate returns the caller of an API request (the admin API's
	// own authentication), for the sign-in code endpoint.
	Authenticate func(r *http.Request) (iam.Principal, error)
	// Store keeps sign-in codes and sessions.
	Store store.Store
	// Roles is the role catalogue (titles and descriptions).
	Roles *iam.Roles
	// Project is the project /console/ opens.
	Project string
	// SecureCookies marks cookies Secure even when the request did not
	// arrive over TLS (a TLS-terminating proxy in front).
	SecureCookies bool
	// Denials, if set, lists refused requests on the Logs tab.
	Denials DenialLog
	Now     func() time.Time
	Log     *slog.Logger
}

// Console serves /console/.
type Console struct {
	cfg     Config
	handler http.Handler
	pages   *renderer

	mu      sync.Mutex
	flashes map[string]string // session id → message for the next page
}

// New builds the console and its routes.
func New(cfg Config) (*Console, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	pages, err := newRenderer(cfg.Now)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, pages: pages, flashes: map[string]string{}}
	c.handler = c.routes()
	return c, nil
}

// ServeHTTP serves everything under /console/.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

// Route patterns below /console/.
const (
	servicePath = "/console/projects/{project}/locations/{region}/services/{service}"
)

// routes assembles the handler chain. Outermost first: the API route is split
// off and never reads cookies; browser routes get security headers, then
// cross-origin refusal, then the mux, whose signed-in routes load the session
// and check the CSRF token of every POST.
func (c *Console) routes() http.Handler {
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("POST /console/api/sign-in-codes", c.apiHandler(c.createSignInCode))
	apiMux.HandleFunc("/console/api/", c.apiHandler(func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{Code: http.StatusNotFound, Status: "NOT_FOUND", Message: "no console API method at " + r.Method + " " + r.URL.Path}
	}))

	m := http.NewServeMux()
	m.Handle("GET /console/static/{file}", c.pages.assets())
	m.Handle("GET /console/signin", c.anonymous(c.signInPage))
	m.Handle("POST /console/signin", c.anonymous(c.signIn))
	m.Handle("POST /console/signout", c.signedIn(c.signOut))
	m.Handle("GET /console/{$}", c.signedIn(c.home))
	m.Handle("GET /console/projects", c.signedIn(c.projectsList)) // pages.go: the project picker
	m.Handle("GET /console/projects/{project}/services", c.signedIn(c.servicesList))
	m.Handle("GET "+servicePath, c.signedIn(c.overview))
	m.Handle("GET "+servicePath+"/revisions", c.signedIn(c.revisions))
	m.Handle("GET "+servicePath+"/permissions", c.signedIn(c.permissions))
	m.Handle("GET "+servicePath+"/permissions/grant", c.signedIn(c.grantForm))
	m.Handle("POST "+servicePath+"/permissions/grant", c.signedIn(c.grant))
	m.Handle("POST "+servicePath+"/permissions/remove", c.signedIn(c.remove))
	m.Handle("GET "+servicePath+"/logs", c.signedIn(c.logs))
	m.Handle("GET "+servicePath+"/metrics", c.signedIn(c.metrics))           // metrics.go
	m.Handle("POST "+servicePath+"/iap", c.signedIn(c.iapToggle))            // iap.go
	m.Handle("GET "+servicePath+"/troubleshoot", c.signedIn(c.troubleshoot)) // troubleshoot.go: why a denial
	c.routesJobs(m)                                                          // jobs.go
	m.Handle("/console/", c.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) error {
		return notFound("There is no console page at %s.", r.URL.Path)
	}))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, &pageError{Code: http.StatusForbidden, Title: "Cross-site request refused",
			Message: "This request came from another site. The console only accepts changes made from its own pages."})
	}))
	browser := securityHeaders(cop.Handler(m))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/console/api/") {
			apiMux.ServeHTTP(w, r)
			return
		}
		browser.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows only the console's own scripts, styles and
// images, no framing, and forms that post back to the console.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every browser response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// pageHandler serves a signed-in page; s is the session.
type pageHandler func(w http.ResponseWriter, r *http.Request, s *session) error

// signedIn loads the session (401 and the sign-in page without one) and, on
// POST, checks the session's CSRF token before calling h.
func (c *Console) signedIn(h pageHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.loadSession(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if s == nil {
			c.clearCookieIfPresent(w, r)
			c.fail(w, r, nil, errSignInRequired)
			return
		}
		if r.Method == http.MethodPost {
			if err := c.checkCSRF(w, r, s); err != nil {
				c.fail(w, r, s, err)
				return
			}
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// anonymous serves a page that needs no session.
func (c *Console) anonymous(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			c.fail(w, r, nil, err)
		}
	})
}

// home opens the default project's services.
// home opens the first project's services, or the project picker for a
// principal who may not list them (a role on another project only).
func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) error {
	target := servicesURL(c.cfg.Project)
	if c.cfg.Core != nil { // (a console without a core, in tests, has one project)
		b, err := c.backend(r, s)
		if err == nil {
			_, err = b.core.AuthorizeProject(r.Context(), b.caller, c.cfg.Project, iam.PermServicesList)
		}
		if err != nil {
			target = "/console/projects"
		}
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// setFlash leaves a message for the session's next page.
func (c *Console) setFlash(s *session, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flashes[s.id] = msg
}

// takeFlash returns and forgets the session's message.
func (c *Console) takeFlash(s *session) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := c.flashes[s.id]
	delete(c.flashes, s.id)
	return msg
}

// forget drops what is kept in memory for a session.
func (c *Console) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.flashes, id)
}

// backend is the admin core as the session's principal sees it.
func (c *Console) backend(r *http.Request, s *session) (*backend, error) {
	caller := &admin.Caller{Principal: s.principal, Via: "console", AccountUID: s.rec.UID}
	if s.rec.IssuedBy != "" && s.rec.IssuedBy != s.rec.Email {
		caller.Impersonator = s.rec.IssuedBy
	}
	return &backend{core: c.cfg.Core, caller: caller, ctx: r.Context()}, nil
}
