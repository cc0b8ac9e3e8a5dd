package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Store keys of the console's own records, by the SHA-256 (hex) of their
// secret, so the store never holds a usable code or session.
const (
	codesPrefix    = "console/signin-codes/"
	sessionsPrefix = "console/sessions/"
)

// signInCode is a one-time code waiting to be exchanged for a session.
type signInCode struct {
	Email    string `json:"email"`
	IssuedBy string `json:"issuedBy"`
	// UID is the unique ID of the service account Email names, so the
	// session acts for that account only, never a re-created namesake.
	UID     string    `json:"uid,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// sessionRecord is a signed-in browser.
type sessionRecord struct {
	Email string `json:"email"`
	// IssuedBy is who asked for the sign-in link: someone else than Email
	// when an administrator signed in as Email.
	IssuedBy string    `json:"issuedBy,omitempty"`
	UID      string    `json:"uid,omitempty"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
}

// session is the signed-in browser of a request.
type session struct {
	id        string // store key suffix: hash of the cookie's secret
	rec       sessionRecord
	principal iam.Principal
}

// newSecret returns 256 random bits, URL-safe.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// maxSecretLen bounds secrets read from requests before hashing them.
const maxSecretLen = 128

// signInCodeResponse is what POST /console/api/sign-in-codes answers.
type signInCodeResponse struct {
	Principal  string `json:"principal"`
	Path       string `json:"path"`
	ExpireTime string `json:"expireTime"`
}

// createSignInCode answers POST /console/api/sign-in-codes: a one-time code
// for the caller or, for an owner, for the principal the body names.
func (c *Console) createSignInCode(w http.ResponseWriter, r *http.Request) error {
	caller, err := c.cfg.Authenticate(r)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return ae
		}
		return &apiError{Code: http.StatusUnauthorized, Status: "UNAUTHENTICATED", Message: "Request had invalid authentication credentials."}
	}
	var req struct {
		Project   string `json:"project"`
		Principal string `json:"principal"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return invalidRequest("reading the request body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return invalidRequest("Invalid JSON payload received. %v", err)
		}
	}
	target := caller
	if req.Principal != "" {
		m, err := iam.ParseMember(req.Principal)
		if err != nil {
			return invalidRequest("%v", err)
		}
		if m.Kind != iam.KindUser && m.Kind != iam.KindServiceAccount {
			return invalidRequest("a console session is for one user or service account (user:EMAIL or serviceAccount:EMAIL), not %s", req.Principal)
		}
		target = iam.NewPrincipal(m.Value)
	}
	if target.Email != caller.Email {
		// Seeing the console as someone else is acting as them in every
		// project they can touch: it needs the authority to grant them
		// anything in every project of this server (an owner of each), and
		// it is recorded as impersonation.
		if err := c.cfg.Core.AuthorizeImpersonation(r.Context(), &admin.Caller{Principal: caller, Via: "console"}, target); err != nil {
			return err
		}
	}
	now := c.cfg.Now()
	code := newSecret()
	rec := signInCode{Email: target.Email, IssuedBy: caller.Email, Created: now, Expires: now.Add(CodeTTL)}
	if target.Kind == iam.ServiceAccount {
		if rec.UID, err = c.cfg.Core.AccountUID(r.Context(), target.Email); err != nil {
			return err
		}
	}
	if _, err := state.Put(r.Context(), c.cfg.Store, codesPrefix+hashSecret(code), rec, store.MustNotExist); err != nil {
		return err
	}
	c.sweep(r.Context(), now)
	c.cfg.Log.Info("console sign-in code issued", "principal", target.Member(), "caller", caller.Member(), "expires", rec.Expires)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, signInCodeResponse{
		Principal:  target.Member(),
		Path:       "/console/signin?code=" + code,
		ExpireTime: rec.Expires.UTC().Format(time.RFC3339),
	})
}

// sweep deletes expired codes and sessions. It is best effort: a failure
// leaves records that can no longer be used anyway.
func (c *Console) sweep(ctx context.Context, now time.Time) {
	for _, prefix := range []string{codesPrefix, sessionsPrefix} {
		entries, _, err := c.cfg.Store.List(ctx, prefix)
		if err != nil {
			c.cfg.Log.Warn("console: listing expired records", "prefix", prefix, "err", err)
			continue
		}
		for _, e := range entries {
			var v struct {
				Expires time.Time `json:"expires"`
			}
			if json.Unmarshal(e.Value, &v) == nil && v.Expires.After(now) {
				continue
			}
			c.cfg.Store.Delete(ctx, e.Key, e.Revision)
		}
	}
}

// errBadCode is the answer to a code that is unknown, used or expired; the
// three are indistinguishable on purpose.
var errBadCode = &pageError{Code: http.StatusBadRequest, Title: "This sign-in link does not work",
	Message: "It was already used, or it expired (links work once, for 2 minutes). Run `usher console` again for a new one."}

// lookupCode reads a code without spending it.
func (c *Console) lookupCode(ctx context.Context, code string) (signInCode, int64, error) {
	var rec signInCode
	if code == "" || len(code) > maxSecretLen {
		return rec, 0, errBadCode
	}
	rev, err := state.Get(ctx, c.cfg.Store, codesPrefix+hashSecret(code), &rec)
	if errors.Is(err, store.ErrNotFound) {
		return rec, 0, errBadCode
	}
	if err != nil {
		return rec, 0, err
	}
	if !c.cfg.Now().Before(rec.Expires) {
		return rec, 0, errBadCode
	}
	return rec, rev, nil
}

// redeemCode spends a code: deleting it at the revision just read makes
// exactly one of any concurrent redemptions succeed.
func (c *Console) redeemCode(ctx context.Context, code string) (signInCode, error) {
	rec, rev, err := c.lookupCode(ctx, code)
	if err != nil {
		return rec, err
	}
	_, err = c.cfg.Store.Delete(ctx, codesPrefix+hashSecret(code), rev)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return rec, errBadCode
	}
	return rec, err
}

// signInPage shows whom a sign-in link signs in as, with a button that spends
// it; without a code it says how to get one.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) error {
	code := r.URL.Query().Get("code")
	if code == "" {
		return errSignInRequired
	}
	rec, _, err := c.lookupCode(r.Context(), code)
	if err != nil {
		return err
	}
	return c.pages.render(w, http.StatusOK, "signin.html", &view{
		Title: "Sign in",
		Data: signInView{
			Principal: iam.NewPrincipal(rec.Email).Member(),
			Email:     rec.Email,
			Code:      code,
			Expires:   rec.Expires,
		},
	})
}

type signInView struct {
	Principal string
	Email     string
	Code      string
	Expires   time.Time
}

// signIn spends a code and starts a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	rec, err := c.redeemCode(r.Context(), r.PostFormValue("code"))
	if err != nil {
		return err
	}
	if old, err := r.Cookie(c.cookieName(r)); err == nil && len(old.Value) <= maxSecretLen {
		id := hashSecret(old.Value)
		c.cfg.Store.Delete(r.Context(), sessionsPrefix+id, store.AnyRevision)
		c.forget(id)
	}
	now := c.cfg.Now()
	secret := newSecret()
	sess := sessionRecord{Email: rec.Email, IssuedBy: rec.IssuedBy, UID: rec.UID, CSRF: newSecret(), Created: now, Expires: now.Add(SessionTTL)}
	if _, err := state.Put(r.Context(), c.cfg.Store, sessionsPrefix+hashSecret(secret), sess, store.MustNotExist); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name:     c.cookieName(r),
		Value:    secret,
		Path:     c.cookiePath(r),
		MaxAge:   int(SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   c.secure(r),
		SameSite: http.SameSiteStrictMode,
	})
	c.cfg.Log.Info("console session started", "principal", iam.NewPrincipal(rec.Email).Member(), "issued_by", rec.IssuedBy)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
	return nil
}

// signOut ends the session.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) error {
	if _, err := c.cfg.Store.Delete(r.Context(), sessionsPrefix+s.id, store.AnyRevision); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	c.forget(s.id)
	c.clearCookie(w, r)
	return c.pages.render(w, http.StatusOK, "signedout.html", &view{Title: "Signed out"})
}

// loadSession returns the request's session, or nil when it has none that is
// valid.
func (c *Console) loadSession(r *http.Request) (*session, error) {
	ck, err := r.Cookie(c.cookieName(r))
	if err != nil || ck.Value == "" || len(ck.Value) > maxSecretLen {
		return nil, nil
	}
	id := hashSecret(ck.Value)
	var rec sessionRecord
	rev, err := state.Get(r.Context(), c.cfg.Store, sessionsPrefix+id, &rec)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !c.cfg.Now().Before(rec.Expires) || rec.Email == "" || rec.CSRF == "" {
		c.cfg.Store.Delete(r.Context(), sessionsPrefix+id, rev)
		c.forget(id)
		return nil, nil
	}
	return &session{id: id, rec: rec, principal: iam.NewPrincipal(rec.Email)}, nil
}

// errCSRF refuses a state-changing request without the session's token.
var errCSRF = &pageError{Code: http.StatusForbidden, Title: "Request refused",
	Message: "The form did not carry this session's security token. Reload the page and try again."}

// checkCSRF compares the form's token with the session's, in constant time.
func (c *Console) checkCSRF(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		return &pageError{Code: http.StatusBadRequest, Title: "Bad request", Message: "The form could not be read.", Err: err}
	}
	got := r.PostForm.Get("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.rec.CSRF)) != 1 {
		return errCSRF
	}
	return nil
}

// cookieName names the session cookie after the port: cookies are scoped by
// host, not port, and two servers on one machine must not share one. Under
// HTTPS it carries the __Host- prefix: the browser then takes it only
// Secure, from this exact host, for Path=/, so no sibling host under the
// same domain (a service host) can set or shadow it.
func (c *Console) cookieName(r *http.Request) string {
	name := "usher_session"
	if _, port, err := net.SplitHostPort(r.Host); err == nil && port != "" && isDigits(port) {
		name += "_" + port
	}
	if c.secure(r) {
		return "__Host-" + name
	}
	return name
}

// cookiePath is /console, or / under HTTPS as the __Host- prefix requires.
func (c *Console) cookiePath(r *http.Request) string {
	if c.secure(r) {
		return "/"
	}
	return "/console"
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.cfg.SecureCookies }

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(r), Value: "", Path: c.cookiePath(r), MaxAge: -1,
		HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
}

// clearCookieIfPresent clears a session cookie the server no longer knows.
func (c *Console) clearCookieIfPresent(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(c.cookieName(r)); err == nil {
		c.clearCookie(w, r)
	}
}
