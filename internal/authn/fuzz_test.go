package authn

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings, and single-byte mutations of a valid
// token, to Verify. Verify must never panic, and since RS256 signatures over a
// given message are unique and the verifier insists on canonical encodings,
// the only string it may ever accept is the one token the test signed.
func FuzzVerify(f *testing.F) {
	valid := signRS(f, baseClaims())
	parts := strings.Split(valid, ".")
	f.Add(valid, uint16(0), byte(0))
	f.Add(valid, uint16(len(parts[0])+5), byte(1))
	f.Add(valid, uint16(len(valid)-1), byte(0x20))
	f.Add(parts[0]+"."+parts[1], uint16(0), byte(0))
	f.Add(parts[0]+"."+parts[1]+".", uint16(3), byte('.'))
	f.Add(b64(`{"alg":"none","kid":"k1"}`)+"."+parts[1]+".", uint16(0), byte(0))
	f.Add(b64(`{"alg":"HS256","kid":"k1"}`)+"."+parts[1]+"."+parts[2], uint16(0), byte(0))
	f.Add(b64(`{"alg":"RS256","kid":"k1","crit":["b64"],"b64":false}`)+"."+parts[1]+"."+parts[2], uint16(0), byte(0))
	f.Add("", uint16(0), byte(0))
	f.Add("..", uint16(0), byte(0))
	f.Add("a.b.c.d", uint16(0), byte(0))
	f.Add(strings.Repeat("A", DefaultMaxTokenBytes+1), uint16(0), byte(0))

	v := newTestVerifier(newKeySet(), func() time.Time { return testNow })
	f.Fuzz(func(t *testing.T, s string, pos uint16, x byte) {
		if _, err := v.Verify(s); err == nil && s != valid {
			t.Fatalf("Verify accepted a token that was never signed: %q", s)
		}
		// Mutating any byte of the valid token changes what the signature
		// covers (or the signature itself); it must be rejected.
		if x == 0 {
			return
		}
		b := []byte(valid)
		i := int(pos) % len(b)
		b[i] ^= x
		if id, err := v.Verify(string(b)); err == nil {
			t.Fatalf("Verify accepted token mutated at byte %d (^%#x): %+v", i, x, id)
		}
	})
}

// FuzzBearerToken checks BearerToken never panics and only ever returns a
// non-empty whitespace-free suffix of a header with a Bearer scheme.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer", "Bearer ", "Bearer abc", "bearer a.b.c", "Bearer  x", "Bearer a b", "Basic Zm9v", "Bearer abc==", "Bearer é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := BearerToken(h)
		if !ok {
			if tok != "" {
				t.Fatalf("BearerToken(%q) = %q, false; want empty token on failure", h, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			t.Fatalf("BearerToken(%q) = %q: empty or contains whitespace", h, tok)
		}
		if !strings.EqualFold(h[:7], "Bearer ") || h[7:] != tok {
			t.Fatalf("BearerToken(%q) = %q: not the suffix after the scheme", h, tok)
		}
	})
}
