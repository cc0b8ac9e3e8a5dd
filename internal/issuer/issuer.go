// Package issuer is Usher's built-in OIDC issuer. It mints RS256 JWTs (identity
// tokens for invoking services, access tokens for the admin API), serves the
// discovery document and JWKS that let anyone verify them, and manages the
// signing keys: created on first start, persisted in the state store, rotated
// every RotationPeriod and shared by every node through store watches.
//
// It must never mint a token that outlives MaxTokenLifetime, never stop
// publishing a key while tokens it signed can still be valid, and never do I/O
// on the verification path (Key answers from an in-memory snapshot). It does
// not verify tokens itself; that is package authn's job.
package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/store"
)

const (
	// MaxTokenLifetime bounds exp-iat of every minted token. Verifiers (authn)
	// enforce the same bound.
	MaxTokenLifetime = time.Hour
	// DefaultRotationPeriod is how long a signing key stays current.
	DefaultRotationPeriod = 24 * time.Hour

	// retireGrace is how long a superseded key stays published and verifying:
	// long enough for every token it signed to expire, plus slack for clock
	// skew and for nodes that pick up the rotation late and keep minting with
	// the old key for a moment.
	retireGrace = MaxTokenLifetime + 5*time.Minute

	// KeysKey is the store key holding the signing key set.
	KeysKey = "issuer/keys"

	keyBits = 2048
	// maxCASAttempts bounds compare-and-swap retries against concurrent writers.
	maxCASAttempts = 10
	// jwksMaxAge is how long clients may cache the JWKS. It is well inside
	// retireGrace's slack so a cached JWKS never lacks a still-valid old key.
	jwksMaxAge = 5 * time.Minute
)

// Config configures an Issuer.
type Config struct {
	// URL is the issuer identifier, the "iss" claim, e.g. http://localhost:8080.
	// It must be an absolute http(s) URL without a trailing slash, query or
	// fragment, because discovery and JWKS URLs are built by appending to it.
	URL string
	// RotationPeriod is how long a key signs before a new one replaces it;
	// default 24h.
	RotationPeriod time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Issuer mints tokens and publishes its verification keys. It is safe for
// concurrent use.
type Issuer struct {
	st        store.Store
	url       string
	period    time.Duration
	now       func() time.Time
	discovery []byte

	// mu serialises snapshot replacement; readers never take it.
	mu   sync.Mutex
	snap atomic.Pointer[keySet]
	// lastMissReload is when an unknown kid last made Key read the store
	// (unix nanoseconds).
	lastMissReload atomic.Int64
}

// keyFile is the JSON stored at KeysKey. Private keys are stored in the clear:
// the state store is the trust root (its file is 0600 in the data dir).
type keyFile struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	KID string `json:"kid"`
	// PrivateKey is a PEM "PRIVATE KEY" block (PKCS #8).
	PrivateKey string    `json:"privateKey"`
	CreatedAt  time.Time `json:"createdAt"`
	// RetireAt is set when the key is superseded: it keeps verifying until
	// then and is dropped by the first rotation after it.
	RetireAt time.Time `json:"retireAt,omitzero"`
}

// keySet is an immutable, decoded snapshot of keyFile.
type keySet struct {
	// rev is the store revision of the entry it was decoded from, so a stale
	// read never replaces a newer snapshot.
	rev     int64
	current *signingKey
	byKID   map[string]*rsa.PublicKey
	jwks    []byte
	// certs is the same keys as {kid: PEM certificate}, the shape of
	// Google's /oauth2/v1/certs (what google-auth for Python reads by
	// default): each a self-signed certificate of its key.
	certs []byte
}

type signingKey struct {
	kid       string
	createdAt time.Time
	signer    jose.Signer
}

// New loads the signing keys from st, creating the first key if there is none
// and rotating if the current key is older than RotationPeriod.
func New(ctx context.Context, st store.Store, cfg Config) (*Issuer, error) {
	if err := checkURL(cfg.URL); err != nil {
		return nil, err
	}
	i := &Issuer{st: st, url: cfg.URL, period: cfg.RotationPeriod, now: cfg.Now}
	if i.period <= 0 {
		i.period = DefaultRotationPeriod
	}
	if i.now == nil {
		i.now = time.Now
	}
	var err error
	if i.discovery, err = json.Marshal(discoveryDoc{
		Issuer:  i.url,
		JWKSURI: i.url + "/oauth2/v3/certs",
		// People sign in through the console (or `usher auth login`).
		AuthorizationEndpoint: i.url + "/console/signin",
		TokenEndpoint:         i.url + "/token",
		ResponseTypes:         []string{"id_token"},
		SubjectTypes:          []string{"public"},
		IDTokenSigningAlgs:    []string{string(jose.RS256)},
		ClaimsSupported:       []string{"aud", "email", "email_verified", "exp", "iat", "iss", "sub"},
	}); err != nil {
		return nil, err
	}
	if err := i.rotateIfDue(ctx); err != nil {
		return nil, err
	}
	return i, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("issuer: URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.HasSuffix(s, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("issuer: URL %q must be an http(s) URL without trailing slash, query or fragment", s)
	}
	return nil
}

// URL returns the issuer identifier (the "iss" claim).
func (i *Issuer) URL() string { return i.url }

// Key returns the public key with the given kid if it is published. It reads an
// in-memory snapshot: no locks, no I/O.
func (i *Issuer) Key(kid string) (*rsa.PublicKey, bool) {
	if k, ok := i.snap.Load().byKID[kid]; ok {
		return k, true
	}
	// A key another node just rotated in is in the store before any token
	// it signs exists, but this node's watch may not have delivered it yet:
	// read the store once, at most once per second, so no node rejects a
	// token another node just minted and unknown kids cannot flood the store.
	if !i.mayReload() {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := i.Reload(ctx); err != nil {
		return nil, false
	}
	k, ok := i.snap.Load().byKID[kid]
	return k, ok
}

// mayReload reports whether an unknown kid may trigger a store read now.
func (i *Issuer) mayReload() bool {
	now := i.now().UnixNano()
	last := i.lastMissReload.Load()
	if now-last < int64(time.Second) {
		return false
	}
	return i.lastMissReload.CompareAndSwap(last, now)
}

// Rotate makes a new key current. The previous current key keeps verifying for
// at least MaxTokenLifetime + 5 min; keys past that are dropped.
func (i *Issuer) Rotate(ctx context.Context) error {
	return i.rotate(ctx, true)
}

// rotateIfDue creates the first key, or rotates, unless the store already holds
// a current key younger than the rotation period (possibly written by another
// node since we last looked).
func (i *Issuer) rotateIfDue(ctx context.Context) error {
	return i.rotate(ctx, false)
}

func (i *Issuer) rotate(ctx context.Context, force bool) error {
	var fresh *storedKey // generated once, reused across CAS retries
	for range maxCASAttempts {
		ent, found, _, err := i.load(ctx)
		if err != nil {
			return err
		}
		var kf keyFile
		if found {
			ks, err := i.apply(ent)
			if err != nil {
				// Never overwrite keys we cannot read: that would silently
				// invalidate every outstanding token.
				return err
			}
			if !force && !i.due(ks) {
				return nil
			}
			if err := json.Unmarshal(ent.Value, &kf); err != nil {
				return fmt.Errorf("issuer: decode %s: %w", KeysKey, err)
			}
		}
		if fresh == nil {
			if fresh, err = newStoredKey(); err != nil {
				return err
			}
		}
		now := i.now()
		fresh.CreatedAt = now
		next := kf.rotated(*fresh, now)
		val, err := json.Marshal(next)
		if err != nil {
			return err
		}
		expected := store.MustNotExist
		if found {
			expected = ent.Revision
		}
		rev, err := i.st.Put(ctx, KeysKey, val, expected)
		if errors.Is(err, store.ErrConflict) {
			continue // another node wrote first; re-read and decide again
		}
		if err != nil {
			return fmt.Errorf("issuer: write %s: %w", KeysKey, err)
		}
		_, err = i.apply(store.Entry{Key: KeysKey, Value: val, Revision: rev})
		return err
	}
	return fmt.Errorf("issuer: rotate: %d conflicting writes in a row: %w", maxCASAttempts, store.ErrConflict)
}

// due reports whether the current key has been current for a full period.
func (i *Issuer) due(ks *keySet) bool {
	return i.untilDue(ks) <= 0
}

func (i *Issuer) untilDue(ks *keySet) time.Duration {
	return ks.current.createdAt.Add(i.period).Sub(i.now())
}

// rotated returns the key file after making k current at now: the old current
// key gets its retirement date and keys already past theirs are dropped.
func (kf keyFile) rotated(k storedKey, now time.Time) keyFile {
	var out keyFile
	for _, old := range kf.Keys {
		switch {
		case old.RetireAt.IsZero():
			old.RetireAt = now.Add(retireGrace)
		case !now.Before(old.RetireAt):
			continue
		}
		out.Keys = append(out.Keys, old)
	}
	out.Keys = append(out.Keys, k)
	return out
}

func newStoredKey() (*storedKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, fmt.Errorf("issuer: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("issuer: encode key: %w", err)
	}
	kid, err := keyID(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &storedKey{
		KID:        kid,
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}, nil
}

// keyID derives the kid from the RFC 7638 thumbprint, so it is stable and
// collision-free without coordination; 40 hex digits, like Google's.
func keyID(pub *rsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("issuer: key thumbprint: %w", err)
	}
	return hex.EncodeToString(tp[:20]), nil
}

// load reads the key entry. storeRev is the store revision the read reflects,
// the right place to start a watch from (List, not Get: a key's own revision
// may predate what the store can replay).
func (i *Issuer) load(ctx context.Context) (ent store.Entry, found bool, storeRev int64, err error) {
	ents, storeRev, err := i.st.List(ctx, KeysKey)
	if err != nil {
		return store.Entry{}, false, 0, fmt.Errorf("issuer: read %s: %w", KeysKey, err)
	}
	for _, e := range ents {
		if e.Key == KeysKey {
			return e, true, storeRev, nil
		}
	}
	return store.Entry{}, false, storeRev, nil
}

// Reload re-reads the key set from the store once.
func (i *Issuer) Reload(ctx context.Context) error {
	ent, found, _, err := i.load(ctx)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("issuer: %s: %w", KeysKey, store.ErrNotFound)
	}
	_, err = i.apply(ent)
	return err
}

// apply decodes ent and publishes it as the snapshot unless a newer one is
// already published. It returns the snapshot in effect.
func (i *Issuer) apply(ent store.Entry) (*keySet, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if cur := i.snap.Load(); cur != nil && cur.rev >= ent.Revision {
		return cur, nil
	}
	ks, err := decodeKeySet(ent)
	if err != nil {
		return nil, err
	}
	i.snap.Store(ks)
	return ks, nil
}

func decodeKeySet(ent store.Entry) (*keySet, error) {
	var kf keyFile
	if err := json.Unmarshal(ent.Value, &kf); err != nil {
		return nil, fmt.Errorf("issuer: decode %s: %w", KeysKey, err)
	}
	if len(kf.Keys) == 0 {
		return nil, fmt.Errorf("issuer: %s holds no keys", KeysKey)
	}
	ks := &keySet{rev: ent.Revision, byKID: make(map[string]*rsa.PublicKey, len(kf.Keys))}
	var current *storedKey
	var currentKey *rsa.PrivateKey
	var jwks jwkSet
	certs := map[string]string{}
	for idx := range kf.Keys {
		sk := &kf.Keys[idx]
		priv, err := parsePrivateKey(sk.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("issuer: key %q: %w", sk.KID, err)
		}
		if _, dup := ks.byKID[sk.KID]; dup || sk.KID == "" {
			return nil, fmt.Errorf("issuer: %s: empty or duplicate kid %q", KeysKey, sk.KID)
		}
		ks.byKID[sk.KID] = &priv.PublicKey
		jwks.Keys = append(jwks.Keys, publicJWK(sk.KID, &priv.PublicKey))
		cert, err := keyCertificate(sk.KID, sk.CreatedAt, priv)
		if err != nil {
			return nil, fmt.Errorf("issuer: key %q: certificate: %w", sk.KID, err)
		}
		certs[sk.KID] = cert
		// The current key is the newest unretired one; fall back to the newest
		// overall so a hand-edited file still yields a signer.
		if current == nil || betterCurrent(sk, current) {
			current, currentKey = sk, priv
		}
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: currentKey, KeyID: current.KID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("issuer: signer: %w", err)
	}
	ks.current = &signingKey{kid: current.KID, createdAt: current.CreatedAt, signer: signer}
	// Newest first, so the current key leads the published set.
	slices.Reverse(jwks.Keys)
	if ks.jwks, err = json.Marshal(jwks); err != nil {
		return nil, err
	}
	if ks.certs, err = json.Marshal(certs); err != nil {
		return nil, err
	}
	return ks, nil
}

// keyCertificate is a self-signed X.509 certificate of a signing key, valid
// from a day before it was made for ten years (it carries the key; when the
// key may be used is the key file's business).
func keyCertificate(kid string, created time.Time, priv *rsa.PrivateKey) (string, error) {
	sum := sha256.Sum256([]byte(kid))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(sum[:16]),
		Subject:      pkix.Name{CommonName: kid},
		NotBefore:    created.Add(-24 * time.Hour),
		NotAfter:     created.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

func betterCurrent(a, b *storedKey) bool {
	if a.RetireAt.IsZero() != b.RetireAt.IsZero() {
		return a.RetireAt.IsZero()
	}
	return !a.CreatedAt.Before(b.CreatedAt)
}

func parsePrivateKey(s string) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an RSA key (%T)", k)
	}
	if rk.N.BitLen() < keyBits {
		return nil, fmt.Errorf("RSA key too small (%d bits)", rk.N.BitLen())
	}
	return rk, nil
}

// Watch follows changes to the key set in the store until ctx ends, so keys
// rotated by another node are published and used here too. It also rotates
// when the current key reaches RotationPeriod (concurrent nodes settle on one
// new key through compare-and-swap). It returns when ctx ends or the store is
// closed; transient errors are logged and retried.
func (i *Issuer) Watch(ctx context.Context) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	for {
		loaded, err := i.follow(ctx)
		if ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
			return
		}
		if loaded {
			backoff = minBackoff
		}
		if errors.Is(err, store.ErrCompacted) {
			continue // missed changes: re-read and watch from there
		}
		slog.Warn("issuer: key watch failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

var errWatchEnded = errors.New("issuer: store watch ended")

// follow reads the key set, then applies watched changes and rotates when due,
// until the watch fails. loaded reports whether the initial read succeeded.
func (i *Issuer) follow(ctx context.Context) (loaded bool, err error) {
	ent, found, rev, err := i.load(ctx)
	if err != nil {
		return false, err
	}
	if found {
		if _, err := i.apply(ent); err != nil {
			return false, err
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := i.st.Watch(wctx, KeysKey, rev)

	// A failed rotation is retried after this long rather than immediately.
	const rotateRetry = time.Minute
	timer := time.NewTimer(i.untilDue(i.snap.Load()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case resp, ok := <-events:
			if !ok {
				return true, errWatchEnded
			}
			if resp.Err != nil {
				return true, resp.Err
			}
			for _, ev := range resp.Events {
				if ev.Entry.Key != KeysKey {
					continue
				}
				if ev.Type != store.EventPut {
					// Keep serving the keys we have; the next due rotation
					// recreates the entry.
					slog.Warn("issuer: signing keys deleted from the store; keeping in-memory keys")
					continue
				}
				if _, err := i.apply(ev.Entry); err != nil {
					slog.Error("issuer: ignoring unreadable key set", "err", err, "revision", ev.Entry.Revision)
				}
			}
			timer.Reset(i.untilDue(i.snap.Load()))
		case <-timer.C:
			next := i.untilDue(i.snap.Load())
			if next <= 0 {
				if err := i.rotateIfDue(ctx); err != nil {
					slog.Error("issuer: key rotation failed", "err", err)
					next = rotateRetry
				} else {
					next = i.untilDue(i.snap.Load())
				}
			}
			timer.Reset(max(next, 0))
		}
	}
}

// Claims describes a token to mint.
type Claims struct {
	Subject string
	Email   string
	// Audience becomes "aud": a string for one audience, an array for several.
	Audience []string
	// Expiry defaults to, and is capped at, now + MaxTokenLifetime.
	Expiry        time.Time
	EmailVerified bool
	// Extra holds additional claims such as "scope" or "token_use". It may not
	// set the registered claims Mint controls.
	Extra map[string]any
}

// Token kinds, the "token_use" claim every token Mint signs carries. Access
// tokens authenticate to the admin API; identity tokens invoke services. A
// verifier on either side checks the kind, so one can never stand in for the
// other.
const (
	TokenUseAccess   = authn.TokenUseAccess
	TokenUseIdentity = authn.TokenUseIdentity
)

// Audiences reserved by Usher.
const (
	// AdminAudience marks access tokens for the admin API. It is never the
	// audience of an identity token, whoever asks.
	AdminAudience = "usher-admin-api"
	// CLIClientID is the audience of identity tokens the CLI mints for a
	// user without --audiences (as gcloud's own client id is on Google).
	CLIClientID = "usher-cli"
)

// ErrReservedAudience is returned for an identity token asked for the admin
// API's audience.
var ErrReservedAudience = errors.New("issuer: audience " + AdminAudience + " is reserved for access tokens")

// MintAccess mints an access token for the admin API (scope defaults to
// cloud-platform).
func (i *Issuer) MintAccess(subject, email, scope string, exp time.Time) (string, error) {
	if scope == "" {
		scope = "https://www.googleapis.com/auth/cloud-platform"
	}
	return i.Mint(Claims{
		Subject: subject, Email: email, EmailVerified: true,
		Audience: []string{AdminAudience}, Expiry: exp,
		Extra: map[string]any{"scope": scope, "token_use": TokenUseAccess},
	})
}

// MintIdentity mints an identity token for audiences, which may not include
// the admin API's.
func (i *Issuer) MintIdentity(subject, email string, audiences []string, exp time.Time) (string, error) {
	return i.Mint(Claims{Subject: subject, Email: email, EmailVerified: true, Audience: audiences, Expiry: exp})
}

// reserved claims are set by Mint and may not come from Claims.Extra.
var reserved = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"email": true, "email_verified": true,
}

// Mint signs a JWT with the current key. Like Google ID tokens it carries iss,
// sub, aud, iat and exp, and no nbf.
func (i *Issuer) Mint(c Claims) (string, error) {
	if c.Subject == "" {
		return "", errors.New("issuer: mint: empty subject")
	}
	now := i.now()
	exp := c.Expiry
	if limit := now.Add(MaxTokenLifetime); exp.IsZero() || exp.After(limit) {
		exp = limit
	}
	if exp.Unix() <= now.Unix() {
		return "", fmt.Errorf("issuer: mint: expiry %s is not after now", exp.UTC().Format(time.RFC3339))
	}
	m := make(map[string]any, len(c.Extra)+7)
	for k, v := range c.Extra {
		if reserved[k] {
			return "", fmt.Errorf("issuer: mint: extra claim %q is reserved", k)
		}
		m[k] = v
	}
	// Every token says which kind it is; only an access token may name the
	// admin API as its audience.
	switch m["token_use"] {
	case nil:
		m["token_use"] = TokenUseIdentity
	case TokenUseAccess, TokenUseIdentity:
	default:
		return "", fmt.Errorf("issuer: mint: token_use %v is not %q or %q", m["token_use"], TokenUseAccess, TokenUseIdentity)
	}
	if m["token_use"] != TokenUseAccess && slices.Contains(c.Audience, AdminAudience) {
		return "", ErrReservedAudience
	}
	m["iss"] = i.url
	m["sub"] = c.Subject
	switch len(c.Audience) {
	case 0:
	case 1:
		m["aud"] = c.Audience[0]
	default:
		m["aud"] = c.Audience
	}
	if c.Email != "" {
		m["email"] = c.Email
		m["email_verified"] = c.EmailVerified
	}
	// NumericDates are whole seconds; truncating both keeps exp-iat within the cap.
	m["iat"] = now.Unix()
	m["exp"] = exp.Unix()
	tok, err := jwt.Signed(i.snap.Load().current.signer).Claims(m).Serialize()
	if err != nil {
		return "", fmt.Errorf("issuer: mint: %w", err)
	}
	return tok, nil
}

type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported       []string `json:"claims_supported"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

type jwk struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func publicJWK(kid string, pub *rsa.PublicKey) jwk {
	return jwk{
		Kty: "RSA", Alg: string(jose.RS256), Use: "sig", Kid: kid,
		N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

// Discovery serves /.well-known/openid-configuration.
func (i *Issuer) Discovery(w http.ResponseWriter, r *http.Request) {
	serveJSON(w, r, i.discovery, time.Hour)
}

// Certs serves the published keys as PEM certificates by kid, as Google's
// /oauth2/v1/certs does.
func (i *Issuer) Certs(w http.ResponseWriter, r *http.Request) {
	serveJSON(w, r, i.snap.Load().certs, jwksMaxAge)
}

// JWKS serves the published public keys (the discovery document's jwks_uri).
func (i *Issuer) JWKS(w http.ResponseWriter, r *http.Request) {
	serveJSON(w, r, i.snap.Load().jwks, jwksMaxAge)
}

func serveJSON(w http.ResponseWriter, r *http.Request, body []byte, maxAge time.Duration) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds())))
	w.Write(body)
}
