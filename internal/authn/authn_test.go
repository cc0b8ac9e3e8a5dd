package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer = "http://localhost:8080"
	testKID    = "k1"
)

// RSA key generation is slow (especially under -race); share keys per process.
var testKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var ks [2]*rsa.PrivateKey
	for i := range ks {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ks[i] = k
	}
	return ks
})

// testNow is a fixed instant so tokens and verifiers agree without sleeping.
var testNow = time.Unix(1_700_000_000, 0)

// keySet is a KeySource that counts lookups.
type keySet struct {
	keys  map[string]*rsa.PublicKey
	calls atomic.Int64
}

func (k *keySet) Key(kid string) (*rsa.PublicKey, bool) {
	k.calls.Add(1)
	pk, ok := k.keys[kid]
	return pk, ok
}

func newKeySet() *keySet {
	return &keySet{keys: map[string]*rsa.PublicKey{testKID: &testKeys()[0].PublicKey}}
}

// clock is an adjustable time source.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time)     { c.t.Store(t.UnixNano()) }
func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func newTestVerifier(ks KeySource, now func() time.Time) *Verifier {
	return New(Config{Issuer: testIssuer, Keys: ks, Now: now})
}

// baseClaims are valid at testNow.
func baseClaims() map[string]any {
	return map[string]any{
		"iss":   testIssuer,
		"sub":   "user:alice",
		"aud":   "https://svc.example",
		"email": "alice@example.com",
		"iat":   testNow.Add(-time.Minute).Unix(),
		"exp":   testNow.Add(59 * time.Minute).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

// sign produces a compact JWS over claims with the given algorithm, key and kid
// (no kid header when kid is empty).
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func signRS(t testing.TB, claims map[string]any) string {
	return sign(t, jose.RS256, testKeys()[0], testKID, claims)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func publicPEM(t testing.TB, k *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// swapPayload keeps tok's header and signature but replaces its claims.
func swapPayload(t testing.TB, tok string, claims map[string]any) string {
	t.Helper()
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
}

func TestVerifyRejects(t *testing.T) {
	valid := signRS(t, baseClaims())
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	payload := b64(`{"iss":"` + testIssuer + `","sub":"x"}`)

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"garbage", "not a token", ErrMalformed},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0", ErrMalformed},
		{"four parts", valid + ".AAAA", ErrMalformed},
		{"bad base64", "!!!." + payload + ".AAAA", ErrMalformed},
		{"padded base64", strings.Replace(valid, ".", "==.", 1), ErrMalformed},
		{"non-canonical base64", "eyJhbGciOiJSUzI1NiJ9." + payload + ".AB", ErrMalformed},
		{"header not json", b64("nope") + "." + payload + ".AAAA", ErrMalformed},
		{"payload not json", rsSignRaw(t, []byte("nope")), ErrMalformed},
		{"oversized", strings.Repeat("a", DefaultMaxTokenBytes+1), ErrTooLarge},
		{"oversized valid prefix", valid + strings.Repeat("A", DefaultMaxTokenBytes), ErrTooLarge},
		{"alg none", b64(`{"alg":"none","kid":"k1","typ":"JWT"}`) + "." + b64(`{"iss":"`+testIssuer+`","sub":"x"}`) + ".", ErrAlgorithm},
		{"alg none with signature", b64(`{"alg":"none","kid":"k1"}`) + "." + payload + ".AAAA", ErrAlgorithm},
		{"alg HS256 keyed with public key", sign(t, jose.HS256, publicPEM(t, &testKeys()[0].PublicKey), testKID, baseClaims()), ErrAlgorithm},
		{"alg ES256", sign(t, jose.ES256, ecKey, testKID, baseClaims()), ErrAlgorithm},
		{"alg PS256", sign(t, jose.PS256, testKeys()[0], testKID, baseClaims()), ErrAlgorithm},
		{"alg RS512", sign(t, jose.RS512, testKeys()[0], testKID, baseClaims()), ErrAlgorithm},
		{"unknown kid", sign(t, jose.RS256, testKeys()[0], "k2", baseClaims()), ErrUnknownKey},
		{"missing kid", sign(t, jose.RS256, testKeys()[0], "", baseClaims()), ErrUnknownKey},
		{"tampered payload", swapPayload(t, valid, with(baseClaims(), "sub", "user:root")), ErrSignature},
		{"tampered signature", valid[:len(valid)-4] + flip(valid[len(valid)-4:]), ErrSignature},
		{"other key with known kid", sign(t, jose.RS256, testKeys()[1], testKID, baseClaims()), ErrSignature},
		{"wrong iss", signRS(t, with(baseClaims(), "iss", "http://evil.example")), ErrIssuer},
		{"iss with trailing slash", signRS(t, with(baseClaims(), "iss", testIssuer+"/")), ErrIssuer},
		{"missing iss", signRS(t, with(baseClaims(), "iss", nil)), ErrIssuer},
		{"expired", signRS(t, with(baseClaims(), "iat", testNow.Add(-time.Hour).Unix(), "exp", testNow.Add(-31*time.Second).Unix())), ErrExpired},
		{"missing exp", signRS(t, with(baseClaims(), "exp", nil)), ErrMissingClaim},
		{"missing iat", signRS(t, with(baseClaims(), "iat", nil)), ErrMissingClaim},
		{"iat in future", signRS(t, with(baseClaims(), "iat", testNow.Add(31*time.Second).Unix())), ErrNotYetValid},
		{"nbf in future", signRS(t, with(baseClaims(), "nbf", testNow.Add(31*time.Second).Unix())), ErrNotYetValid},
		{"lifetime over 1h", signRS(t, with(baseClaims(), "exp", testNow.Add(2*time.Hour).Unix())), ErrLifetime},
		{"lifetime just over 1h+leeway", signRS(t, with(baseClaims(), "iat", testNow.Unix(), "exp", testNow.Add(time.Hour+31*time.Second).Unix())), ErrLifetime},
		{"missing sub", signRS(t, with(baseClaims(), "sub", nil)), ErrMissingClaim},
		{"empty sub", signRS(t, with(baseClaims(), "sub", "")), ErrMissingClaim},
		{"exp not a number", signRS(t, with(baseClaims(), "exp", "tomorrow")), ErrMalformed},
		{"email_verified not a bool", signRS(t, with(baseClaims(), "email_verified", "yes")), ErrMalformed},
		{"huge exp", signRS(t, with(baseClaims(), "exp", 1e300)), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
			id, err := v.Verify(tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.want)
			}
			if id != nil {
				t.Errorf("Verify() identity = %+v, want nil", id)
			}
			// Rejections must not be cached: the second attempt fails the same way.
			if _, err := v.Verify(tt.token); !errors.Is(err, tt.want) {
				t.Errorf("second Verify() error = %v, want %v", err, tt.want)
			}
		})
	}
}

// rsSignRaw signs an arbitrary payload (not necessarily JSON) with the test key.
func rsSignRaw(t testing.TB, payload []byte) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: testKeys()[0]},
		(&jose.SignerOptions{}).WithHeader("kid", testKID))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// flip changes a base64url string's first symbol, keeping it canonical.
func flip(s string) string {
	c := byte('A')
	if s[0] == 'A' {
		c = 'B'
	}
	return string(c) + s[1:]
}

func TestVerifyAccepts(t *testing.T) {
	tests := []struct {
		name   string
		claims map[string]any
		want   Identity
	}{
		{
			name:   "single audience",
			claims: baseClaims(),
			want: Identity{
				Issuer: testIssuer, Subject: "user:alice", Email: "alice@example.com",
				Audience: []string{"https://svc.example"},
				IssuedAt: testNow.Add(-time.Minute), Expiry: testNow.Add(59 * time.Minute),
			},
		},
		{
			name: "several audiences, scope and token_use",
			claims: with(baseClaims(), "aud", []string{"a", "b"}, "email_verified", true,
				"scope", "admin read", "token_use", "access", "nbf", testNow.Add(-time.Minute).Unix()),
			want: Identity{
				Issuer: testIssuer, Subject: "user:alice", Email: "alice@example.com", EmailVerified: true,
				Audience: []string{"a", "b"},
				IssuedAt: testNow.Add(-time.Minute), Expiry: testNow.Add(59 * time.Minute),
				Scope: "admin read", TokenUse: "access",
			},
		},
		{
			name:   "no audience",
			claims: with(baseClaims(), "aud", nil, "email", nil),
			want: Identity{
				Issuer: testIssuer, Subject: "user:alice",
				IssuedAt: testNow.Add(-time.Minute), Expiry: testNow.Add(59 * time.Minute),
			},
		},
		{
			name:   "exactly 1h lifetime",
			claims: with(baseClaims(), "iat", testNow.Unix(), "exp", testNow.Add(time.Hour).Unix()),
			want: Identity{
				Issuer: testIssuer, Subject: "user:alice", Email: "alice@example.com",
				Audience: []string{"https://svc.example"},
				IssuedAt: testNow, Expiry: testNow.Add(time.Hour),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
			got, err := v.Verify(signRS(t, tt.claims))
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if !identityEqual(got, &tt.want) {
				t.Errorf("Verify() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func identityEqual(a, b *Identity) bool {
	if len(a.Audience) != len(b.Audience) {
		return false
	}
	for i := range a.Audience {
		if a.Audience[i] != b.Audience[i] {
			return false
		}
	}
	return a.Issuer == b.Issuer && a.Subject == b.Subject && a.Email == b.Email &&
		a.EmailVerified == b.EmailVerified && a.IssuedAt.Equal(b.IssuedAt) &&
		a.Expiry.Equal(b.Expiry) && a.Scope == b.Scope && a.TokenUse == b.TokenUse
}

func TestLeeway(t *testing.T) {
	tests := []struct {
		name   string
		leeway time.Duration
		claims map[string]any
		want   error
	}{
		{"expired within default leeway", 0, with(baseClaims(), "iat", testNow.Add(-time.Hour).Unix(), "exp", testNow.Add(-29*time.Second).Unix()), nil},
		{"expired at exactly exp+leeway", 0, with(baseClaims(), "iat", testNow.Add(-time.Hour).Unix(), "exp", testNow.Add(-30*time.Second).Unix()), ErrExpired},
		{"iat slightly ahead", 0, with(baseClaims(), "iat", testNow.Add(30*time.Second).Unix()), nil},
		{"nbf slightly ahead", 0, with(baseClaims(), "nbf", testNow.Add(30*time.Second).Unix()), nil},
		{"lifetime 1h+leeway", 0, with(baseClaims(), "iat", testNow.Unix(), "exp", testNow.Add(time.Hour+30*time.Second).Unix()), nil},
		{"custom leeway: expired", 5 * time.Second, with(baseClaims(), "iat", testNow.Add(-time.Hour).Unix(), "exp", testNow.Add(-6*time.Second).Unix()), ErrExpired},
		{"custom leeway: iat ahead", 5 * time.Second, with(baseClaims(), "iat", testNow.Add(6*time.Second).Unix()), ErrNotYetValid},
		{"custom leeway: within", 5 * time.Second, with(baseClaims(), "iat", testNow.Add(-time.Hour).Unix(), "exp", testNow.Add(-4*time.Second).Unix()), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := New(Config{Issuer: testIssuer, Keys: newKeySet(), Now: func() time.Time { return testNow }, Leeway: tt.leeway})
			_, err := v.Verify(signRS(t, tt.claims))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMaxTokenBytes(t *testing.T) {
	tok := signRS(t, baseClaims())
	v := New(Config{Issuer: testIssuer, Keys: newKeySet(), Now: func() time.Time { return testNow }, MaxTokenBytes: len(tok) - 1})
	if _, err := v.Verify(tok); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Verify() error = %v, want %v", err, ErrTooLarge)
	}
	v = New(Config{Issuer: testIssuer, Keys: newKeySet(), Now: func() time.Time { return testNow }, MaxTokenBytes: len(tok)})
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("Verify() error = %v, want nil", err)
	}
}

func TestCacheHitSkipsKeySource(t *testing.T) {
	ks := newKeySet()
	clk := newClock(testNow)
	v := newTestVerifier(ks, clk.now)
	tok := signRS(t, baseClaims())

	first, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got := ks.calls.Load(); got != 1 {
		t.Errorf("KeySource calls = %d, want 1", got)
	}
	if second != first {
		t.Errorf("second Verify() returned a different identity; want the cached one")
	}

	// Past exp+leeway the cached entry must be rejected, not served.
	clk.set(first.Expiry.Add(DefaultLeeway))
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify() after expiry error = %v, want %v", err, ErrExpired)
	}
	if got := ks.calls.Load(); got != 1 {
		t.Errorf("KeySource calls = %d, want 1 (expiry decided from the cache)", got)
	}
	// And it was evicted: the next attempt re-verifies (and fails again).
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify() after eviction error = %v, want %v", err, ErrExpired)
	}
	if got := ks.calls.Load(); got != 2 {
		t.Errorf("KeySource calls = %d, want 2", got)
	}
}

func TestCacheDisabled(t *testing.T) {
	ks := newKeySet()
	v := New(Config{Issuer: testIssuer, Keys: ks, Now: func() time.Time { return testNow }, CacheEntries: -1})
	tok := signRS(t, baseClaims())
	for range 3 {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := ks.calls.Load(); got != 3 {
		t.Errorf("KeySource calls = %d, want 3", got)
	}
}

func TestCacheBounded(t *testing.T) {
	const limit = numShards * 2
	v := New(Config{Issuer: testIssuer, Keys: newKeySet(), Now: func() time.Time { return testNow }, CacheEntries: limit})
	for i := range limit * 4 {
		tok := signRS(t, with(baseClaims(), "sub", "user:"+string(rune('a'+i%26))+strings.Repeat("x", i)))
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := range v.cache.shards {
		s := &v.cache.shards[i]
		s.mu.Lock()
		if n := len(s.entries); n > v.cache.perShard {
			t.Errorf("shard %d has %d entries, limit %d", i, n, v.cache.perShard)
		}
		total += len(s.entries)
		s.mu.Unlock()
	}
	if total > limit {
		t.Errorf("cache holds %d entries, limit %d", total, limit)
	}
}

func TestMakeRoom(t *testing.T) {
	tests := []struct {
		name          string
		expired, live int
		limit         int
		wantLen       int
	}{
		{"expired swept, live kept", 4, 4, 8, 4},
		{"all live: random eighth evicted", 0, 16, 16, 14},
		{"tiny shard", 0, 1, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &shard{entries: map[string]*entry{}}
			for i := range tt.expired {
				s.entries[fmt.Sprint("expired", i)] = &entry{deadline: testNow}
			}
			for i := range tt.live {
				s.entries[fmt.Sprint("live", i)] = &entry{deadline: testNow.Add(time.Second)}
			}
			s.makeRoom(tt.limit, testNow)
			if got := len(s.entries); got != tt.wantLen {
				t.Errorf("entries after makeRoom = %d, want %d", got, tt.wantLen)
			}
			for k := range s.entries {
				if strings.HasPrefix(k, "expired") {
					t.Errorf("expired entry %q kept", k)
				}
			}
		})
	}
}

func TestConcurrentVerify(t *testing.T) {
	v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
	toks := []string{signRS(t, baseClaims()), signRS(t, with(baseClaims(), "sub", "user:bob"))}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				tok := toks[(g+i)%len(toks)]
				if _, err := v.Verify(tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCachedVerifyDoesNotAllocate(t *testing.T) {
	v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
	tok := signRS(t, baseClaims())
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("cached Verify() allocs = %v, want 0", allocs)
	}
}

func TestHasAudience(t *testing.T) {
	id := &Identity{Audience: []string{"https://a.example", "b"}}
	tests := []struct {
		aud  string
		want bool
	}{
		{"https://a.example", true},
		{"b", true},
		{"https://a.example/", false},
		{"B", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.aud, func(t *testing.T) {
			if got := id.HasAudience(tt.aud); got != tt.want {
				t.Errorf("HasAudience(%q) = %v, want %v", tt.aud, got, tt.want)
			}
		})
	}
}

func TestNewPanicsWithoutRequiredConfig(t *testing.T) {
	for _, cfg := range []Config{{Keys: newKeySet()}, {Issuer: testIssuer}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", cfg)
				}
			}()
			New(cfg)
		}()
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		want   string
		wantOK bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"Bearer a-b_c~d+e/f==", "a-b_c~d+e/f==", true},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer  abc", "", false},
		{"Bearer abc def", "", false},
		{"Bearer abc ", "", false},
		{"Bearer\tabc", "", false},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"Bearer =abc", "", false},
		{"Bearer ab=c", "", false},
		{"Bearer abc\n", "", false},
		{" Bearer abc", "", false},
		{"Bearer é", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got, ok := BearerToken(tt.header)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("BearerToken(%q) = %q, %v, want %q, %v", tt.header, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if allocs := testing.AllocsPerRun(100, func() { BearerToken("Bearer abc.def.ghi") }); allocs != 0 {
		t.Errorf("BearerToken allocs = %v, want 0", allocs)
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
	tok := signRS(b, baseClaims())
	if _, err := v.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
	toks := make([]string, 64)
	for i := range toks {
		toks[i] = signRS(b, with(baseClaims(), "sub", strings.Repeat("u", i+1)))
		if _, err := v.Verify(toks[i]); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		tok := toks[next.Add(1)%int64(len(toks))]
		for pb.Next() {
			if _, err := v.Verify(tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	v := New(Config{Issuer: testIssuer, Keys: newKeySet(), Now: func() time.Time { return testNow }, CacheEntries: -1})
	tok := signRS(b, baseClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBearerToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		BearerToken("Bearer abc.def.ghi")
	}
}
