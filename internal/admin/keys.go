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
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/orgpolicy"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Service-account keys, as Google's IAM v1 API has them: Usher makes an RSA
// key pair, keeps only the public half, and hands the private half back once,
// inside Google's JSON key file whose token_uri is Usher's /token. A program
// holding the file signs a JWT with it and exchanges it there (RFC 7523) for
// an access token or, with target_audience, an identity token: what
// google.golang.org/api/idtoken and every Google client library do.

// MaxKeysPerAccount is Google's limit of user-managed keys per account.
const MaxKeysPerAccount = 10

// storedKey is a key's public half and state.
type storedKey struct {
	KeyID        string `json:"keyId"`
	Email        string `json:"email"`
	UniqueID     string `json:"uniqueId"` // the account the key was made for
	PublicKeyPEM string `json:"publicKeyPem"`
	ValidAfter   string `json:"validAfterTime"`
	ValidBefore  string `json:"validBeforeTime"`
	Disabled     bool   `json:"disabled,omitempty"`
}

// ServiceAccountKey is IAM v1's ServiceAccountKey.
type ServiceAccountKey struct {
	Name            string `json:"name"`
	PrivateKeyType  string `json:"privateKeyType,omitempty"`
	PrivateKeyData  string `json:"privateKeyData,omitempty"` // only on create
	PublicKeyData   string `json:"publicKeyData,omitempty"`
	ValidAfterTime  string `json:"validAfterTime"`
	ValidBeforeTime string `json:"validBeforeTime"`
	KeyAlgorithm    string `json:"keyAlgorithm"`
	KeyOrigin       string `json:"keyOrigin"`
	KeyType         string `json:"keyType"`
	Disabled        bool   `json:"disabled,omitempty"`
}

func (k storedKey) view(project string) ServiceAccountKey {
	return ServiceAccountKey{
		Name:           apis.ServiceAccountResource(project, k.Email) + "/keys/" + k.KeyID,
		PublicKeyData:  base64.StdEncoding.EncodeToString([]byte(k.PublicKeyPEM)),
		ValidAfterTime: k.ValidAfter, ValidBeforeTime: k.ValidBefore,
		KeyAlgorithm: "KEY_ALG_RSA_2048", KeyOrigin: "GOOGLE_PROVIDED", KeyType: "USER_MANAGED", Disabled: k.Disabled,
	}
}

// CreateServiceAccountKey makes a key for an account
// (iam.serviceAccountKeys.create on it) and returns it with the key file.
func (c *Core) CreateServiceAccountKey(ctx context.Context, caller *Caller, project, ref, keyType string) (*ServiceAccountKey, error) {
	if keyType != "" && keyType != "TYPE_GOOGLE_CREDENTIALS_FILE" {
		return nil, InvalidArgument("privateKeyType %s is not supported by Usher; use TYPE_GOOGLE_CREDENTIALS_FILE", keyType)
	}
	if c.cfg.TokenURL == "" {
		return nil, FailedPrecondition("this server has no token endpoint for key files")
	}
	_, sa, _, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSAKeysCreate)
	if err != nil {
		return nil, err
	}
	if sa.Disabled {
		return nil, FailedPrecondition("Service account %s is disabled; enable it before creating keys.", sa.Email)
	}
	// The org policy of the account's own project decides, as Google's
	// does for the project the account lives in.
	eff, err := c.EffectiveOrgPolicy(ctx, sa.ProjectID)
	if err != nil {
		return nil, err
	}
	if eff.DisableKeyCreation {
		return nil, guardrailViolation("Key creation is not allowed on service account %s: %s is enforced (set by %s). Use the account through impersonation or the metadata server instead of a key file, or change the org policy.",
			sa.Email, orgpolicy.DisableKeyCreation, strings.Join(eff.KeyOrigin, " and "))
	}
	existing, _, err := c.cfg.Store.List(ctx, state.ServiceAccountKeyKey(sa.ProjectID, sa.Email, ""))
	if err != nil {
		return nil, err
	}
	if len(existing) >= MaxKeysPerAccount {
		return nil, FailedPrecondition("Service account %s already has %d keys, the most it may have; delete one first.", sa.Email, MaxKeysPerAccount)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	var id [20]byte
	rand.Read(id[:])
	now := c.cfg.Now().UTC()
	k := storedKey{
		KeyID: hex.EncodeToString(id[:]), Email: sa.Email, UniqueID: sa.UniqueID,
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		ValidAfter:   now.Format(time.RFC3339), ValidBefore: "9999-12-31T23:59:59Z",
	}
	file, err := json.MarshalIndent(map[string]string{
		"type": "service_account", "project_id": sa.ProjectID, "private_key_id": k.KeyID,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		"client_email": sa.Email, "client_id": sa.UniqueID,
		"auth_uri": strings.TrimSuffix(c.cfg.TokenURL, "/token") + "/auth", "token_uri": c.cfg.TokenURL,
		"universe_domain": "googleapis.com",
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	key := state.ServiceAccountKeyKey(sa.ProjectID, sa.Email, k.KeyID)
	if _, err := c.commit(ctx, caller, change{
		writes: []write{{key: key, value: k, expected: store.MustNotExist, conflict: func() error { return Aborted("key id collision; retry") }}},
		record: audit.Record{Kind: audit.KindServiceAccountKeyCreate, Permission: iam.PermSAKeysCreate, Resource: apis.ServiceAccountResource(sa.ProjectID, sa.Email) + "/keys/" + k.KeyID},
	}); err != nil {
		return nil, err
	}
	v := k.view(sa.ProjectID)
	v.PrivateKeyType = "TYPE_GOOGLE_CREDENTIALS_FILE"
	v.PrivateKeyData = base64.StdEncoding.EncodeToString(file)
	return &v, nil
}

// ListServiceAccountKeys lists an account's keys (iam.serviceAccountKeys.list).
func (c *Core) ListServiceAccountKeys(ctx context.Context, caller *Caller, project, ref string) ([]ServiceAccountKey, error) {
	_, sa, _, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSAKeysList)
	if err != nil {
		return nil, err
	}
	entries, _, err := c.cfg.Store.List(ctx, state.ServiceAccountKeyKey(sa.ProjectID, sa.Email, ""))
	if err != nil {
		return nil, err
	}
	keys, err := decodeEntries[storedKey](entries)
	if err != nil {
		return nil, err
	}
	out := []ServiceAccountKey{}
	for _, k := range keys {
		if k.UniqueID == sa.UniqueID { // not a deleted namesake's
			out = append(out, k.view(sa.ProjectID))
		}
	}
	return out, nil
}

// DeleteServiceAccountKey deletes a key (iam.serviceAccountKeys.delete on
// its account); JWTs signed with it are refused from then on.
func (c *Core) DeleteServiceAccountKey(ctx context.Context, caller *Caller, project, ref, keyID string) error {
	_, sa, _, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSAKeysDelete)
	if err != nil {
		return err
	}
	key := state.ServiceAccountKeyKey(sa.ProjectID, sa.Email, keyID)
	var k storedKey
	rev, err := state.Get(ctx, c.cfg.Store, key, &k)
	if errors.Is(err, store.ErrNotFound) {
		return NotFound("Service account key %s does not exist.", keyID)
	}
	if err != nil {
		return err
	}
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: key, value: nil, expected: rev, conflict: func() error { return Aborted("the key changed concurrently; retry") }}},
		record: audit.Record{Kind: audit.KindServiceAccountKeyDelete, Permission: iam.PermSAKeysDelete, Resource: apis.ServiceAccountResource(sa.ProjectID, sa.Email) + "/keys/" + keyID},
	})
	return err
}

// ErrBadAssertion is a JWT-bearer assertion that is not a valid, live key's.
var ErrBadAssertion = errors.New("admin: invalid JWT-bearer assertion")

// maxAssertion bounds what is parsed of an untrusted assertion.
const maxAssertion = 8 << 10

// assertionClaims are the claims a key's JWT carries (RFC 7523; Google's
// target_audience asks for an identity token).
type assertionClaims struct {
	Iss            string `json:"iss"`
	Sub            string `json:"sub"`
	Aud            string `json:"aud"`
	Iat            int64  `json:"iat"`
	Exp            int64  `json:"exp"`
	Scope          string `json:"scope"`
	TargetAudience string `json:"target_audience"`
}

// ExchangeAssertion verifies a JWT signed with a service-account key and
// returns an access token for the account, or an identity token for
// target_audience when the JWT names one. Every failure is ErrBadAssertion
// wrapped with the reason (for the log; the client sees invalid_grant).
func (c *Core) ExchangeAssertion(ctx context.Context, assertion string) (*Tokens, error) {
	bad := func(format string, args ...any) (*Tokens, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadAssertion, fmt.Sprintf(format, args...))
	}
	if c.cfg.TokenURL == "" {
		return bad("this server has no token endpoint")
	}
	if len(assertion) > maxAssertion {
		return bad("over %d bytes", maxAssertion)
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return bad("not a JWT")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims assertionClaims
	if err := decodeSegment(parts[0], &header); err != nil {
		return bad("header: %v", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return bad("claims: %v", err)
	}
	if header.Alg != "RS256" {
		return bad("alg %q, want RS256", header.Alg)
	}
	if header.Kid == "" || strings.ContainsAny(header.Kid, "/.") {
		return bad("no usable kid")
	}
	if claims.Aud != c.cfg.TokenURL {
		return bad("aud %q, want %s", claims.Aud, c.cfg.TokenURL)
	}
	now := c.cfg.Now().Unix()
	const skew = 60
	if claims.Exp == 0 || claims.Iat == 0 || claims.Exp <= now-skew || claims.Iat > now+skew || claims.Exp-claims.Iat > int64(issuer.MaxTokenLifetime/time.Second) {
		return bad("iat %d / exp %d out of range at %d", claims.Iat, claims.Exp, now)
	}
	if claims.Sub != "" && !strings.EqualFold(claims.Sub, claims.Iss) {
		return bad("sub %q differs from iss %q (domain-wide delegation is not supported)", claims.Sub, claims.Iss)
	}
	// The account must exist and be enabled now, and the key must be one
	// made for this very account (not a deleted namesake).
	if !strings.Contains(claims.Iss, "@") {
		// A key file's iss is the account's email; a unique ID would cost
		// a look through every project before any signature is checked.
		return bad("iss %q is not a service account's email", claims.Iss)
	}
	sa, _, _, err := c.findServiceAccount(ctx, "-", claims.Iss)
	if err != nil {
		return bad("account %q: %v", claims.Iss, err)
	}
	if sa.Disabled || (c.cfg.AccountEnabled != nil && !c.cfg.AccountEnabled(sa.Email)) {
		return bad("account %s is disabled", sa.Email)
	}
	var k storedKey
	if _, err := state.Get(ctx, c.cfg.Store, state.ServiceAccountKeyKey(sa.ProjectID, sa.Email, header.Kid), &k); err != nil {
		return bad("key %s of %s: %v", header.Kid, sa.Email, err)
	}
	if k.Disabled || k.UniqueID != sa.UniqueID {
		return bad("key %s is disabled or belonged to a deleted account", header.Kid)
	}
	block, _ := pem.Decode([]byte(k.PublicKeyPEM))
	if block == nil {
		return bad("stored key %s is unreadable", header.Kid)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	rsaPub, ok := pub.(*rsa.PublicKey)
	if err != nil || !ok {
		return bad("stored key %s is not RSA", header.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return bad("signature encoding")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(rsaPub, crypto.SHA256, digest[:], sig); err != nil {
		return bad("signature does not verify with key %s", header.Kid)
	}
	exp := c.cfg.Now().Add(issuer.MaxTokenLifetime)
	if claims.TargetAudience != "" {
		id, err := c.mintIdentity(sa.UniqueID, sa.Email, claims.TargetAudience, exp)
		if err != nil {
			return nil, err
		}
		return &Tokens{Identity: id, Expiry: exp}, nil
	}
	access, err := c.cfg.Minter.MintAccess(sa.UniqueID, sa.Email, claims.Scope, exp)
	if err != nil {
		return nil, err
	}
	return &Tokens{Access: access, Expiry: exp}, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
