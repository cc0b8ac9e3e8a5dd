package iap

// Sign-in with external OpenID Connect providers: the authorization code
// flow with PKCE, done by golang.org/x/oauth2 and verified by go-oidc. The
// provider's ID token must carry a verified email; the person is then that
// email (user:EMAIL), exactly as a token of the same issuer is at the
// gateway. The state and the PKCE verifier live in the store for ten
// minutes and are spent once; the nonce is checked in the ID token.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Provider is an external OpenID Connect provider people may sign in with.
type Provider struct {
	Issuer, ClientID, ClientSecret, Name string
}

const (
	statesPrefix = "iap/oidc-states/"
	stateTTL     = 10 * time.Minute
)

// pending is a started sign-in, keyed by its state.
type pending struct {
	Provider int       `json:"provider"`
	Verifier string    `json:"verifier"`
	Nonce    string    `json:"nonce"`
	Return   string    `json:"return"`
	Expires  time.Time `json:"expires"`
}

func (s *SignIn) redirectURL() string { return s.cfg.PublicURL + "/_iap/oidc/callback" }

// oauth discovers provider i and returns its OAuth 2.0 configuration and
// ID token verifier. Discovery is cached by go-oidc's remote key set per
// call; sign-ins are rare enough that a fresh discovery each time is fine.
func (s *SignIn) oauth(ctx context.Context, i int) (*oauth2.Config, *oidc.Provider, error) {
	if i < 0 || i >= len(s.cfg.Providers) {
		return nil, nil, errors.New("iap: no such provider")
	}
	p := s.cfg.Providers[i]
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, s.httpClient()), p.Issuer)
	if err != nil {
		return nil, nil, err
	}
	cfg := &oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: op.Endpoint(),
		RedirectURL: s.redirectURL(), Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	return cfg, op, nil
}

func (s *SignIn) httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second}
}

// startOIDC answers GET /_iap/oidc/start?provider=N&return=URL: it sends
// the browser to the provider.
func (s *SignIn) startOIDC(w http.ResponseWriter, r *http.Request) {
	ret := r.URL.Query().Get("return")
	if _, ok := s.serviceURL(ret); !ok {
		s.message(w, http.StatusBadRequest, "Nothing to sign in to", "Open the service you want to reach; it sends you here.")
		return
	}
	i, err := strconv.Atoi(r.URL.Query().Get("provider"))
	if err != nil {
		s.message(w, http.StatusBadRequest, "No such provider", "Pick a provider on the sign-in page.")
		return
	}
	cfg, _, err := s.oauth(r.Context(), i)
	if err != nil {
		s.message(w, http.StatusBadGateway, "The provider is unavailable", "Its discovery document could not be read; try again later.")
		return
	}
	st, verifier, nonce := newSecret(), oauth2.GenerateVerifier(), newSecret()
	rec := pending{Provider: i, Verifier: verifier, Nonce: nonce, Return: ret, Expires: s.cfg.Now().Add(stateTTL)}
	if _, err := state.Put(r.Context(), s.cfg.Store, statesPrefix+hashSecret(st), rec, store.MustNotExist); err != nil {
		s.message(w, http.StatusServiceUnavailable, "Try again", "The sign-in could not be recorded.")
		return
	}
	http.Redirect(w, r, cfg.AuthCodeURL(st, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), http.StatusFound)
}

// oidcCallback answers the provider's redirect: it spends the state,
// exchanges the code (with the PKCE verifier), verifies the ID token and
// sends the browser on to the service host with a one-time ticket.
func (s *SignIn) oidcCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		s.message(w, http.StatusForbidden, "Sign-in refused", "The provider said: "+e+".")
		return
	}
	var rec pending
	key := statesPrefix + hashSecret(q.Get("state"))
	rev, err := state.Get(r.Context(), s.cfg.Store, key, &rec)
	if err != nil || q.Get("state") == "" || !s.cfg.Now().Before(rec.Expires) {
		s.message(w, http.StatusBadRequest, "Sign-in expired", "Open the service again to sign in.")
		return
	}
	if _, err := s.cfg.Store.Delete(r.Context(), key, rev); err != nil {
		s.message(w, http.StatusBadRequest, "Sign-in expired", "Open the service again to sign in.")
		return
	}
	cfg, op, err := s.oauth(r.Context(), rec.Provider)
	if err != nil {
		s.message(w, http.StatusBadGateway, "The provider is unavailable", "Try again later.")
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), s.httpClient()), 10*time.Second)
	defer cancel()
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(rec.Verifier))
	if err != nil {
		s.message(w, http.StatusForbidden, "Sign-in failed", "The provider did not accept the sign-in.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := op.Verifier(&oidc.Config{ClientID: s.cfg.Providers[rec.Provider].ClientID}).Verify(ctx, raw)
	if err != nil || id.Nonce != rec.Nonce {
		s.message(w, http.StatusForbidden, "Sign-in failed", "The provider's ID token did not verify.")
		return
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
	}
	err = id.Claims(&claims)
	if err == nil && claims.Email == "" {
		// Providers may keep the email to the UserInfo endpoint; it must
		// be about the same subject.
		var info *oidc.UserInfo
		if info, err = op.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && info.Subject == id.Subject {
			claims.Email, claims.EmailVerified = info.Email, info.EmailVerified
		}
	}
	if err != nil || claims.Email == "" || !claims.EmailVerified {
		s.message(w, http.StatusForbidden, "Sign-in failed", "The provider did not vouch for an email address.")
		return
	}
	s.sendWithTicket(w, r, claims.Email, rec.Return)
}

// providerLinks are the sign-in page's provider buttons for returnTo.
func (s *SignIn) providerLinks(returnTo string) []providerLink {
	var out []providerLink
	for i, p := range s.cfg.Providers {
		name := p.Name
		if name == "" {
			name = p.Issuer
		}
		out = append(out, providerLink{Name: name, URL: "/_iap/oidc/start?provider=" + strconv.Itoa(i) + "&return=" + url.QueryEscape(returnTo)})
	}
	return out
}

type providerLink struct{ Name, URL string }
