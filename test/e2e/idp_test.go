package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/authn/oidctest"
)

// TestExternalIdentityProvider trusts a tiny OIDC provider running in the
// test process (--trusted-issuer) and invokes a private service with its
// ID tokens: user:, group:, domain: and allAuthenticatedUsers bindings all
// admit them; a restart without the flag makes the same token a 401.
func TestExternalIdentityProvider(t *testing.T) {
	idp := oidctest.New()
	defer idp.Close()
	s := startServerWith(t, "--trusted-issuer", idp.URL)
	const name = "idp-hello"
	svcURL := s.deploy(t, name, helloBin)

	alice := idp.Token(idpWith(idp.Claims("alice@example.com", svcURL), "groups", []string{"Team@Example.com"}))
	unverified := idp.Token(idpWith(idp.Claims("mallory@example.com", svcURL), "email_verified", false))
	bob := idp.Token(idp.Claims("bob@other.example", svcURL))
	wrongAud := idp.Token(idp.Claims("alice@example.com", "https://elsewhere.example"))
	other := oidctest.New()
	defer other.Close()
	untrusted := other.Token(other.Claims("alice@example.com", svcURL))

	status := func(tok string) int {
		return s.get(t, svcURL, "Authorization", bearer(tok)).status
	}
	expect := func(t *testing.T, want map[string]int, toks map[string]string) {
		t.Helper()
		for who, code := range want {
			if got := status(toks[who]); got != code {
				t.Errorf("%s: got %d, want %d", who, got, code)
			}
		}
	}
	toks := map[string]string{"alice": alice, "unverified": unverified, "bob": bob, "wrongAud": wrongAud, "untrusted": untrusted}

	// Discovery runs in the background at startup; until then the
	// provider's tokens are refused (401).
	poll(t, 20*time.Second, "the trusted issuer's tokens to authenticate", func() (bool, string) {
		c := status(alice)
		return c == 403, fmt.Sprint(c)
	})

	t.Run("authenticated but not granted", func(t *testing.T) {
		expect(t, map[string]int{"alice": 403, "unverified": 403, "bob": 403, "wrongAud": 401, "untrusted": 401}, toks)
		if r := s.get(t, svcURL); r.status != 401 {
			t.Errorf("no credentials: got %d, want 401", r.status)
		}
	})
	bindings := []struct {
		member string
		want   map[string]int
	}{
		{"user:alice@example.com", map[string]int{"alice": 200, "unverified": 403, "bob": 403}},
		{"group:team@example.com", map[string]int{"alice": 200, "unverified": 403, "bob": 403}},
		{"domain:example.com", map[string]int{"alice": 200, "unverified": 403, "bob": 403}},
		{"allAuthenticatedUsers", map[string]int{"alice": 200, "unverified": 200, "bob": 200, "wrongAud": 401, "untrusted": 401}},
	}
	for _, b := range bindings {
		t.Run(b.member, func(t *testing.T) {
			s.grant(t, name, b.member, "roles/run.invoker")
			expect(t, b.want, toks)
			s.mustCLI(t, "run", "services", "remove-iam-policy-binding", name,
				"--member="+b.member, "--role=roles/run.invoker", "--region="+region)
			if got := status(alice); got != 403 {
				t.Errorf("after removing %s: got %d, want 403", b.member, got)
			}
		})
	}

	t.Run("restart without --trusted-issuer refuses the same token", func(t *testing.T) {
		s.grant(t, name, "user:alice@example.com", "roles/run.invoker")
		if got := status(alice); got != 200 {
			t.Fatalf("before restart: got %d, want 200", got)
		}
		s.stop()
		s.serveArgs = nil
		s.restart(t, "")
		r := s.get(t, svcURL, "Authorization", bearer(alice))
		expect401(t, r, `Bearer error="invalid_token"`)
	})
}

func idpWith(m map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}
