package authn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/usher-run/usher/internal/authn/oidctest"
)

// newExternal returns a provider and a discovered Multi trusting it, whose
// clock (shared by the own verifier, go-oidc and the JWKS rate limit) is c.
func newExternal(t *testing.T, groupsClaim string) (*oidctest.Provider, *Multi, *clock) {
	t.Helper()
	p := oidctest.New()
	t.Cleanup(p.Close)
	c := newClock(time.Now())
	m, err := NewMulti(newTestVerifier(newKeySet(), c.now), ExternalConfig{
		Issuers:    []ExternalIssuer{{Issuer: p.URL, GroupsClaim: groupsClaim}},
		MinRefresh: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, m, c
}

func TestExternalAcceptedAndMapped(t *testing.T) {
	p, m, _ := newExternal(t, "")
	tok := p.Token(with(p.Claims("Alice@Example.com", "https://svc.example"),
		"groups", []any{"Team@Example.com", "eng", ""}))
	id, err := m.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !id.External || id.Email != "alice@example.com" || !id.EmailVerified || id.Issuer != p.URL ||
		!id.HasAudience("https://svc.example") || id.Subject != "sub-Alice@Example.com" {
		t.Fatalf("identity = %+v", id)
	}
	if strings.Join(id.Groups, ",") != "team@example.com,eng" {
		t.Fatalf("groups = %q", id.Groups)
	}
	// Repeated: served from the cache, even with the provider gone.
	fetches := p.JWKSFetches.Load()
	p.Close()
	if id2, err := m.Verify(tok); err != nil || id2 != id {
		t.Fatalf("repeat: %v %v", id2, err)
	}
	if p.JWKSFetches.Load() != fetches {
		t.Fatal("repeated token fetched the JWKS")
	}
}

func TestExternalCustomGroupsClaim(t *testing.T) {
	p, m, _ := newExternal(t, "roles")
	id, err := m.Verify(p.Token(with(p.Claims("bob@example.com", "a"),
		"roles", []any{"Ops@Example.com"}, "groups", []any{"ignored@example.com"})))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(id.Groups, ",") != "ops@example.com" {
		t.Fatalf("groups = %q", id.Groups)
	}
	// A groups claim that is not an array of strings gives no groups.
	id, err = m.Verify(p.Token(with(p.Claims("bob@example.com", "b"), "roles", "admins")))
	if err != nil || len(id.Groups) != 0 {
		t.Fatalf("%+v %v", id, err)
	}
}

func TestExternalUnverifiedEmail(t *testing.T) {
	p, m, _ := newExternal(t, "")
	for name, claims := range map[string]map[string]any{
		"false":           with(p.Claims("eve@example.com", "a"), "email_verified", false),
		"missing":         with(p.Claims("eve@example.com", "b"), "email_verified", nil),
		"string true":     with(p.Claims("eve@example.com", "c"), "email_verified", "true"),
		"service account": p.Claims("sa@proj.iam.gserviceaccount.com", "d"),
	} {
		id, err := m.Verify(p.Token(claims))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if id.Email != "" || id.EmailVerified || !id.External {
			t.Fatalf("%s: identity = %+v, want authenticated without email", name, id)
		}
	}
}

func TestExternalWrongIssuer(t *testing.T) {
	p, m, _ := newExternal(t, "")
	other := oidctest.New()
	defer other.Close()
	for name, tok := range map[string]string{
		"iss not trusted":      other.Token(other.Claims("alice@example.com", "a")),
		"signed by other, iss": other.Token(with(other.Claims("alice@example.com", "a"), "iss", p.URL)),
		"iss rewritten":        p.Token(with(p.Claims("alice@example.com", "a"), "iss", p.URL+"/x")),
	} {
		if _, err := m.Verify(tok); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	if _, err := m.Verify(other.Token(other.Claims("alice@example.com", "a"))); !errors.Is(err, ErrIssuer) {
		t.Fatalf("untrusted issuer: %v, want ErrIssuer", err)
	}
}

func TestExternalExpired(t *testing.T) {
	p, m, c := newExternal(t, "")
	tok := p.Token(with(p.Claims("alice@example.com", "a"), "exp", time.Now().Add(-time.Second).Unix()))
	if _, err := m.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	// A cached token stops working at its exp.
	tok = p.Token(with(p.Claims("alice@example.com", "a"), "exp", time.Now().Add(time.Minute).Unix()))
	if _, err := m.Verify(tok); err != nil {
		t.Fatal(err)
	}
	c.add(2 * time.Minute)
	if _, err := m.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached then expired: %v", err)
	}
	// Issued in the future.
	tok = p.Token(with(p.Claims("alice@example.com", "a"), "iat", c.now().Add(time.Hour).Unix()))
	if _, err := m.Verify(tok); err == nil {
		t.Fatal("iat in the future accepted")
	}
}

func TestExternalAlgorithms(t *testing.T) {
	p, m, _ := newExternal(t, "")
	claims := p.Claims("alice@example.com", "a")
	hs := sign(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), oidctest.DefaultKID, claims)
	if _, err := m.Verify(hs); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("HS256: %v", err)
	}
	none := b64(`{"alg":"none","kid":"`+oidctest.DefaultKID+`","typ":"JWT"}`) + "." +
		b64(`{"iss":"`+p.URL+`","sub":"x","email":"alice@example.com","email_verified":true}`) + "."
	if _, err := m.Verify(none); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("alg none: %v", err)
	}
	if _, err := m.Verify(strings.Repeat("a", DefaultMaxTokenBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
}

func TestExternalUnknownKidRefetchRateLimited(t *testing.T) {
	p, m, c := newExternal(t, "")
	if n := p.JWKSFetches.Load(); n != 1 {
		t.Fatalf("discovery fetched the JWKS %d times, want 1", n)
	}
	// A rotated-in key: one refetch finds it.
	p.AddKey("idp-2", true)
	if _, err := m.Verify(p.Sign("idp-2", p.Claims("alice@example.com", "a"))); err != nil {
		t.Fatal(err)
	}
	if n := p.JWKSFetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	// Unknown kids within the interval: no further fetch, whatever the kid.
	p.AddKey("idp-3", false)
	for i := range 20 {
		kid := "idp-3"
		if i%2 == 1 {
			kid = "nope"
			p.AddKey(kid, false)
		}
		if _, err := m.Verify(p.Sign(kid, p.Claims("alice@example.com", "a"))); err == nil || !strings.Contains(err.Error(), "rate-limited") {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := p.JWKSFetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (rate-limited)", n)
	}
	// Published meanwhile, but still inside the interval: refused.
	p.Publish("idp-3")
	tok := p.Sign("idp-3", p.Claims("carol@example.com", "a"))
	if _, err := m.Verify(tok); err == nil || !strings.Contains(err.Error(), ErrUnknownKey.Error()) {
		t.Fatalf("inside the interval: %v", err)
	}
	// After the interval: one more fetch finds it.
	c.add(61 * time.Second)
	if _, err := m.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if n := p.JWKSFetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}
}

func TestExternalOwnTokensAndPending(t *testing.T) {
	p := oidctest.New()
	defer p.Close()
	c := newClock(testNow)
	m, err := NewMulti(newTestVerifier(newKeySet(), c.now), ExternalConfig{Issuers: []ExternalIssuer{{Issuer: p.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.Verify(signRS(t, baseClaims()))
	if err != nil || id.External || id.Email != "alice@example.com" {
		t.Fatalf("own token: %+v %v", id, err)
	}
	// Not discovered yet: refused (fail closed).
	if _, err := m.Verify(p.Token(p.Claims("alice@example.com", "a"))); !errors.Is(err, ErrIssuerUnavailable) {
		t.Fatalf("pending issuer: %v", err)
	}
	for _, bad := range [][]ExternalIssuer{
		{{Issuer: testIssuer}},
		{{Issuer: p.URL}, {Issuer: p.URL}},
		{{Issuer: "example.com"}},
	} {
		if _, err := NewMulti(newTestVerifier(newKeySet(), c.now), ExternalConfig{Issuers: bad}); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}

func TestExternalTokenLifetime(t *testing.T) {
	p, m, _ := newExternal(t, "")
	now := time.Now()
	tests := []struct {
		desc   string
		claims map[string]any
		want   error
	}{
		{"one hour", p.Claims("alice@example.com", "a"), nil},
		{"exactly 24 h", with(with(p.Claims("alice@example.com", "a"), "iat", now.Add(-time.Minute).Unix()), "exp", now.Add(24*time.Hour-time.Minute).Unix()), nil},
		{"24 h and a second", with(with(p.Claims("alice@example.com", "a"), "iat", now.Add(-time.Minute).Unix()), "exp", now.Add(24*time.Hour-time.Minute+time.Second).Unix()), ErrLifetime},
		{"ten years", with(p.Claims("alice@example.com", "a"), "exp", now.Add(10*365*24*time.Hour).Unix()), ErrLifetime},
		{"old iat, far exp", with(with(p.Claims("alice@example.com", "a"), "iat", now.Add(-48*time.Hour).Unix()), "exp", now.Add(time.Hour).Unix()), ErrLifetime},
		{"no iat", without(p.Claims("alice@example.com", "a"), "iat"), ErrMissingClaim},
	}
	for _, tt := range tests {
		_, err := m.Verify(p.Token(tt.claims))
		if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: got %v, want %v", tt.desc, err, tt.want)
		}
	}
}

func without(c map[string]any, k string) map[string]any {
	delete(c, k)
	return c
}

// TestExternalKeyLeavingJWKSStopsVerifying: once the issuer takes a key out
// of its JWKS, tokens it signed stop verifying after KeyMaxAge, cached or not.
func TestExternalKeyLeavingJWKSStopsVerifying(t *testing.T) {
	p, m, c := newExternal(t, "")
	cached := p.Token(with(p.Claims("alice@example.com", "a"), "exp", time.Now().Add(2*time.Hour).Unix()))
	if _, err := m.Verify(cached); err != nil {
		t.Fatal(err)
	}
	p.AddKey("idp-2", true)
	p.Unpublish(oidctest.DefaultKID)
	fresh := p.Token(with(p.Claims("bob@example.com", "a"), "exp", time.Now().Add(2*time.Hour).Unix()))
	// Within KeyMaxAge the known key is trusted without I/O.
	if _, err := m.Verify(fresh); err != nil {
		t.Fatalf("within KeyMaxAge: got %v, want the known key accepted", err)
	}
	c.add(DefaultJWKSKeyMaxAge + time.Second)
	for _, tt := range []struct{ desc, tok string }{{"cached token", cached}, {"fresh token", fresh}, {"new token", p.Token(p.Claims("carol@example.com", "a"))}} {
		if _, err := m.Verify(tt.tok); err == nil || !strings.Contains(err.Error(), ErrUnknownKey.Error()) {
			t.Errorf("%s signed by a key no longer in the JWKS: got %v, want %v", tt.desc, err, ErrUnknownKey)
		}
	}
	if _, err := m.Verify(p.Sign("idp-2", p.Claims("dave@example.com", "a"))); err != nil {
		t.Errorf("token of the key still published: got %v, want accepted", err)
	}
}

// TestExternalHungJWKSBlocksNoOne: while one issuer's JWKS fetch hangs, the
// other issuer's tokens and the same issuer's known-key tokens still verify.
func TestExternalHungJWKSBlocksNoOne(t *testing.T) {
	a, b := oidctest.New(), oidctest.New()
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	c := newClock(time.Now())
	m, err := NewMulti(newTestVerifier(newKeySet(), c.now), ExternalConfig{
		Issuers:      []ExternalIssuer{{Issuer: a.URL}, {Issuer: b.URL}},
		MinRefresh:   time.Minute,
		CacheEntries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	release := a.HoldJWKS()
	t.Cleanup(release)
	a.AddKey("a-2", true)
	before := a.JWKSFetches.Load()
	hung := make(chan error, 1)
	go func() { // an unknown kid: a refetch that hangs
		_, err := m.Verify(a.Sign("a-2", a.Claims("alice@example.com", "x")))
		hung <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for a.JWKSFetches.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the unknown kid never caused a JWKS fetch")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, tt := range []struct {
		desc string
		tok  string
	}{
		{"other issuer", b.Token(b.Claims("bob@example.com", "x"))},
		{"same issuer, known key", a.Token(a.Claims("carol@example.com", "x"))},
	} {
		done := make(chan error, 1)
		go func() { _, err := m.Verify(tt.tok); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s while a JWKS fetch hangs: got %v, want accepted", tt.desc, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: verification blocked behind the hung JWKS fetch", tt.desc)
		}
	}
	release()
	if err := <-hung; err != nil {
		t.Errorf("the held refetch, once released: got %v, want a-2 found", err)
	}
}
