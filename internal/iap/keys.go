// Package iap is Usher's identity-aware proxy for people in browsers: the
// signed assertion an app behind IAP receives (X-Goog-Iap-Jwt-Assertion,
// ES256 as Google's), the keys that verify it (published, as Google does, at
// a public_key-jwk path), and the short-lived session a signed-in browser
// carries for one service host.
//
// Assertions and sessions are two kinds of token signed with the same key,
// told apart by audience and a "token_use" claim, so a session cookie can
// never be replayed as an assertion (to an app) or an assertion as a session
// (to the gateway), and neither is ever accepted as an identity or access
// token (package authn allows only RS256 from Usher's issuer).
//
// It must never grant access by itself: it says who a browser is; the
// gateway asks package iam whether that principal may pass.
package iap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/usher-run/usher/internal/store"
)

// KeysKey is where the signing key lives in the store, shared by every node.
const KeysKey = "iap/keys"

// Issuer is the "iss" of assertions, Google's.
const Issuer = "https://cloud.google.com/iap"

// Lifetimes.
const (
	// AssertionLifetime bounds an assertion (Google's are 10 minutes).
	AssertionLifetime = 10 * time.Minute
	// SessionLifetime bounds a browser's session on one service host.
	SessionLifetime = time.Hour
	leeway          = 30 * time.Second
	maxTokenBytes   = 4096
)

// Token kinds.
const (
	useAssertion = "iap_assertion"
	useSession   = "iap_session"
	// sessionAudiencePrefix marks a session's audience (the service host),
	// never an app's assertion audience (/projects/…).
	sessionAudiencePrefix = "iap-session:"
)

// ErrInvalid is any session or assertion that does not verify.
var ErrInvalid = errors.New("iap: invalid token")

// Keys signs and verifies assertions and sessions. It is immutable and safe
// for concurrent use.
type Keys struct {
	kid    string
	pub    *ecdsa.PublicKey
	signer jose.Signer
	jwks   []byte
	now    func() time.Time
}

type storedKey struct {
	KID        string `json:"kid"`
	PrivateKey string `json:"privateKey"` // PEM PKCS #8
}

// LoadKeys reads the signing key from st, creating it on first use (every
// node converges on the one a compare-and-swap create stored).
func LoadKeys(ctx context.Context, st store.Store, now func() time.Time) (*Keys, error) {
	if now == nil {
		now = time.Now
	}
	for attempt := 0; attempt < 3; attempt++ {
		e, err := st.Get(ctx, KeysKey)
		if err == nil {
			var sk storedKey
			if err := json.Unmarshal(e.Value, &sk); err != nil {
				return nil, fmt.Errorf("iap: decoding %s: %w", KeysKey, err)
			}
			return keysFrom(sk, now)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("iap: reading %s: %w", KeysKey, err)
		}
		sk, err := newStoredKey()
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(sk)
		if err != nil {
			return nil, err
		}
		if _, err := st.Put(ctx, KeysKey, b, store.MustNotExist); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("iap: storing %s: %w", KeysKey, err)
		}
	}
	return nil, errors.New("iap: could not load or create the signing key")
}

func newStoredKey() (storedKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return storedKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return storedKey{}, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return storedKey{}, err
	}
	sum := sha256.Sum256(pubDER)
	return storedKey{
		KID:        base64.RawURLEncoding.EncodeToString(sum[:12]),
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}, nil
}

func keysFrom(sk storedKey, now func() time.Time) (*Keys, error) {
	block, _ := pem.Decode([]byte(sk.PrivateKey))
	if block == nil || sk.KID == "" {
		return nil, fmt.Errorf("iap: %s holds no usable key", KeysKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("iap: %s: %w", KeysKey, err)
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("iap: %s is not a P-256 key", KeysKey)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: sk.KID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: sk.KID, Algorithm: string(jose.ES256), Use: "sig"}}})
	if err != nil {
		return nil, err
	}
	return &Keys{kid: sk.KID, pub: &priv.PublicKey, signer: signer, jwks: jwks, now: now}, nil
}

// JWKS serves the verification keys (Google's /iap/verify/public_key-jwk).
func (k *Keys) JWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(k.jwks)
}

// claims of both kinds.
type claims struct {
	jwt.Claims
	Email    string `json:"email"`
	TokenUse string `json:"token_use"`
}

// Audience is an assertion's audience for a Cloud Run service, Google's:
// /projects/PROJECTNUMBER/locations/REGION/services/NAME.
func Audience(projectNumber, region, service string) string {
	return "/projects/" + projectNumber + "/locations/" + region + "/services/" + service
}

// Assertion signs the X-Goog-Iap-Jwt-Assertion of a request by email (sub
// is Google's "accounts.google.com:ID" form with Usher's ID) for audience.
func (k *Keys) Assertion(audience, email, subject string) (string, error) {
	now := k.now()
	return k.sign(claims{
		Claims: jwt.Claims{Issuer: Issuer, Subject: subject, Audience: jwt.Audience{audience},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(AssertionLifetime))},
		Email: email, TokenUse: useAssertion,
	})
}

// Session signs a browser's session on one service host.
func (k *Keys) Session(host, email string) (string, time.Time, error) {
	now := k.now()
	exp := now.Add(SessionLifetime)
	tok, err := k.sign(claims{
		Claims: jwt.Claims{Issuer: Issuer, Subject: email, Audience: jwt.Audience{sessionAudiencePrefix + strings.ToLower(host)},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp)},
		Email: email, TokenUse: useSession,
	})
	return tok, exp, err
}

func (k *Keys) sign(c claims) (string, error) {
	return jwt.Signed(k.signer).Claims(c).Serialize()
}

// VerifySession returns the email a session token for host was signed for.
func (k *Keys) VerifySession(token, host string) (string, error) {
	c, err := k.verify(token, useSession, sessionAudiencePrefix+strings.ToLower(host))
	if err != nil {
		return "", err
	}
	return c.Email, nil
}

// VerifyAssertion checks an assertion for audience, as an app would.
func (k *Keys) VerifyAssertion(token, audience string) (email string, err error) {
	c, err := k.verify(token, useAssertion, audience)
	if err != nil {
		return "", err
	}
	return c.Email, nil
}

func (k *Keys) verify(token, use, audience string) (*claims, error) {
	if len(token) > maxTokenBytes || strings.Count(token, ".") != 2 {
		return nil, ErrInvalid
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID != k.kid {
		return nil, ErrInvalid
	}
	var c claims
	if err := tok.Claims(k.pub, &c); err != nil {
		return nil, ErrInvalid
	}
	if c.TokenUse != use || c.Email == "" {
		return nil, ErrInvalid
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{audience}, Time: k.now()}, leeway); err != nil {
		return nil, ErrInvalid
	}
	if c.IssuedAt == nil || c.Expiry == nil || c.Expiry.Time().Sub(c.IssuedAt.Time()) > SessionLifetime {
		return nil, ErrInvalid
	}
	return &c, nil
}
