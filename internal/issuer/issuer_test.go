package issuer_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

// The issuer is the gateway's key source; this is checked here rather than in
// the package so issuer never imports authn.
var _ authn.KeySource = (*issuer.Issuer)(nil)

const testURL = "http://localhost:8080"

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

func openStore(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newStore(t *testing.T) *bolt.Store {
	return openStore(t, filepath.Join(t.TempDir(), "state.db"))
}

func newIssuer(t *testing.T, st store.Store, clk *clock) *issuer.Issuer {
	t.Helper()
	iss, err := issuer.New(t.Context(), st, issuer.Config{URL: testURL, Now: clk.now})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return iss
}

func verifier(iss *issuer.Issuer, clk *clock) *authn.Verifier {
	return authn.New(authn.Config{Issuer: iss.URL(), Keys: iss, Now: clk.now})
}

func mint(t *testing.T, iss *issuer.Issuer, c issuer.Claims) string {
	t.Helper()
	if c.Subject == "" {
		c.Subject = "user:alice"
	}
	tok, err := iss.Mint(c)
	if err != nil {
		t.Fatalf("Mint() error = %v", err)
	}
	return tok
}

// decodeSegment returns the JSON object in segment i of a compact JWS.
func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	kid, _ := decodeSegment(t, tok, 0)["kid"].(string)
	return kid
}

func currentKID(t *testing.T, iss *issuer.Issuer) string {
	t.Helper()
	return kidOf(t, mint(t, iss, issuer.Claims{}))
}

func TestMintVerifies(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, newStore(t), clk)
	tok := mint(t, iss, issuer.Claims{
		Subject:       "user:alice",
		Email:         "alice@example.com",
		EmailVerified: true,
		Audience:      []string{"https://svc.example"},
		Extra:         map[string]any{"scope": "admin", "token_use": "access"},
	})

	id, err := verifier(iss, clk).Verify(tok)
	if err != nil {
		t.Fatalf("Verify() error = %v", err)
	}
	if id.Issuer != testURL || id.Subject != "user:alice" || id.Email != "alice@example.com" ||
		!id.EmailVerified || id.Scope != "admin" || id.TokenUse != "access" {
		t.Errorf("Verify() = %+v, want the minted claims", id)
	}
	if !id.HasAudience("https://svc.example") {
		t.Errorf("HasAudience(svc) = false, want true")
	}
	if got, want := id.IssuedAt, clk.now(); !got.Equal(want) {
		t.Errorf("IssuedAt = %v, want %v", got, want)
	}
	if got, want := id.Expiry, clk.now().Add(issuer.MaxTokenLifetime); !got.Equal(want) {
		t.Errorf("Expiry = %v, want %v", got, want)
	}
}

func TestMintShape(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, newStore(t), clk)
	tests := []struct {
		name    string
		claims  issuer.Claims
		wantAud any // nil: absent
		wantEV  any // email_verified; nil: absent
		wantExp time.Time
	}{
		{"one audience is a string", issuer.Claims{Audience: []string{"a"}, Email: "e@x", EmailVerified: true}, "a", true, t0.Add(time.Hour)},
		{"several audiences are an array", issuer.Claims{Audience: []string{"a", "b"}, Email: "e@x"}, []any{"a", "b"}, false, t0.Add(time.Hour)},
		{"no audience, no email", issuer.Claims{}, nil, nil, t0.Add(time.Hour)},
		{"short expiry kept", issuer.Claims{Expiry: t0.Add(5 * time.Minute)}, nil, nil, t0.Add(5 * time.Minute)},
		{"long expiry capped", issuer.Claims{Expiry: t0.Add(3 * time.Hour)}, nil, nil, t0.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mint(t, iss, tt.claims)
			hdr, pl := decodeSegment(t, tok, 0), decodeSegment(t, tok, 1)
			if hdr["alg"] != "RS256" || hdr["typ"] != "JWT" || hdr["kid"] == "" || hdr["kid"] == nil {
				t.Errorf("header = %v, want alg RS256, typ JWT and a kid", hdr)
			}
			if got := pl["iss"]; got != testURL {
				t.Errorf("iss = %v, want %v", got, testURL)
			}
			if got := pl["sub"]; got != "user:alice" {
				t.Errorf("sub = %v, want user:alice", got)
			}
			if got := pl["aud"]; !jsonEqual(got, tt.wantAud) {
				t.Errorf("aud = %#v, want %#v", got, tt.wantAud)
			}
			if got := pl["email_verified"]; got != tt.wantEV {
				t.Errorf("email_verified = %v, want %v", got, tt.wantEV)
			}
			if got, ok := pl["nbf"]; ok {
				t.Errorf("nbf = %v, want absent", got)
			}
			if got, want := pl["iat"], float64(t0.Unix()); got != want {
				t.Errorf("iat = %v, want %v", got, want)
			}
			if got, want := pl["exp"], float64(tt.wantExp.Unix()); got != want {
				t.Errorf("exp = %v, want %v", got, want)
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestMintRejects(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, newStore(t), clk)
	tests := []struct {
		name   string
		claims issuer.Claims
	}{
		{"no subject", issuer.Claims{}},
		{"expiry now", issuer.Claims{Subject: "s", Expiry: t0}},
		{"expiry past", issuer.Claims{Subject: "s", Expiry: t0.Add(-time.Minute)}},
		{"extra overrides iss", issuer.Claims{Subject: "s", Extra: map[string]any{"iss": "evil"}}},
		{"extra overrides exp", issuer.Claims{Subject: "s", Extra: map[string]any{"exp": 1 << 40}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := iss.Mint(tt.claims)
			if err == nil {
				t.Fatalf("Mint() = %q, nil; want an error", tok)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, newStore(t), clk)
	v := verifier(iss, clk)
	before := mint(t, iss, issuer.Claims{})
	oldKID := kidOf(t, before)

	clk.add(time.Minute)
	if err := iss.Rotate(t.Context()); err != nil {
		t.Fatalf("Rotate() error = %v", err)
	}
	after := mint(t, iss, issuer.Claims{})
	if got := kidOf(t, after); got == oldKID {
		t.Fatalf("kid after Rotate = %q, want a new kid", got)
	}
	for name, tok := range map[string]string{"old": before, "new": after} {
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("Verify(%s token) error = %v", name, err)
		}
	}

	// Rotating again inside the grace period keeps the old key published...
	clk.add(issuer.MaxTokenLifetime + 4*time.Minute)
	if err := iss.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := iss.Key(oldKID); !ok {
		t.Errorf("Key(old) after rotation within grace = false, want true")
	}
	// ...and the first rotation after it has passed drops it.
	clk.add(2 * time.Minute)
	if err := iss.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := iss.Key(oldKID); ok {
		t.Errorf("Key(old) after rotation past grace = true, want false")
	}
	if _, ok := iss.Key(kidOf(t, after)); !ok {
		t.Errorf("Key(second key) = false, want true (its grace has not passed)")
	}
}

func TestKeysPersistAcrossNew(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "state.db")
	st := openStore(t, path)
	first := newIssuer(t, st, clk)
	tok := mint(t, first, issuer.Claims{})

	second := newIssuer(t, st, clk)
	if got, want := currentKID(t, second), kidOf(t, tok); got != want {
		t.Errorf("kid from second New = %q, want %q", got, want)
	}

	// And across a restart of the store.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	restarted := newIssuer(t, openStore(t, path), clk)
	if got, want := currentKID(t, restarted), kidOf(t, tok); got != want {
		t.Errorf("kid after reopen = %q, want %q", got, want)
	}
	if _, err := verifier(restarted, clk).Verify(tok); err != nil {
		t.Errorf("Verify(token from before restart) error = %v", err)
	}
}

func TestNewRotatesWhenDue(t *testing.T) {
	clk := newClock()
	st := newStore(t)
	first := newIssuer(t, st, clk)
	oldKID := currentKID(t, first)

	clk.add(issuer.DefaultRotationPeriod - time.Second)
	if got := currentKID(t, newIssuer(t, st, clk)); got != oldKID {
		t.Errorf("kid before period = %q, want %q", got, oldKID)
	}
	clk.add(time.Second)
	later := newIssuer(t, st, clk)
	if got := currentKID(t, later); got == oldKID {
		t.Errorf("kid after period = %q, want a new kid", got)
	}
	if _, ok := later.Key(oldKID); !ok {
		t.Errorf("Key(old) = false, want true during grace")
	}
}

func TestConcurrentNewAgreesOnOneKey(t *testing.T) {
	clk := newClock()
	st := newStore(t)
	const n = 4
	kids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			iss, err := issuer.New(t.Context(), st, issuer.Config{URL: testURL, Now: clk.now})
			if err != nil {
				t.Error(err)
				return
			}
			tok, err := iss.Mint(issuer.Claims{Subject: "s"})
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = kidOf(t, tok)
		})
	}
	wg.Wait()
	for i := range kids {
		if kids[i] != kids[0] {
			t.Fatalf("kids = %q, want all equal", kids)
		}
	}
}

func TestReloadPicksUpOtherIssuersKey(t *testing.T) {
	clk := newClock()
	st := newStore(t)
	a, b := newIssuer(t, st, clk), newIssuer(t, st, clk)
	if err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok := mint(t, a, issuer.Claims{})
	newKID := kidOf(t, tok)
	if err := b.Reload(t.Context()); err != nil {
		t.Fatalf("Reload() error = %v", err)
	}
	if _, ok := b.Key(newKID); !ok {
		t.Errorf("b.Key(new) after Reload = false, want true")
	}
	if got := currentKID(t, b); got != newKID {
		t.Errorf("b mints with kid %q, want %q", got, newKID)
	}
	if _, err := verifier(b, clk).Verify(tok); err != nil {
		t.Errorf("b verifying a's token: %v", err)
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runWatch(t *testing.T, iss *issuer.Issuer) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		iss.Watch(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestWatchPicksUpOtherIssuersKey(t *testing.T) {
	clk := newClock()
	st := newStore(t)
	a, b := newIssuer(t, st, clk), newIssuer(t, st, clk)
	runWatch(t, b)
	for range 2 {
		if err := a.Rotate(t.Context()); err != nil {
			t.Fatal(err)
		}
		newKID := currentKID(t, a)
		waitFor(t, "b to publish a's new key", func() bool {
			_, ok := b.Key(newKID)
			return ok
		})
		if got := currentKID(t, b); got != newKID {
			t.Errorf("b mints with kid %q, want %q", got, newKID)
		}
	}
}

// compactingStore answers the first Watch with ErrCompacted, as a store that
// cannot replay the requested revisions would.
type compactingStore struct {
	store.Store
	watches atomic.Int64
}

func (s *compactingStore) Watch(ctx context.Context, prefix string, after int64) <-chan store.WatchResponse {
	if s.watches.Add(1) == 1 {
		ch := make(chan store.WatchResponse, 1)
		ch <- store.WatchResponse{Err: store.ErrCompacted}
		close(ch)
		return ch
	}
	return s.Store.Watch(ctx, prefix, after)
}

func TestWatchRecoversFromCompaction(t *testing.T) {
	clk := newClock()
	st := newStore(t)
	cs := &compactingStore{Store: st}
	a, b := newIssuer(t, st, clk), newIssuer(t, cs, clk)
	runWatch(t, b)
	waitFor(t, "b to re-watch after ErrCompacted", func() bool { return cs.watches.Load() >= 2 })
	if err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	newKID := currentKID(t, a)
	waitFor(t, "b to publish a's new key", func() bool {
		_, ok := b.Key(newKID)
		return ok
	})
}

func TestWatchRotatesWhenDue(t *testing.T) {
	iss, err := issuer.New(t.Context(), newStore(t), issuer.Config{URL: testURL, RotationPeriod: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := currentKID(t, iss)
	runWatch(t, iss)
	waitFor(t, "a due rotation", func() bool { return currentKID(t, iss) != first })
	if _, ok := iss.Key(first); !ok {
		t.Errorf("Key(first) = false, want true during grace")
	}
}

func TestWatchReturnsWhenStoreCloses(t *testing.T) {
	st := newStore(t)
	iss := newIssuer(t, st, newClock())
	done := make(chan struct{})
	go func() {
		defer close(done)
		iss.Watch(context.Background())
	}()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after the store closed")
	}
}

func TestNewRejectsUnreadableKeys(t *testing.T) {
	st := newStore(t)
	const junk = `{"keys":[{"kid":"x","privateKey":"nope"}]}`
	if _, err := st.Put(t.Context(), issuer.KeysKey, []byte(junk), store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.New(t.Context(), st, issuer.Config{URL: testURL}); err == nil {
		t.Fatal("New() with unreadable keys: got nil error, want one")
	}
	ent, err := st.Get(t.Context(), issuer.KeysKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(ent.Value); got != junk {
		t.Errorf("stored keys = %q, want them left untouched (%q)", got, junk)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	st := newStore(t)
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://", "http://x/", "http://x?a=b", "http://x#f", "http://u:p@x"} {
		t.Run(u, func(t *testing.T) {
			if _, err := issuer.New(t.Context(), st, issuer.Config{URL: u}); err == nil {
				t.Errorf("New(URL %q) error = nil, want one", u)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	iss := newIssuer(t, newStore(t), newClock())
	rec := httptest.NewRecorder()
	iss.Discovery(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                testURL,
		"jwks_uri":                              testURL + "/oauth2/v3/certs",
		"token_endpoint":                        testURL + "/token",
		"authorization_endpoint":                testURL + "/console/signin",
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"response_types_supported":              []any{"id_token"},
		"subject_types_supported":               []any{"public"},
	}
	for k, w := range want {
		if got := doc[k]; !jsonEqual(got, w) {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	claims, _ := doc["claims_supported"].([]any)
	for _, c := range []string{"iss", "sub", "aud", "exp", "iat", "email", "email_verified"} {
		if !containsAny(claims, c) {
			t.Errorf("claims_supported = %v, missing %q", claims, c)
		}
	}
}

func containsAny(xs []any, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestJWKS(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, newStore(t), clk)
	oldKID := currentKID(t, iss)
	if err := iss.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	newKID := currentKID(t, iss)

	rec := httptest.NewRecorder()
	iss.JWKS(rec, httptest.NewRequest(http.MethodGet, "/oauth2/v3/certs", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if got := rec.Header().Get("Cache-Control"); !strings.Contains(got, "max-age=") {
		t.Errorf("Cache-Control = %q, want a max-age", got)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("published %d keys, want 2 (current and retiring)", len(set.Keys))
	}
	if got := set.Keys[0]["kid"]; got != newKID {
		t.Errorf("first key kid = %q, want the current key %q", got, newKID)
	}
	for _, k := range set.Keys {
		if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" {
			t.Errorf("key %v: want kty RSA, alg RS256, use sig", k)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %s publishes private member %q", k["kid"], private)
			}
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(b64d(t, k["n"])), E: int(new(big.Int).SetBytes(b64d(t, k["e"])).Int64())}
		want, ok := iss.Key(k["kid"])
		if !ok || !want.Equal(pub) {
			t.Errorf("JWKS key %s does not match Key(%[1]s)", k["kid"])
		}
	}
	if set.Keys[1]["kid"] != oldKID {
		t.Errorf("second key kid = %q, want the retiring key %q", set.Keys[1]["kid"], oldKID)
	}
}

func b64d(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandlersRejectWrites(t *testing.T) {
	iss := newIssuer(t, newStore(t), newClock())
	for name, h := range map[string]http.HandlerFunc{"discovery": iss.Discovery, "jwks": iss.JWKS} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodPost, "/", nil))
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("POST status = %d, want 405", rec.Code)
			}
		})
	}
}

func TestReloadWithoutKeys(t *testing.T) {
	st := newStore(t)
	iss := newIssuer(t, st, newClock())
	if _, err := st.Delete(t.Context(), issuer.KeysKey, store.AnyRevision); err != nil {
		t.Fatal(err)
	}
	if err := iss.Reload(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reload() error = %v, want %v", err, store.ErrNotFound)
	}
	// The in-memory keys keep working.
	if _, err := iss.Mint(issuer.Claims{Subject: "s"}); err != nil {
		t.Errorf("Mint() after keys deleted: %v", err)
	}
}

// TestTokenFromAnotherNodeRightAfterRotation: a node whose watch has not yet
// delivered a key another node just rotated in still verifies that node's
// tokens (an unknown kid reads the store, at most once a second).
func TestTokenFromAnotherNodeRightAfterRotation(t *testing.T) {
	st := newStore(t)
	clk := newClock()
	a := newIssuer(t, st, clk)
	b := newIssuer(t, st, clk) // no Watch running: b learns of keys only by reading
	if err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok := mint(t, a, issuer.Claims{Subject: "s", Email: "s@example.com", Audience: []string{"aud"}})
	if _, err := verifier(b, clk).Verify(tok); err != nil {
		t.Fatalf("node b verifying node a's token right after a's rotation: %v", err)
	}
	// Unknown kids do not read the store more than once a second.
	if _, ok := b.Key("no-such-kid"); ok {
		t.Fatal("unknown kid found")
	}
	if err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	newer := currentKID(t, a)
	if _, ok := b.Key(newer); ok {
		t.Errorf("a second store read within a second: the unknown-kid reload is not rate limited")
	}
	clk.add(1100 * time.Millisecond)
	if _, ok := b.Key(newer); !ok {
		t.Errorf("after a second, the new key is still unknown")
	}
}

// TestCertsVerify: /oauth2/v1/certs ({kid: PEM certificate}, what
// google-auth for Python reads by default) carries the keys tokens are
// signed with, before and after a rotation.
func TestCertsVerify(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, newStore(t), clk)
	check := func(tok string) {
		t.Helper()
		rec := httptest.NewRecorder()
		iss.Certs(rec, httptest.NewRequest(http.MethodGet, "/oauth2/v1/certs", nil))
		var certs map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &certs); err != nil || rec.Code != 200 {
			t.Fatalf("certs: %d %v", rec.Code, err)
		}
		block, _ := pem.Decode([]byte(certs[kidOf(t, tok)]))
		if block == nil {
			t.Fatalf("no certificate for kid %q in %v", kidOf(t, tok), certs)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(cert.PublicKey); err != nil {
			t.Errorf("token does not verify with its kid's certificate: %v", err)
		}
	}
	check(mint(t, iss, issuer.Claims{}))
	if err := iss.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	check(mint(t, iss, issuer.Claims{}))
}
