package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/store/bolt"
)

func TestParsePrincipals(t *testing.T) {
	tests := []struct {
		in           string
		want         []string
		wantProblems []string
	}{
		{in: "allUsers", want: []string{"allUsers"}},
		{in: "user:a@example.com, user:b@example.com", want: []string{"user:a@example.com", "user:b@example.com"}},
		{in: "user:a@example.com\r\nserviceAccount:s@p.iam.gserviceaccount.com\n\n", want: []string{"user:a@example.com", "serviceAccount:s@p.iam.gserviceaccount.com"}},
		{in: "user:A@Example.com,user:a@example.com", want: []string{"user:a@example.com"}},
		{in: "  domain:example.com ,group:g@example.com", want: []string{"domain:example.com", "group:g@example.com"}},
		{in: "allusers", wantProblems: []string{`did you mean "allUsers"`}},
		{in: "alice@example.com", wantProblems: []string{`did you mean "user:alice@example.com"`}},
		{in: "allUsers, robot:r@example.com", want: []string{"allUsers"}, wantProblems: []string{`unknown member type "robot"`}},
		{in: "deleted:user:a@example.com?uid=1", wantProblems: []string{"deleted principal"}},
		{in: " , \n", wantProblems: []string{"Enter at least one principal"}},
		{in: "", wantProblems: []string{"Enter at least one principal"}},
		{in: strings.Repeat("user:a@example.com,", 3) + strings.Repeat("x,", maxPrincipals), want: []string{"user:a@example.com"}, wantProblems: []string{"at most"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, problems := parsePrincipals(tt.in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("members = %q, want %q", got, tt.want)
			}
			for _, want := range tt.wantProblems {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
					t.Errorf("problems = %q, want one containing %q", problems, want)
				}
			}
			if len(tt.wantProblems) == 0 && len(problems) > 0 {
				t.Errorf("problems = %q, want none", problems)
			}
			for _, p := range problems {
				if strings.Contains(p, "members must be") {
					t.Errorf("problem %q repeats the accepted forms listed under the field", p)
				}
			}
		})
	}
}

func TestPublicMembers(t *testing.T) {
	got := publicMembers([]string{"user:a@example.com", "allAuthenticatedUsers", "allUsers", "domain:example.com"})
	if want := []string{"allAuthenticatedUsers", "allUsers"}; !slices.Equal(got, want) {
		t.Errorf("publicMembers = %q, want %q", got, want)
	}
}

func TestSameEtag(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{iam.Etag(7), iam.Etag(7), true},
		{iam.Etag(7), strings.TrimRight(iam.Etag(7), "="), true},
		{iam.Etag(7), iam.Etag(8), false},
		{iam.EmptyEtag, iam.EmptyEtag, true},
		{iam.EmptyEtag, iam.Etag(1), false},
		{"", "", false}, // a form without an etag is never applied blindly
		{"garbage!", "garbage!", false},
	}
	for _, tt := range tests {
		if got := sameEtag(tt.a, tt.b); got != tt.want {
			t.Errorf("sameEtag(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestAuthentication(t *testing.T) {
	roles := iam.Predefined()
	svc := func(annotations map[string]string) *apis.Service {
		return &apis.Service{Metadata: apis.ObjectMeta{Annotations: annotations}}
	}
	policy := func(role string, members ...string) *iam.Policy {
		return &iam.Policy{Bindings: []iam.Binding{{Role: role, Members: members}}}
	}
	tests := []struct {
		name   string
		s      *apis.Service
		p      *iam.Policy
		want   string
		public bool
	}{
		{"private", svc(nil), &iam.Policy{}, "Require authentication", false},
		{"allUsers invoker", svc(nil), policy("roles/run.invoker", "allUsers"), "Allow unauthenticated", true},
		{"allUsers servicesInvoker", svc(nil), policy("roles/run.servicesInvoker", "allUsers"), "Allow unauthenticated", true},
		{"allUsers viewer cannot invoke", svc(nil), policy("roles/run.viewer", "allUsers"), "Require authentication", false},
		{"allAuthenticatedUsers needs a token", svc(nil), policy("roles/run.invoker", "allAuthenticatedUsers"), "Require authentication", false},
		{"invoker check disabled", svc(map[string]string{apis.AnnotationInvokerIAMDisabled: "True"}), &iam.Policy{}, "Public — invoker check disabled", true},
		{"policy unreadable", svc(nil), nil, "Unknown", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := authentication(tt.s, tt.p, roles)
			if got.Label != tt.want || got.Public != tt.public {
				t.Errorf("authentication = %q (public %v), want %q (public %v)", got.Label, got.Public, tt.want, tt.public)
			}
		})
	}
}

func TestCookieName(t *testing.T) {
	for host, want := range map[string]string{
		"localhost:8080":  "usher_session_8080",
		"127.0.0.1:38123": "usher_session_38123",
		"localhost":       "usher_session",
		"[::1]:9000":      "usher_session_9000",
		"evil:80x":        "usher_session",
	} {
		r := httptest.NewRequest(http.MethodGet, "/console/", nil)
		r.Host = host
		if got := (&Console{}).cookieName(r); got != want {
			t.Errorf("cookieName(%q) = %q, want %q", host, got, want)
		}
		secure := &Console{cfg: Config{SecureCookies: true}}
		if got, path := secure.cookieName(r), secure.cookiePath(r); got != "__Host-"+want || path != "/" {
			t.Errorf("under HTTPS: cookieName(%q), cookiePath = %q, %q, want %q, \"/\"", host, got, path, "__Host-"+want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now",
		time.Minute:      "1 minute ago",
		5 * time.Minute:  "5 minutes ago",
		3 * time.Hour:    "3 hours ago",
		72 * time.Hour:   "3 days ago",
	} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
}

// clock is a settable time source.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// newTestConsole is a console on a real store without an admin core;
// enough for what does not read or write state (sign-in, sessions, CSRF).
func newTestConsole(t *testing.T, clk *clock) *Console {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := New(Config{
		Store:   st,
		Roles:   iam.Predefined(),
		Project: "p",
		Now:     clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issueCode stores a code as the sign-in endpoint does.
func issueCode(t *testing.T, c *Console, email string) string {
	t.Helper()
	now := c.cfg.Now()
	code := newSecret()
	b := `{"email":"` + email + `","issuedBy":"` + email + `","created":"` + now.Format(time.RFC3339Nano) + `","expires":"` + now.Add(CodeTTL).Format(time.RFC3339Nano) + `"}`
	if _, err := c.cfg.Store.Put(context.Background(), codesPrefix+hashSecret(code), []byte(b), 0); err != nil {
		t.Fatal(err)
	}
	return code
}

func serve(c *Console, method, target string, form url.Values, headers ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.Host = "localhost:8080"
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	return w
}

func TestSignInCodeLifecycle(t *testing.T) {
	clk := &clock{now: time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)}
	c := newTestConsole(t, clk)

	// An expired code does not sign in.
	expired := issueCode(t, c, "alice@example.com")
	clk.now = clk.now.Add(CodeTTL)
	if w := serve(c, http.MethodPost, "/console/signin", url.Values{"code": {expired}}); w.Code != http.StatusBadRequest {
		t.Errorf("expired code: got %d, want 400", w.Code)
	}

	// A fresh one does, once; the session lasts SessionTTL.
	code := issueCode(t, c, "alice@example.com")
	w := serve(c, http.MethodPost, "/console/signin", url.Values{"code": {code}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: got %d, want 303\n%s", w.Code, w.Body)
	}
	cookie := w.Result().Cookies()[0]
	if cookie.Name != "usher_session_8080" || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/console" || cookie.MaxAge != int(SessionTTL/time.Second) {
		t.Errorf("session cookie = %+v", cookie)
	}
	if w := serve(c, http.MethodPost, "/console/signin", url.Values{"code": {code}}); w.Code != http.StatusBadRequest {
		t.Errorf("second use of a code: got %d, want 400", w.Code)
	}
	withCookie := []string{"Cookie", cookie.Name + "=" + cookie.Value}
	if w := serve(c, http.MethodGet, "/console/", nil, withCookie...); w.Code != http.StatusSeeOther {
		t.Errorf("signed in GET /console/: got %d, want 303 to the services list", w.Code)
	}
	clk.now = clk.now.Add(SessionTTL)
	if w := serve(c, http.MethodGet, "/console/", nil, withCookie...); w.Code != http.StatusUnauthorized {
		t.Errorf("GET after the session expired: got %d, want 401", w.Code)
	}
}

func TestStaticAssetsAndHeaders(t *testing.T) {
	c := newTestConsole(t, &clock{now: time.Now()})
	for name, wantType := range map[string]string{"console.css": "text/css", "console.js": "text/javascript", "usher.svg": "image/svg+xml"} {
		w := serve(c, http.MethodGet, "/console/static/"+name+"?v="+c.pages.hashes[name], nil)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), wantType) {
			t.Errorf("GET %s: got %d %q, want 200 %s", name, w.Code, w.Header().Get("Content-Type"), wantType)
		}
		if !strings.Contains(w.Header().Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s with its hash: Cache-Control %q, want immutable", name, w.Header().Get("Cache-Control"))
		}
		if got := w.Header().Get("Content-Security-Policy"); got != contentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", name, got)
		}
	}
	if w := serve(c, http.MethodGet, "/console/static/nope.js", nil); w.Code != http.StatusNotFound {
		t.Errorf("GET a missing asset: got %d, want 404", w.Code)
	}
	// The API route never reads cookies and answers in Google's shape.
	w := serve(c, http.MethodGet, "/console/api/sign-in-codes", nil)
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"status": "NOT_FOUND"`) {
		t.Errorf("GET the sign-in code endpoint: got %d %s, want a 404 JSON error", w.Code, w.Body)
	}
}
