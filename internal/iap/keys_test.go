package iap

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/usher-run/usher/internal/store/bolt"
)

func newKeys(t *testing.T, now func() time.Time) (*Keys, *bolt.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k, err := LoadKeys(context.Background(), st, now)
	if err != nil {
		t.Fatal(err)
	}
	return k, st
}

// TestKeysAreShared: every node loading the store gets the same key.
func TestKeysAreShared(t *testing.T) {
	k1, st := newKeys(t, nil)
	k2, err := LoadKeys(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := k1.Session("svc.run.localhost", "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if email, err := k2.VerifySession(tok, "svc.run.localhost"); err != nil || email != "a@example.com" {
		t.Errorf("a session from node 1 on node 2: got %q, %v", email, err)
	}
}

// TestTokenKindsAndAudiences: a session is good only for its host, an
// assertion only for its audience, and neither stands in for the other.
func TestTokenKindsAndAudiences(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	k, _ := newKeys(t, clock)
	other, _ := newKeys(t, clock)
	const host, email = "svc-1.us-central1.run.localhost", "a@example.com"
	aud := Audience("123", "us-central1", "svc")
	session, _, err := k.Session(host, email)
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := k.Assertion(aud, email, "accounts.google.com:1")
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, _ := other.Session(host, email)
	tests := []struct {
		name string
		ok   func() error
	}{
		{"session on its host", func() error { _, err := k.VerifySession(session, host); return err }},
		{"assertion for its audience", func() error { _, err := k.VerifyAssertion(assertion, aud); return err }},
	}
	for _, tt := range tests {
		if err := tt.ok(); err != nil {
			t.Errorf("%s: got %v, want nil", tt.name, err)
		}
	}
	bad := []struct {
		name string
		err  func() error
	}{
		{"session on another host", func() error { _, err := k.VerifySession(session, "other."+host); return err }},
		{"session with an upper-case twin host", func() error { _, err := k.VerifySession(session, "x"+strings.ToUpper(host)); return err }},
		{"assertion as a session", func() error { _, err := k.VerifySession(assertion, host); return err }},
		{"session as an assertion", func() error { _, err := k.VerifyAssertion(session, "iap-session:"+host); return err }},
		{"another key's session", func() error { _, err := k.VerifySession(foreign, host); return err }},
		{"garbage", func() error { _, err := k.VerifySession("a.b.c", host); return err }},
		{"oversized", func() error { _, err := k.VerifySession(strings.Repeat("a", 5000)+".b.c", host); return err }},
	}
	for _, tt := range bad {
		if err := tt.err(); err == nil {
			t.Errorf("%s: got nil, want ErrInvalid", tt.name)
		}
	}
	now = now.Add(SessionLifetime + time.Minute)
	if _, err := k.VerifySession(session, host); err == nil {
		t.Error("an expired session: got nil, want ErrInvalid")
	}
}

// TestForgedAlgorithms: tokens signed with other algorithms (HS256 keyed
// with the public key, none) are refused.
func TestForgedAlgorithms(t *testing.T) {
	k, _ := newKeys(t, nil)
	host := "svc.run.localhost"
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(hs).Claims(claims{Claims: jwt.Claims{Issuer: Issuer, Audience: jwt.Audience{sessionAudiencePrefix + host},
		IssuedAt: jwt.NewNumericDate(time.Now()), Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}, Email: "x@example.com", TokenUse: useSession}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.VerifySession(tok, host); err == nil {
		t.Error("an HS256 session: got nil, want ErrInvalid")
	}
}

// FuzzVerifySession: whatever a cookie holds, verification never panics and
// never accepts what this key did not sign.
func FuzzVerifySession(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.sig")
	f.Add("")
	f.Add("a.b.c")
	st, err := bolt.Open(filepath.Join(f.TempDir(), "usher.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	k, err := LoadKeys(context.Background(), st, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if email, err := k.VerifySession(tok, "h"); err == nil {
			t.Fatalf("accepted a token this key never signed: %q (%s)", tok, email)
		}
	})
}
