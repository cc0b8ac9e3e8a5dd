package admin

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

const testTokenURL = "http://usher.test/token"

// fakeMinter stands in for the issuer: these tests are about what is
// accepted, not about token signing (the gcloud suite drives the real one).
type fakeMinter struct{}

func (fakeMinter) MintAccess(sub, email, scope string, exp time.Time) (string, error) {
	return "access:" + email, nil
}
func (fakeMinter) MintIdentity(sub, email string, aud []string, exp time.Time) (string, error) {
	return "id:" + email + ":" + aud[0], nil
}

// keyCore is a core on a real store holding one account with one key.
func keyCore(t testing.TB) (*Core, *rsa.PrivateKey, apis.ServiceAccount, string) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	p := state.Project{ProjectID: "p", ProjectNumber: apis.ProjectNumber("p"), LifecycleState: "ACTIVE"}
	sa := NewServiceAccountRecord(p, "robot-1@p.iam.gserviceaccount.com", "", "")
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	k := storedKey{KeyID: "k1", Email: sa.Email, UniqueID: sa.UniqueID, PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))}
	for key, v := range map[string]any{state.ProjectKey("p"): p, state.ServiceAccountKey("p", sa.Email): sa, state.ServiceAccountKeyKey("p", sa.Email, "k1"): k} {
		if _, err := state.Put(ctx, st, key, v, store.MustNotExist); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Unix(1_800_000_000, 0)
	return New(Config{Store: st, Minter: fakeMinter{}, TokenURL: testTokenURL, Now: func() time.Time { return now }}), priv, sa, "k1"
}

func signJWT(t testing.TB, priv *rsa.PrivateKey, header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	d := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestExchangeAssertion(t *testing.T) {
	c, priv, sa, kid := keyCore(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := c.cfg.Now().Unix()
	claims := func(edit func(m map[string]any)) map[string]any {
		m := map[string]any{"iss": sa.Email, "aud": testTokenURL, "iat": now, "exp": now + 3600}
		if edit != nil {
			edit(m)
		}
		return m
	}
	hdr := map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}
	tests := []struct {
		name      string
		assertion string
		want      string // the token, or "" for a refusal
	}{
		{"access token", signJWT(t, priv, hdr, claims(nil)), "access:" + sa.Email},
		{"identity token", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["target_audience"] = "http://svc" })), "id:" + sa.Email + ":http://svc"},
		{"signed by another key", signJWT(t, other, hdr, claims(nil)), ""},
		{"unknown kid", signJWT(t, priv, map[string]any{"alg": "RS256", "kid": "k2"}, claims(nil)), ""},
		{"alg none", signJWT(t, priv, map[string]any{"alg": "none", "kid": kid}, claims(nil)), ""},
		{"HS256", signJWT(t, priv, map[string]any{"alg": "HS256", "kid": kid}, claims(nil)), ""},
		{"other audience", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["aud"] = "https://oauth2.googleapis.com/token" })), ""},
		{"expired", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["iat"], m["exp"] = now-7200, now-3600 })), ""},
		{"issued in the future", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["iat"], m["exp"] = now+600, now+1200 })), ""},
		{"lifetime over an hour", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["exp"] = now + 7200 })), ""},
		{"another account's email", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["iss"] = "other@p.iam.gserviceaccount.com" })), ""},
		{"impersonating a user (sub)", signJWT(t, priv, hdr, claims(func(m map[string]any) { m["sub"] = "owner@example.com" })), ""},
		{"kid with a path", signJWT(t, priv, map[string]any{"alg": "RS256", "kid": "../k1"}, claims(nil)), ""},
		{"not a JWT", "abc", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.ExchangeAssertion(context.Background(), tt.assertion)
			if tt.want == "" {
				if !errors.Is(err, ErrBadAssertion) {
					t.Errorf("got %+v, %v; want ErrBadAssertion", got, err)
				}
				return
			}
			if err != nil || (got.Access != tt.want && got.Identity != tt.want) {
				t.Errorf("got %+v, %v; want %s", got, err, tt.want)
			}
		})
	}

	// A disabled account's key stops working.
	sa.Disabled = true
	if _, err := state.Put(context.Background(), c.cfg.Store, state.ServiceAccountKey("p", sa.Email), sa, store.AnyRevision); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ExchangeAssertion(context.Background(), signJWT(t, priv, hdr, claims(nil))); !errors.Is(err, ErrBadAssertion) {
		t.Errorf("disabled account: got %+v, %v; want ErrBadAssertion", got, err)
	}
}

// FuzzExchangeAssertion: assertions are untrusted. Without the private
// key none is ever accepted, and none panics.
func FuzzExchangeAssertion(f *testing.F) {
	c, priv, sa, kid := keyCore(f)
	now := c.cfg.Now().Unix()
	good := signJWT(f, priv, map[string]any{"alg": "RS256", "kid": kid}, map[string]any{"iss": sa.Email, "aud": testTokenURL, "iat": now, "exp": now + 60})
	for _, s := range []string{good[:len(good)-4] + "AAAA", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "..", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == good {
			return
		}
		if got, err := c.ExchangeAssertion(context.Background(), s); err == nil {
			t.Errorf("ExchangeAssertion(%q) = %+v, want a refusal", s, got)
		}
	})
}
