// Package authn verifies the RS256 JWTs minted by Usher's built-in OIDC issuer:
// identity tokens presented to the gateway when invoking a service, and access
// tokens presented to the admin API.
//
// It sits on the request hot path, so it must never do I/O per request (keys
// come from an in-memory KeySource, verified tokens are cached in memory) and it
// must never accept a token whose signature, algorithm, issuer and validity
// window it has not checked. Audience is deliberately left to the caller, which
// knows which service is being invoked.
package authn

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Sentinel errors. Verify wraps them with detail; test with errors.Is.
var (
	ErrMalformed    = errors.New("authn: malformed token")
	ErrTooLarge     = errors.New("authn: token too large")
	ErrAlgorithm    = errors.New("authn: signature algorithm not allowed")
	ErrUnknownKey   = errors.New("authn: unknown signing key")
	ErrSignature    = errors.New("authn: invalid signature")
	ErrIssuer       = errors.New("authn: wrong issuer")
	ErrExpired      = errors.New("authn: token expired")
	ErrNotYetValid  = errors.New("authn: token not yet valid")
	ErrLifetime     = errors.New("authn: token lifetime too long")
	ErrMissingClaim = errors.New("authn: missing required claim")
	// ErrAudience is not returned by Verify (which does not check audience); it
	// is here so callers checking Identity.HasAudience report a uniform error.
	ErrAudience = errors.New("authn: wrong audience")
)

// maxLifetime mirrors issuer.MaxTokenLifetime. It is duplicated rather than
// imported so that authn stays a leaf package.
const maxLifetime = time.Hour

// Defaults for the zero Config fields.
const (
	DefaultLeeway        = 30 * time.Second
	DefaultMaxTokenBytes = 8192
	DefaultCacheEntries  = 65536
)

// allowedAlgs is the algorithm allow-list. Anything else (none, HS*, ES*, PS*)
// is rejected before any key is looked up, which rules out alg-confusion attacks.
var allowedAlgs = []jose.SignatureAlgorithm{jose.RS256}

// KeySource resolves a key ID to an RSA public key. Implementations must answer
// from memory without blocking: Key is called on the request path.
type KeySource interface {
	Key(kid string) (*rsa.PublicKey, bool)
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact "iss" value tokens must carry. Required.
	Issuer string
	// Keys resolves header kids to verification keys. Required.
	Keys KeySource
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Leeway tolerates clock skew on exp, iat and nbf; default 30s.
	Leeway time.Duration
	// MaxTokenBytes bounds the token size, checked before any parsing; default 8192.
	MaxTokenBytes int
	// CacheEntries bounds the verified-token cache; default 65536, negative
	// disables the cache.
	CacheEntries int
}

// Identity is what a verified token says about its bearer.
//
// Identities may be served from the verified-token cache and shared between
// concurrent requests: treat them (including Audience) as read-only.
type Identity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Audience      []string
	IssuedAt      time.Time
	Expiry        time.Time
	// Scope is the "scope" claim, if any (access tokens).
	Scope string
	// TokenUse is the "token_use" claim, if any.
	TokenUse string
	// External marks a token from a trusted external issuer (external.go).
	// Email is then set only if the issuer verified it (email_verified).
	External bool
	// Groups are the external issuer's group claim values, lower-case.
	Groups []string
}

// Token kinds: the "token_use" claim of every token Usher's issuer signs.
// Access tokens authenticate to the admin API, identity tokens invoke
// services; each side accepts only its own kind.
const (
	TokenUseAccess   = "access"
	TokenUseIdentity = "id"
)

// IsAccessToken reports whether the token is an access token of Usher's own
// issuer, the only kind the admin API accepts.
func (id *Identity) IsAccessToken() bool { return !id.External && id.TokenUse == TokenUseAccess }

// IsIdentityToken reports whether the token may invoke a service: an
// identity token of Usher's issuer, or a trusted external issuer's token.
func (id *Identity) IsIdentityToken() bool { return id.External || id.TokenUse == TokenUseIdentity }

// HasAudience reports whether a is exactly one of the token's audiences.
func (id *Identity) HasAudience(a string) bool {
	for _, x := range id.Audience {
		if x == a {
			return true
		}
	}
	return false
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	issuer   string
	keys     KeySource
	now      func() time.Time
	leeway   time.Duration
	maxBytes int
	cache    *cache // nil when disabled
}

// New returns a Verifier. It panics if Issuer or Keys is missing: a verifier
// without them could only fail open or fail everything, both programming errors.
func New(cfg Config) *Verifier {
	if cfg.Issuer == "" || cfg.Keys == nil {
		panic("authn: Config.Issuer and Config.Keys are required")
	}
	v := &Verifier{
		issuer:   cfg.Issuer,
		keys:     cfg.Keys,
		now:      cfg.Now,
		leeway:   cfg.Leeway,
		maxBytes: cfg.MaxTokenBytes,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.leeway <= 0 {
		v.leeway = DefaultLeeway
	}
	if v.maxBytes <= 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}
	switch {
	case cfg.CacheEntries == 0:
		v.cache = newCache(DefaultCacheEntries)
	case cfg.CacheEntries > 0:
		v.cache = newCache(cfg.CacheEntries)
	}
	return v
}

// claims is the token payload as far as Usher cares.
type claims struct {
	jwt.Claims
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
	Scope         string `json:"scope,omitempty"`
	TokenUse      string `json:"token_use,omitempty"`
}

// Verify checks token and returns the identity it asserts. It does not check
// the audience; use Identity.HasAudience.
func (v *Verifier) Verify(token string) (*Identity, error) {
	// Size first: nothing below should ever see an attacker-sized input.
	if len(token) > v.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(token), v.maxBytes)
	}
	now := v.now()
	if v.cache != nil {
		if id, ok, err := v.cache.get(token, now); ok {
			return id, err
		}
	}
	id, deadline, err := v.verify(token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(token, id, deadline, now)
	}
	return id, nil
}

// verify does the full, uncached verification. deadline is the instant from
// which the token counts as expired (exp + leeway).
func (v *Verifier) verify(token string, now time.Time) (*Identity, time.Time, error) {
	var zero time.Time
	if err := checkCompact(token); err != nil {
		return nil, zero, err
	}
	tok, err := jwt.ParseSigned(token, allowedAlgs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, zero, fmt.Errorf("%w: %v", ErrAlgorithm, err)
		}
		return nil, zero, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(tok.Headers) != 1 {
		return nil, zero, fmt.Errorf("%w: %d signatures", ErrMalformed, len(tok.Headers))
	}
	kid := tok.Headers[0].KeyID
	if kid == "" {
		return nil, zero, fmt.Errorf("%w: no kid in header", ErrUnknownKey)
	}
	key, ok := v.keys.Key(kid)
	if !ok || key == nil {
		return nil, zero, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	// Decode the payload, then verify the signature over those same bytes. The
	// claims are used only if verification succeeds; decoding first lets a bad
	// payload be reported as malformed rather than as a forgery, with one RSA
	// operation either way.
	var c claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, zero, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if err := tok.Claims(key); err != nil {
		return nil, zero, fmt.Errorf("%w: %v", ErrSignature, err)
	}

	if c.Issuer != v.issuer {
		return nil, zero, fmt.Errorf("%w: %q", ErrIssuer, c.Issuer)
	}
	if c.Expiry == nil {
		return nil, zero, fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if c.IssuedAt == nil {
		return nil, zero, fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	exp, iat := c.Expiry.Time(), c.IssuedAt.Time()
	deadline := exp.Add(v.leeway)
	if !now.Before(deadline) {
		return nil, zero, fmt.Errorf("%w: at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if iat.After(now.Add(v.leeway)) {
		return nil, zero, fmt.Errorf("%w: issued in the future (%s)", ErrNotYetValid, iat.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(v.leeway)) {
		return nil, zero, fmt.Errorf("%w: nbf %s", ErrNotYetValid, c.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	// The issuer drops a retired key once every token it signed must have
	// expired; that only holds if no token lives longer than maxLifetime.
	if exp.Sub(iat) > maxLifetime+v.leeway {
		return nil, zero, fmt.Errorf("%w: %s", ErrLifetime, exp.Sub(iat))
	}
	if c.Subject == "" {
		return nil, zero, fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	return &Identity{
		Issuer:        c.Issuer,
		Subject:       c.Subject,
		Email:         c.Email,
		EmailVerified: c.EmailVerified,
		Audience:      []string(c.Audience),
		IssuedAt:      iat,
		Expiry:        exp,
		Scope:         c.Scope,
		TokenUse:      c.TokenUse,
	}, deadline, nil
}

// checkCompact accepts only the canonical JWS compact form: three base64url
// segments without padding. Canonical matters because the signature
// covers the re-encoded decoded bytes, so a segment with stray trailing bits
// would otherwise verify as a different string carrying the same signature.
func checkCompact(token string) error {
	if token == "" {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if n := strings.Count(token, "."); n != 2 {
		return fmt.Errorf("%w: %d segments, want 3", ErrMalformed, n+1)
	}
	// Empty segments are left to the parser so that, e.g., an alg "none" token
	// with an empty signature is reported as an algorithm error.
	for seg := range strings.SplitSeq(token, ".") {
		if seg != "" && !canonicalBase64URL(seg) {
			return fmt.Errorf("%w: segment is not canonical unpadded base64url", ErrMalformed)
		}
	}
	return nil
}

func canonicalBase64URL(s string) bool {
	if len(s)%4 == 1 {
		return false
	}
	var last byte
	for i := 0; i < len(s); i++ {
		v, ok := b64val(s[i])
		if !ok {
			return false
		}
		last = v
	}
	// The final symbol of a 2- or 3-symbol group carries bits past the last
	// byte; the canonical encoding has them zero.
	switch len(s) % 4 {
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

func b64val(c byte) (byte, bool) {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A', true
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26, true
	case c >= '0' && c <= '9':
		return c - '0' + 52, true
	case c == '-':
		return 62, true
	case c == '_':
		return 63, true
	}
	return 0, false
}

// BearerToken extracts T from an Authorization header value "Bearer T". The
// scheme is case-insensitive; T must be a single non-empty RFC 6750 b64token.
// It returns a substring of header and does not allocate.
func BearerToken(header string) (string, bool) {
	const scheme = "Bearer"
	if len(header) < len(scheme)+2 || header[len(scheme)] != ' ' ||
		!strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	tok := header[len(scheme)+1:]
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	i := 0
	for i < len(tok) && isB64TokenChar(tok[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	for i < len(tok) && tok[i] == '=' {
		i++
	}
	if i != len(tok) {
		return "", false
	}
	return tok, true
}

func isB64TokenChar(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '+', '/':
		return true
	}
	return false
}
