package e2e

import (
	"context"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/impersonate"
	"google.golang.org/api/option"
)

// TestGoogleAuthLibraries: Google's own Go auth libraries, pointed at Usher,
// obtain tokens for a service account that the gateway and the API accept.
func TestGoogleAuthLibraries(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "lib-target", helloBin)
	sa := s.createSA(t, "lib-caller")
	s.grant(t, "lib-target", "serviceAccount:"+sa, "roles/run.invoker")
	api := s.serverURL(t)
	owner := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: strings.TrimSpace(s.mustCLI(t, "auth", "print-access-token").stdout)})
	ctx := context.Background()
	// The libraries call https://iamcredentials.googleapis.com by name; an
	// HTTP client that sends Google API hosts to Usher is how a test (or a
	// program) points them at it, unchanged.
	toUsher := &oauth2.Transport{Source: owner, Base: googleAPIsTo(api)}
	viaUsher := option.WithHTTPClient(&http.Client{Transport: toUsher})

	t.Run("impersonate.IDTokenSource", func(t *testing.T) {
		ts, err := impersonate.IDTokenSource(ctx, impersonate.IDTokenConfig{Audience: url, TargetPrincipal: sa, IncludeEmail: true},
			viaUsher)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.get(t, url, "Authorization", bearer(tok.AccessToken)); got.status != 200 || got.body != "Hello World!\n" {
			t.Fatalf("call with the library's ID token = %d %q, want 200 Hello World!", got.status, got.body)
		}
	})

	t.Run("impersonate.CredentialsTokenSource", func(t *testing.T) {
		ts, err := impersonate.CredentialsTokenSource(ctx, impersonate.CredentialsConfig{TargetPrincipal: sa, Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}},
			viaUsher)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		// The account may invoke but not administer: the API refuses it.
		got := s.get(t, api+"/v1/projects/"+project+"/locations/"+region+"/services", "Authorization", bearer(tok.AccessToken))
		if got.status != 403 || !strings.Contains(got.body, "PERMISSION_DENIED") {
			t.Fatalf("listing services as %s = %d %s, want 403 PERMISSION_DENIED", sa, got.status, got.body)
		}
	})
}

// googleAPIsTo sends requests for *.googleapis.com to the Usher server at
// base (plain HTTP on loopback), leaving path and query as they are.
func googleAPIsTo(base string) http.RoundTripper {
	target, err := neturl.Parse(base)
	if err != nil {
		panic(err)
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Hostname(), ".googleapis.com") {
			r = r.Clone(r.Context())
			r.URL.Scheme, r.URL.Host, r.Host = target.Scheme, target.Host, target.Host
		}
		return http.DefaultTransport.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
