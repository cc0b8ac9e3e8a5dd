package e2e

import (
	"context"

	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestIAPBrowserSignIn walks a browser through a service deployed with
// --iap: sent to sign in, a one-time link from the CLI, a session for that
// host only, the app receiving a signed assertion it verifies with a
// standard JOSE library against Usher's published keys, a person without
// the accessor role refused with a page saying who they are, sign-out; and
// the attacks: spoofed assertions, replayed tickets, another host's session.
func TestIAPBrowserSignIn(t *testing.T) {
	s := startServer(t)
	s.mustCLI(t, "run", "deploy", "dash", "--image=file://"+echoBin, "--region="+region, "--iap")
	svcURL := s.describe(t, "dash").Status.URL
	html := []string{"Accept", "text/html"}

	// signIn follows a one-time link as a browser would and returns the
	// session cookie it ends with.
	signIn := func(t *testing.T, flags ...string) string {
		t.Helper()
		link := strings.TrimSpace(s.mustCLI(t, append([]string{"iap", "login", svcURL + "/headers", "--no-browser"}, flags...)...).stdout)
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		page := s.get(t, link)
		if page.status != 200 || !strings.Contains(page.body, "Sign in as") {
			t.Fatalf("the link's page: got %d %s", page.status, page.body)
		}
		r := s.do(t, "POST", s.serverURL(t)+"/_iap/signin", strings.NewReader("code="+u.Query().Get("code")), "Content-Type", "application/x-www-form-urlencoded")
		cb := r.header.Get("Location")
		if r.status != 303 || !strings.HasPrefix(cb, strings.TrimRight(svcURL, "/")+"/_gcp_iap/callback?ticket=") {
			t.Fatalf("spending the link: got %d, Location %q", r.status, cb)
		}
		r = s.get(t, cb)
		if r.status != 303 || r.header.Get("Location") != "/headers" {
			t.Fatalf("the callback: got %d, Location %q, want 303 to /headers", r.status, r.header.Get("Location"))
		}
		set := r.header.Get("Set-Cookie")
		for _, want := range []string{"GCP_IAP_AUTH_TOKEN=", "HttpOnly", "SameSite=Lax", "Path=/"} {
			if !strings.Contains(set, want) {
				t.Errorf("session cookie %q: want %s", set, want)
			}
		}
		if strings.Contains(strings.ToLower(set), "domain=") {
			t.Errorf("session cookie %q: want a host-only cookie", set)
		}
		if replay := s.get(t, cb); replay.status != 400 {
			t.Errorf("replaying the ticket: got %d, want 400", replay.status)
		}
		return strings.SplitN(strings.TrimPrefix(set, "GCP_IAP_AUTH_TOKEN="), ";", 2)[0]
	}

	mustStep(t, "a browser without a session is sent to sign in; other clients get 401", func(t *testing.T) {
		r := s.get(t, svcURL+"/headers", html...)
		if r.status != 302 || !strings.Contains(r.header.Get("Location"), "/_iap/signin?return=") {
			t.Fatalf("anonymous browser: got %d, Location %q", r.status, r.header.Get("Location"))
		}
		if r := s.do(t, "POST", svcURL+"/", strings.NewReader("x")); r.status != 401 {
			t.Errorf("anonymous POST: got %d, want 401", r.status)
		}
	})

	var cookie string
	mustStep(t, "sign in and reach the app with a verifiable assertion", func(t *testing.T) {
		cookie = signIn(t)
		r := s.get(t, svcURL+"/headers", "Cookie", "GCP_IAP_AUTH_TOKEN="+cookie+"; theme=dark",
			"X-Goog-Iap-Jwt-Assertion", "forged", "X-Goog-Authenticated-User-Email", "accounts.google.com:admin@evil.example")
		if r.status != 200 {
			t.Fatalf("with the session: got %d %s", r.status, r.body)
		}
		var seen struct{ Headers map[string][]string }
		if err := json.Unmarshal([]byte(r.body), &seen); err != nil {
			t.Fatal(err)
		}
		h := seen.Headers
		if got := h["X-Goog-Authenticated-User-Email"]; len(got) != 1 || got[0] != "accounts.google.com:owner@usher.localhost" {
			t.Errorf("X-Goog-Authenticated-User-Email: got %q", got)
		}
		if c := strings.Join(h["Cookie"], ";"); strings.Contains(c, "GCP_IAP") || !strings.Contains(c, "theme=dark") {
			t.Errorf("cookies reaching the app: got %q, want the app's own and never the session", c)
		}
		asserts := h["X-Goog-Iap-Jwt-Assertion"]
		if len(asserts) != 1 || asserts[0] == "forged" {
			t.Fatalf("assertion: got %q, want one signed by Usher", asserts)
		}
		// The app verifies it as Google's docs teach, with Usher's keys.
		var keys jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(s.get(t, s.serverURL(t)+"/iap/verify/public_key-jwk").body), &keys); err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.ParseSigned(asserts[0], []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var claims struct {
			jwt.Claims
			Email string `json:"email"`
		}
		if err := tok.Claims(keys.Key(tok.Headers[0].KeyID)[0].Key, &claims); err != nil {
			t.Fatalf("verifying the assertion with the published key: %v", err)
		}
		wantAud := "/projects/" + projectNumber(t, svcURL) + "/locations/" + region + "/services/dash"
		if err := claims.Validate(jwt.Expected{Issuer: "https://cloud.google.com/iap", AnyAudience: jwt.Audience{wantAud}}); err != nil || claims.Email != "owner@usher.localhost" {
			t.Errorf("assertion claims %+v: %v (want aud %s)", claims, err, wantAud)
		}
		// And as the README shows, with go-oidc.
		ctx := oidc.ClientContext(context.Background(), s.http)
		v := oidc.NewVerifier("https://cloud.google.com/iap", oidc.NewRemoteKeySet(ctx, s.serverURL(t)+"/iap/verify/public_key-jwk"),
			&oidc.Config{ClientID: wantAud, SupportedSigningAlgs: []string{"ES256"}})
		if _, err := v.Verify(ctx, asserts[0]); err != nil {
			t.Errorf("verifying the assertion with go-oidc as the README shows: %v", err)
		}
	})

	mustStep(t, "a session is for its host only", func(t *testing.T) {
		s.mustCLI(t, "run", "deploy", "other", "--image=file://"+echoBin, "--region="+region, "--iap")
		other := s.describe(t, "other").Status.URL
		if r := s.get(t, other+"/headers", append(html, "Cookie", "GCP_IAP_AUTH_TOKEN="+cookie)...); r.status != 302 {
			t.Errorf("dash's session on another service: got %d, want 302 to sign in", r.status)
		}
	})

	sa := s.createSA(t, "iap-person")
	mustStep(t, "a person without the role gets a page saying who they are", func(t *testing.T) {
		c := signIn(t, "--impersonate-service-account="+sa)
		r := s.get(t, svcURL+"/headers", "Cookie", "GCP_IAP_AUTH_TOKEN="+c)
		if r.status != 403 || !strings.Contains(r.body, "serviceAccount:"+sa) || !strings.Contains(r.body, "roles/iap.httpsResourceAccessor") {
			t.Errorf("without the role: got %d %s", r.status, r.body)
		}
		s.mustCLI(t, "iap", "web", "add-iam-policy-binding", "--resource-type=cloud-run", "--service=dash",
			"--member=serviceAccount:"+sa, "--role=roles/iap.httpsResourceAccessor")
		if r := s.get(t, svcURL+"/headers", "Cookie", "GCP_IAP_AUTH_TOKEN="+c); r.status != 200 {
			t.Errorf("with the role: got %d %s", r.status, r.body)
		}
	})

	mustStep(t, "programs pass with an identity token of an accessor", func(t *testing.T) {
		tok := s.idToken(t, sa, svcURL)
		if r := s.get(t, svcURL+"/headers", "Authorization", bearer(tok)); r.status != 200 {
			t.Errorf("an accessor's identity token: got %d %s", r.status, r.body)
		}
	})

	mustStep(t, "the IAP service agent must be allowed to invoke", func(t *testing.T) {
		agent := "serviceAccount:service-" + projectNumber(t, svcURL) + "@gcp-sa-iap.iam.gserviceaccount.com"
		s.mustCLI(t, "run", "services", "remove-iam-policy-binding", "dash", "--region="+region, "--member="+agent, "--role=roles/run.invoker")
		if r := s.get(t, svcURL+"/headers", "Cookie", "GCP_IAP_AUTH_TOKEN="+cookie); r.status != 403 || !strings.Contains(r.body, "gcp-sa-iap") {
			t.Errorf("without the agent's invoker grant: got %d %s", r.status, r.body)
		}
	})

	mustStep(t, "sign out clears the session", func(t *testing.T) {
		r := s.get(t, svcURL+"/_gcp_iap/clear_login_cookie")
		if r.status != 200 || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("clear_login_cookie: got %d, Set-Cookie %q", r.status, r.header.Get("Set-Cookie"))
		}
	})
}

// projectNumber reads PROJECTNUMBER from a service URL NAME-PROJECTNUMBER.REGION….
func projectNumber(t *testing.T, serviceURL string) string {
	t.Helper()
	u, err := url.Parse(serviceURL)
	if err != nil {
		t.Fatal(err)
	}
	label := strings.SplitN(u.Hostname(), ".", 2)[0]
	return label[strings.LastIndexByte(label, '-')+1:]
}
