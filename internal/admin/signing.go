package admin

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// signBlob and signJwt (IAM Service Account Credentials) sign with a key
// of the account's own that Usher manages, as Google signs with a
// system-managed key: made at the account's first signature, kept in the
// store under its unique ID (a re-created account gets a new one),
// published at /service_accounts/v1/metadata/{jwk,x509}/EMAIL for whoever
// verifies. These keys are never trusted by Usher itself: the gateway and
// the admin API verify only the built-in issuer's keys, and /token's
// JWT-bearer grant only user-managed keys, so a signed JWT is no Usher
// credential whatever it claims.

// maxSignJWTLifetime is how far in the future a signJwt payload's exp may
// be, as Google allows.
const maxSignJWTLifetime = 12 * time.Hour

// maxSignPayload bounds what is signed.
const maxSignPayload = 64 << 10

// signingKey is a stored system-managed key.
type signingKey struct {
	KeyID      string    `json:"keyId"`
	PrivateKey []byte    `json:"privateKey"` // PKCS #8 DER
	Created    time.Time `json:"created"`
}

// accountSigner returns the account's signing key, making it at first use.
func (c *Core) accountSigner(ctx context.Context, sa apis.ServiceAccount) (string, *rsa.PrivateKey, error) {
	key := state.SigningKeyKey(sa.ProjectID, sa.Email, sa.UniqueID)
	for range 3 {
		var k signingKey
		_, err := state.Get(ctx, c.cfg.Store, key, &k)
		if err == nil {
			priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
			rsaKey, ok := priv.(*rsa.PrivateKey)
			if err != nil || !ok {
				return "", nil, errors.New("stored signing key is unreadable")
			}
			return k.KeyID, rsaKey, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", nil, err
		}
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return "", nil, err
		}
		var id [20]byte
		rand.Read(id[:])
		b, err := json.Marshal(signingKey{KeyID: hex.EncodeToString(id[:]), PrivateKey: der, Created: time.Now().UTC()})
		if err != nil {
			return "", nil, err
		}
		if _, err := c.cfg.Store.Put(ctx, key, b, store.MustNotExist); err != nil && !errors.Is(err, store.ErrConflict) {
			return "", nil, err
		}
		// Made here or by a concurrent first signature: read it back.
	}
	return "", nil, errors.New("signing key: lost every race to make it")
}

// SignBlob is IAM Credentials' signBlob: payload signed (RSASSA-PKCS1-v1_5
// with SHA-256) with the account's system-managed key, for holders of
// iam.serviceAccounts.signBlob on it.
func (c *Core) SignBlob(ctx context.Context, caller *Caller, project, ref string, payload []byte, delegates []string) (keyID string, signature []byte, err error) {
	sa, err := c.impersonate(ctx, caller, project, ref, iam.PermSASignBlob, delegates)
	if err != nil {
		return "", nil, err
	}
	if len(payload) == 0 || len(payload) > maxSignPayload {
		return "", nil, InvalidArgument("payload must be 1 to %d bytes", maxSignPayload)
	}
	kid, priv, err := c.accountSigner(ctx, sa)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(payload)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, sum[:])
	return kid, sig, err
}

// SignJWT is IAM Credentials' signJwt: payload (a JSON object of claims
// whose exp, if set, is at most 12 hours away; else an hour from now) signed as an RS256 JWT with the
// account's system-managed key, for holders of iam.serviceAccounts.signJwt.
func (c *Core) SignJWT(ctx context.Context, caller *Caller, project, ref, payload string, delegates []string) (keyID, jwt string, err error) {
	sa, err := c.impersonate(ctx, caller, project, ref, iam.PermSASignJwt, delegates)
	if err != nil {
		return "", "", err
	}
	if len(payload) == 0 || len(payload) > maxSignPayload {
		return "", "", InvalidArgument("payload must be 1 to %d bytes", maxSignPayload)
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(payload), &claims); err != nil {
		return "", "", InvalidArgument("payload is not a JSON object of claims: %v", err)
	}
	now := c.cfg.Now()
	if _, set := claims["exp"]; !set {
		// Google's rule: a payload without exp expires in an hour.
		claims["exp"] = now.Add(time.Hour).Unix()
	} else if exp, ok := claims["exp"].(float64); !ok || exp <= float64(now.Unix()) || exp > float64(now.Add(maxSignJWTLifetime).Unix()) {
		return "", "", InvalidArgument("payload's exp must be a time in the next 12 hours (seconds since the epoch)")
	}
	kid, priv, err := c.accountSigner(ctx, sa)
	if err != nil {
		return "", "", err
	}
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	body, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, sum[:])
	if err != nil {
		return "", "", err
	}
	return kid, signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// PublicSigningKey is a published key of an account.
type PublicSigningKey struct {
	KeyID   string
	Key     *rsa.PublicKey
	Created time.Time
	// Certificate is a self-signed X.509 certificate of the key, DER.
	Certificate []byte
}

// AccountSigningKeys returns the system-managed key of the account with
// email (public: anyone may verify what it signed), none before its first
// signature. An unknown account has none.
func (c *Core) AccountSigningKeys(ctx context.Context, email string) ([]PublicSigningKey, error) {
	if !strings.Contains(email, "@") {
		return nil, nil // by email only: a unique ID would cost a look through every project
	}
	sa, _, _, err := c.findServiceAccount(ctx, "-", email)
	if err != nil {
		return nil, nil // unknown: nothing published, as for any stranger
	}
	var k signingKey
	if _, err := state.Get(ctx, c.cfg.Store, state.SigningKeyKey(sa.ProjectID, sa.Email, sa.UniqueID), &k); errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	rsaKey, ok := priv.(*rsa.PrivateKey)
	if err != nil || !ok {
		return nil, errors.New("stored signing key is unreadable")
	}
	sum := sha256.Sum256([]byte(k.KeyID))
	tmpl := &x509.Certificate{SerialNumber: new(big.Int).SetBytes(sum[:16]), NotBefore: k.Created.Add(-24 * time.Hour), NotAfter: k.Created.Add(10 * 365 * 24 * time.Hour)}
	tmpl.Subject.CommonName = sa.Email
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaKey.PublicKey, rsaKey)
	if err != nil {
		return nil, err
	}
	return []PublicSigningKey{{KeyID: k.KeyID, Key: &rsaKey.PublicKey, Created: k.Created, Certificate: der}}, nil
}
