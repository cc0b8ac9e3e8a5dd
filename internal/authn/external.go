package authn

// Trusted external OIDC issuers (Dex, Keycloak, Google accounts, …).
//
// A Multi verifier picks the verifier by the token's "iss", peeked from the
// unverified payload after the size bound, the canonical-form check and the
// RS256 allow-list: Usher's own issuer goes to the existing Verifier, a
// configured external issuer to a go-oidc IDTokenVerifier whose key set is
// ours (remoteKeys): keys are looked up by issuer+kid, and an unknown kid
// refetches the issuer's JWKS at most once per MinRefresh. Any other issuer
// is refused (ErrIssuer). Verified external tokens are cached until exp like
// own ones, so a repeated token costs no RSA work and no I/O.
//
// Discovery happens in the background (Start): until an issuer's discovery
// document and JWKS have been fetched, its tokens are refused (fail closed),
// and discovery is retried.

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrIssuerUnavailable means the token names a trusted external issuer whose
// discovery has not succeeded yet.
var ErrIssuerUnavailable = errors.New("authn: trusted issuer not available yet")

// Defaults for ExternalConfig.
const (
	DefaultJWKSMinRefresh   = time.Minute
	DefaultJWKSKeyMaxAge    = 5 * time.Minute
	DefaultDiscoveryRetry   = 30 * time.Second
	defaultExternalTimeout  = 10 * time.Second
	maxExternalDocumentSize = 1 << 20
	// MaxExternalTokenLifetime bounds exp - iat of an external issuer's
	// token: Google's rule for federated tokens. A token without iat is
	// refused, so every accepted one is bounded.
	MaxExternalTokenLifetime = 24 * time.Hour
)

// ExternalIssuer is one trusted OIDC issuer.
type ExternalIssuer struct {
	// Issuer is the exact "iss" value and the discovery base URL.
	Issuer string `json:"issuer"`
	// GroupsClaim names the claim (an array of strings) holding the user's
	// groups; empty means "groups".
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// ClientID and ClientSecret, when set, offer the issuer as a sign-in
	// provider for the identity-aware proxy (authorization code with PKCE;
	// the client's redirect URI is PUBLIC_URL/_iap/oidc/callback).
	ClientID     string `json:"clientID,omitempty"`
	ClientSecret string `json:"clientSecret,omitempty"`
	// Name is what the sign-in page calls the provider (default: the issuer).
	Name string `json:"name,omitempty"`
}

// ExternalConfig configures the external issuers of a Multi verifier.
type ExternalConfig struct {
	Issuers []ExternalIssuer
	// HTTPClient fetches discovery documents and JWKS; default a client with
	// a 10s timeout.
	HTTPClient *http.Client
	// MinRefresh is the least time between two JWKS refetches of one issuer
	// caused by an unknown kid; default 1 minute.
	MinRefresh time.Duration
	// KeyMaxAge is how long fetched keys, and tokens verified with them, are
	// trusted before the JWKS is fetched again: a key that leaves the JWKS
	// stops verifying within about twice this; default 5 minutes.
	KeyMaxAge time.Duration
	// DiscoveryRetry is the wait between failed discovery attempts; default 30s.
	DiscoveryRetry time.Duration
	// CacheEntries bounds the verified external token cache (0: default,
	// negative: disabled).
	CacheEntries int
	Log          *slog.Logger
}

// Multi verifies tokens from Usher's own issuer and from trusted external
// issuers. It is safe for concurrent use.
type Multi struct {
	own   *Verifier
	ext   map[string]*external
	cache *cache
	log   *slog.Logger
	retry time.Duration
}

type external struct {
	cfg      ExternalIssuer
	client   *http.Client
	min      time.Duration
	maxAge   time.Duration
	now      func() time.Time
	verifier atomic.Pointer[oidc.IDTokenVerifier] // nil until discovered
	keys     atomic.Pointer[remoteKeys]
}

// NewMulti returns a verifier trusting own's issuer and cfg.Issuers. It does
// no I/O: call Start to discover the external issuers.
func NewMulti(own *Verifier, cfg ExternalConfig) (*Multi, error) {
	m := &Multi{own: own, ext: map[string]*external{}, log: cfg.Log, retry: cfg.DiscoveryRetry}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.retry <= 0 {
		m.retry = DefaultDiscoveryRetry
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultExternalTimeout}
	}
	minRefresh := cfg.MinRefresh
	if minRefresh <= 0 {
		minRefresh = DefaultJWKSMinRefresh
	}
	maxAge := cfg.KeyMaxAge
	if maxAge <= 0 {
		maxAge = DefaultJWKSKeyMaxAge
	}
	for _, is := range cfg.Issuers {
		if !strings.HasPrefix(is.Issuer, "https://") && !strings.HasPrefix(is.Issuer, "http://") {
			return nil, fmt.Errorf("trusted issuer %q: must be an http(s) URL", is.Issuer)
		}
		if is.Issuer == own.issuer {
			return nil, fmt.Errorf("trusted issuer %q is Usher's own issuer", is.Issuer)
		}
		if _, dup := m.ext[is.Issuer]; dup {
			return nil, fmt.Errorf("trusted issuer %q listed twice", is.Issuer)
		}
		if is.GroupsClaim == "" {
			is.GroupsClaim = "groups"
		}
		m.ext[is.Issuer] = &external{cfg: is, client: client, min: minRefresh, maxAge: maxAge, now: own.now}
	}
	switch {
	case cfg.CacheEntries == 0:
		m.cache = newCache(DefaultCacheEntries)
	case cfg.CacheEntries > 0:
		m.cache = newCache(cfg.CacheEntries)
	}
	return m, nil
}

// Start discovers every external issuer in the background, retrying failures
// every DiscoveryRetry until ctx ends.
func (m *Multi) Start(ctx context.Context) {
	for _, e := range m.ext {
		go func() {
			for {
				err := e.discover(ctx)
				if err == nil {
					m.log.Info("trusted issuer discovered", "issuer", e.cfg.Issuer)
					return
				}
				m.log.Warn("trusted issuer discovery failed; its tokens are refused until it succeeds",
					"issuer", e.cfg.Issuer, "err", err, "retry", m.retry)
				select {
				case <-ctx.Done():
					return
				case <-time.After(m.retry):
				}
			}
		}()
	}
}

// Discover discovers every external issuer once, synchronously, returning
// the first error. Tests use it; servers use Start.
func (m *Multi) Discover(ctx context.Context) error {
	for _, e := range m.ext {
		if err := e.discover(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (e *external) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, defaultExternalTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, e.client), e.cfg.Issuer)
	if err != nil {
		return err
	}
	var doc struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKS == "" {
		return fmt.Errorf("discovery document of %q has no jwks_uri", e.cfg.Issuer)
	}
	ks := &remoteKeys{url: doc.JWKS, client: e.client, min: e.min, maxAge: e.maxAge, now: e.now}
	if err := ks.fetch(ctx); err != nil {
		return err
	}
	e.keys.Store(ks)
	e.verifier.Store(oidc.NewVerifier(e.cfg.Issuer, ks, &oidc.Config{
		SkipClientIDCheck:    true, // the gateway checks the audience per service
		SupportedSigningAlgs: []string{"RS256"},
		Now:                  e.now,
	}))
	return nil
}

// Verify checks token against the issuer it names. Audience is left to the
// caller, as with Verifier.Verify.
func (m *Multi) Verify(token string) (*Identity, error) {
	if len(token) > m.own.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(token), m.own.maxBytes)
	}
	now := m.own.now()
	// Hot path: a token seen before costs a cache lookup, no parsing.
	if m.own.cache != nil {
		if id, ok, err := m.own.cache.get(token, now); ok {
			return id, err
		}
	}
	if m.cache != nil {
		if id, ok, err := m.cache.get(token, now); ok {
			return id, err
		}
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return nil, err
	}
	if iss == m.own.issuer {
		return m.own.Verify(token)
	}
	e, ok := m.ext[iss]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a trusted issuer", ErrIssuer, iss)
	}
	id, err := e.verify(token, now)
	if err != nil {
		return nil, err
	}
	if m.cache != nil {
		// Cached at most KeyMaxAge: a token whose key left the JWKS is
		// verified again, and refused, soon after (remoteKeys).
		deadline := id.Expiry
		if d := now.Add(e.maxAge); d.Before(deadline) {
			deadline = d
		}
		m.cache.put(token, id, deadline, now)
	}
	return id, nil
}

// peekIssuer returns the unverified "iss" of a canonical RS256 compact JWS.
func peekIssuer(token string) (string, error) {
	if err := checkCompact(token); err != nil {
		return "", err
	}
	tok, err := jwt.ParseSigned(token, allowedAlgs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return "", fmt.Errorf("%w: %v", ErrAlgorithm, err)
		}
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return "", fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return c.Issuer, nil
}

func (e *external) verify(token string, now time.Time) (*Identity, error) {
	v := e.verifier.Load()
	if v == nil {
		return nil, fmt.Errorf("%w: %q", ErrIssuerUnavailable, e.cfg.Issuer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultExternalTimeout)
	defer cancel()
	t, err := v.Verify(ctx, token)
	if err != nil {
		if _, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			return nil, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if t.Subject == "" {
		return nil, fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	if t.Expiry.IsZero() {
		return nil, fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if t.IssuedAt.IsZero() {
		return nil, fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	if life := t.Expiry.Sub(t.IssuedAt); life > MaxExternalTokenLifetime {
		return nil, fmt.Errorf("%w: exp - iat is %s, at most %s for an external issuer's token", ErrLifetime, life, MaxExternalTokenLifetime)
	}
	if t.IssuedAt.After(now.Add(DefaultLeeway)) {
		return nil, fmt.Errorf("%w: issued in the future", ErrNotYetValid)
	}
	var c map[string]json.RawMessage
	if err := t.Claims(&c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	id := &Identity{
		Issuer:   t.Issuer,
		Subject:  t.Subject,
		Audience: t.Audience,
		IssuedAt: t.IssuedAt,
		Expiry:   t.Expiry,
		External: true,
	}
	var email string
	var verified bool
	_ = json.Unmarshal(c["email"], &email)
	_ = json.Unmarshal(c["email_verified"], &verified) // only a JSON true counts
	// An unverified email, or one that claims to be a service account, is no
	// identity: the principal is merely authenticated.
	if verified && email != "" && !strings.HasSuffix(strings.ToLower(email), ".gserviceaccount.com") {
		id.Email, id.EmailVerified = strings.ToLower(email), true
	}
	var groups []string
	if json.Unmarshal(c[e.cfg.GroupsClaim], &groups) == nil {
		for _, g := range groups {
			if g != "" {
				id.Groups = append(id.Groups, strings.ToLower(g))
			}
		}
	}
	return id, nil
}

// remoteKeys is one external issuer's JWKS, keyed by kid. An unknown kid
// refetches it at most once per min; keys fetched more than maxAge ago are
// revalidated (refetched, at most once per min) by the next verification, so a
// key that leaves the JWKS stops verifying within maxAge (plus min while the
// issuer is unreachable: keys are not dropped because a fetch failed). No
// lock is held across a fetch: while one verification fetches, others use
// the keys already known, and every issuer has its own remoteKeys. It
// implements oidc.KeySet.
type remoteKeys struct {
	url    string
	client *http.Client
	min    time.Duration
	maxAge time.Duration
	now    func() time.Time

	mu          sync.Mutex
	keys        map[string]*rsa.PublicKey
	fetchedAt   time.Time // of the last successful fetch
	lastAttempt time.Time // of the last refetch started by a verification
	fetching    bool
}

// VerifySignature implements oidc.KeySet.
func (k *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, allowedAlgs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAlgorithm, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	kid := jws.Signatures[0].Header.KeyID
	if kid == "" {
		return nil, fmt.Errorf("%w: no kid in header", ErrUnknownKey)
	}
	key, err := k.key(ctx, kid)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return payload, nil
}

func (k *remoteKeys) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	k.mu.Lock()
	key, known := k.keys[kid]
	now := k.now()
	mayFetch := !k.fetching && (k.lastAttempt.IsZero() || now.Sub(k.lastAttempt) >= k.min)
	stale := now.Sub(k.fetchedAt) >= k.maxAge
	if known && (!stale || !mayFetch) {
		k.mu.Unlock()
		return key, nil
	}
	if !known && !mayFetch {
		k.mu.Unlock()
		return nil, fmt.Errorf("%w: kid %q (JWKS refetch rate-limited)", ErrUnknownKey, kid)
	}
	k.fetching, k.lastAttempt = true, now
	k.mu.Unlock()

	keys, err := k.get(ctx) // no lock held: other verifications go on

	k.mu.Lock()
	defer k.mu.Unlock()
	k.fetching = false
	if err != nil {
		if known { // the issuer is unreachable, not the key revoked
			return key, nil
		}
		return nil, fmt.Errorf("%w: kid %q: %v", ErrUnknownKey, kid, err)
	}
	k.keys, k.fetchedAt = keys, k.now()
	if key, ok := k.keys[kid]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}

// fetch fetches the JWKS now (discovery).
func (k *remoteKeys) fetch(ctx context.Context) error {
	keys, err := k.get(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys, k.fetchedAt = keys, k.now()
	return nil
}

// get fetches and decodes the JWKS; it touches no state.
func (k *remoteKeys) get(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS %s: %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxExternalDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading JWKS: %w", err)
	}
	if len(body) > maxExternalDocumentSize {
		return nil, fmt.Errorf("JWKS %s larger than %d bytes", k.url, maxExternalDocumentSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding JWKS %s: %w", k.url, err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, jwk := range set.Keys {
		pub, ok := jwk.Key.(*rsa.PublicKey)
		if !ok || jwk.KeyID == "" || (jwk.Use != "" && jwk.Use != "sig") ||
			(jwk.Algorithm != "" && jwk.Algorithm != string(jose.RS256)) {
			continue
		}
		keys[jwk.KeyID] = pub
	}
	return keys, nil
}
