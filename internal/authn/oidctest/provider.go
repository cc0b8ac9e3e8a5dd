// Package oidctest is a tiny OpenID Connect provider for tests: it serves a
// discovery document and a JWKS over HTTP and signs RS256 ID tokens with
// its own keys, counting JWKS fetches.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Provider is a running test OIDC provider. URL is its issuer.
type Provider struct {
	URL string
	srv *httptest.Server
	// JWKSFetches counts requests for the JWKS.
	JWKSFetches atomic.Int64

	mu        sync.Mutex
	keys      map[string]*rsa.PrivateKey
	published map[string]bool
	hold      chan struct{} // non-nil: JWKS requests wait until it is closed
}

// DefaultKID is the kid of the key a new Provider signs and publishes.
const DefaultKID = "idp-1"

// New starts a provider with one published key, DefaultKID.
func New() *Provider {
	p := &Provider{keys: map[string]*rsa.PrivateKey{}, published: map[string]bool{}}
	p.AddKey(DefaultKID, true)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.URL,
			"authorization_endpoint":                p.URL + "/auth",
			"token_endpoint":                        p.URL + "/token",
			"jwks_uri":                              p.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		p.JWKSFetches.Add(1)
		p.mu.Lock()
		hold := p.hold
		p.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		p.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range p.keys {
			if p.published[kid] {
				set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
			}
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	p.URL = p.srv.URL
	return p
}

// Close stops the provider.
func (p *Provider) Close() { p.srv.Close() }

// AddKey generates a signing key; publish puts it in the JWKS.
func (p *Provider) AddKey(kid string, publish bool) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid] = k
	p.published[kid] = publish
}

// Publish puts a key added earlier in the JWKS.
func (p *Provider) Publish(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published[kid] = true
}

// Unpublish takes a key out of the JWKS (the issuer retired or revoked it).
func (p *Provider) Unpublish(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published[kid] = false
}

// HoldJWKS makes JWKS requests hang until the returned release is called
// (an issuer that stopped answering). Calling release twice is harmless.
func (p *Provider) HoldJWKS() (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.hold = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.hold = nil
			p.mu.Unlock()
			close(ch)
		})
	}
}

// Claims are valid ID token claims for email, audience aud, issued now.
func (p *Provider) Claims(email, aud string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":            p.URL,
		"sub":            "sub-" + email,
		"aud":            aud,
		"email":          email,
		"email_verified": true,
		"iat":            now.Add(-time.Minute).Unix(),
		"exp":            now.Add(time.Hour).Unix(),
	}
}

// Sign signs claims with the key kid.
func (p *Provider) Sign(kid string, claims map[string]any) string {
	p.mu.Lock()
	k := p.keys[kid]
	p.mu.Unlock()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return tok
}

// Token signs claims with DefaultKID.
func (p *Provider) Token(claims map[string]any) string { return p.Sign(DefaultKID, claims) }
