package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAnonymousAndCrossSiteRequestsAreRefused checks, over plain HTTP, what
// the console answers to requests without a session, without the CSRF token
// or from another site, and that a sign-in link works exactly once.
func TestAnonymousAndCrossSiteRequestsAreRefused(t *testing.T) {
	s := startServer(t)
	helloURL := s.deploy(t, "hello")
	grantURL := s.servicePage("hello", "permissions/grant")
	public := url.Values{"members": {"allUsers"}, "role": {"roles/run.invoker"}, "confirm_public": {"yes"}}

	// Anonymous: 401 and how to sign in, never data.
	for _, path := range []string{"/console/", "/console/projects/" + project + "/services", strings.TrimPrefix(s.servicePage("hello", "permissions"), s.base())} {
		got := s.do(t, http.MethodGet, s.base()+path, nil)
		if got.status != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: got %d, want 401", path, got.status)
		}
		if !strings.Contains(got.body, "usher console") || strings.Contains(got.body, "hello-") || strings.Contains(got.body, "roles/") {
			t.Errorf("anonymous GET %s: want sign-in instructions and no data, got:\n%s", path, got.body)
		}
	}
	if got := s.postForm(t, grantURL, public); got.status != http.StatusUnauthorized {
		t.Errorf("anonymous POST grant: got %d, want 401", got.status)
	}
	if got := s.do(t, http.MethodPost, s.base()+"/console/api/sign-in-codes", strings.NewReader("{}")); got.status != http.StatusUnauthorized {
		t.Errorf("sign-in code without a token: got %d, want 401\n%s", got.status, got.body)
	}

	// A sign-in link: GET shows whom it signs in as and does not spend it;
	// the POST spends it and sets the session cookie.
	link := s.signInLink(t)
	code := strings.TrimPrefix(link, s.base()+"/console/signin?code=")
	for range 2 {
		got := s.do(t, http.MethodGet, link, nil)
		if got.status != http.StatusOK || !strings.Contains(got.body, "user:owner@usher.localhost") {
			t.Fatalf("GET sign-in link: got %d, want 200 naming the principal\n%s", got.status, got.body)
		}
	}
	signin := s.postForm(t, s.base()+"/console/signin", url.Values{"code": {code}}, "Origin", s.base())
	if signin.status != http.StatusSeeOther || signin.header.Get("Location") != "/console/" {
		t.Fatalf("POST sign-in: got %d Location %q, want 303 /console/\n%s", signin.status, signin.header.Get("Location"), signin.body)
	}
	setCookie := signin.header.Get("Set-Cookie")
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("session cookie %q lacks %s", setCookie, attr)
		}
	}
	cookie, _, _ := strings.Cut(setCookie, ";")

	// The link is spent.
	if got := s.postForm(t, s.base()+"/console/signin", url.Values{"code": {code}}, "Origin", s.base()); got.status != http.StatusBadRequest || strings.Contains(got.header.Get("Set-Cookie"), "usher_session") {
		t.Errorf("reusing a sign-in code: got %d (Set-Cookie %q), want 400 and no session", got.status, got.header.Get("Set-Cookie"))
	}
	if got := s.do(t, http.MethodGet, link, nil); got.status != http.StatusBadRequest {
		t.Errorf("GET a spent sign-in link: got %d, want 400", got.status)
	}
	// A code from a cross-site form is refused before it is spent.
	other := strings.TrimPrefix(s.signInLink(t), s.base()+"/console/signin?code=")
	if got := s.postForm(t, s.base()+"/console/signin", url.Values{"code": {other}}, "Origin", "http://evil.example"); got.status != http.StatusForbidden {
		t.Errorf("cross-site POST sign-in: got %d, want 403", got.status)
	}
	if got := s.postForm(t, s.base()+"/console/signin", url.Values{"code": {other}}, "Origin", s.base()); got.status != http.StatusSeeOther {
		t.Errorf("the code refused cross-site was spent anyway: got %d, want 303", got.status)
	}

	// Signed in: pages carry the security headers.
	page := s.do(t, http.MethodGet, s.servicePage("hello", "permissions"), nil, "Cookie", cookie)
	if page.status != http.StatusOK {
		t.Fatalf("signed-in GET permissions: got %d, want 200\n%s", page.status, page.body)
	}
	wantHeaders := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for k, want := range wantHeaders {
		if got := page.header.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	if strings.Contains(page.body, "<script>") || strings.Contains(page.body, " style=") {
		t.Errorf("page has inline script or style, which the CSP forbids")
	}
	csrf := field(t, csrfField, page.body)
	grantPage := s.do(t, http.MethodGet, grantURL, nil, "Cookie", cookie)
	etag := field(t, etagField, grantPage.body)

	// State-changing requests without the token, or from another site: 403.
	with := func(extra url.Values) url.Values {
		v := url.Values{}
		for k, vs := range public {
			v[k] = vs
		}
		v.Set("etag", etag)
		for k, vs := range extra {
			v[k] = vs
		}
		return v
	}
	for _, tc := range []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no CSRF token", with(nil), nil},
		{"wrong CSRF token", with(url.Values{"csrf": {"not-the-token"}}), nil},
		{"cross-site Origin", with(url.Values{"csrf": {csrf}}), []string{"Origin", "http://evil.example"}},
		{"Sec-Fetch-Site cross-site", with(url.Values{"csrf": {csrf}}), []string{"Sec-Fetch-Site", "cross-site"}},
		{"Sec-Fetch-Site same-site", with(url.Values{"csrf": {csrf}}), []string{"Sec-Fetch-Site", "same-site"}},
	} {
		got := s.postForm(t, grantURL, tc.form, append([]string{"Cookie", cookie}, tc.headers...)...)
		if got.status != http.StatusForbidden {
			t.Errorf("POST grant, %s: got %d, want 403", tc.name, got.status)
		}
	}
	if got := s.postForm(t, s.base()+"/console/signout", url.Values{}, "Cookie", cookie); got.status != http.StatusForbidden {
		t.Errorf("POST sign-out without the CSRF token: got %d, want 403", got.status)
	}
	if got := s.members(t, "hello", "roles/run.invoker"); len(got) != 0 {
		t.Fatalf("after refused POSTs: invokers %v, want none", got)
	}
	if got := s.invoke(t, helloURL); got.status != http.StatusUnauthorized {
		t.Fatalf("after refused POSTs: GET %s: got %d, want 401", helloURL, got.status)
	}

	// The same POST from the console's own page works (so the refusals
	// above were the checks, not something else).
	ok := s.postForm(t, grantURL, with(url.Values{"csrf": {csrf}}), "Cookie", cookie, "Origin", s.base(), "Sec-Fetch-Site", "same-origin")
	if ok.status != http.StatusSeeOther {
		t.Fatalf("same-origin POST grant with the token: got %d, want 303\n%s", ok.status, ok.body)
	}
	if got := s.members(t, "hello", "roles/run.invoker"); !sameMembers(got, []string{"allUsers"}) {
		t.Fatalf("after the accepted POST: invokers %v, want [allUsers]", got)
	}

	// Signing out ends the session for good.
	if got := s.postForm(t, s.base()+"/console/signout", url.Values{"csrf": {csrf}}, "Cookie", cookie, "Origin", s.base()); got.status != http.StatusOK {
		t.Fatalf("POST sign-out: got %d, want 200", got.status)
	}
	if got := s.do(t, http.MethodGet, s.servicePage("hello", "permissions"), nil, "Cookie", cookie); got.status != http.StatusUnauthorized {
		t.Errorf("GET with a signed-out session: got %d, want 401", got.status)
	}
}

// TestSignInAsAnotherPrincipalNeedsOwner: `usher console --as` is an owner's
// tool.
func TestSignInAsAnotherPrincipalNeedsOwner(t *testing.T) {
	s := startServer(t)
	s.mustCLI(t, "iam", "service-accounts", "create", "robot-sa")
	robot := "robot-sa@" + project + ".iam.gserviceaccount.com"
	// The owner may mint the robot's tokens, but the robot holds nothing on
	// the project, so as the robot --as is refused.
	r := s.cli(t, "console", "--no-browser", "--as", "user:someone@example.com", "--impersonate-service-account", robot)
	if r.code == 0 || !strings.Contains(r.stderr, "PERMISSION_DENIED") || !strings.Contains(r.stderr, "resourcemanager.projects.setIamPolicy") {
		t.Errorf("got %s\nwant PERMISSION_DENIED naming resourcemanager.projects.setIamPolicy", r)
	}
	// Without --as the robot signs in as itself.
	link := strings.TrimSpace(s.mustCLI(t, "console", "--no-browser", "--impersonate-service-account", robot).stdout)
	if got := s.do(t, http.MethodGet, link, nil); !strings.Contains(got.body, "serviceAccount:"+robot) {
		t.Errorf("sign-in page for the impersonated account does not name it:\n%s", got.body)
	}
	// Malformed principals are refused with the API's own message.
	r = s.cli(t, "console", "--no-browser", "--as", "viewer@example.com")
	if r.code == 0 || !strings.Contains(r.stderr, `did you mean "user:viewer@example.com"`) {
		t.Errorf("got %s\nwant INVALID_ARGUMENT suggesting user:viewer@example.com", r)
	}
}
