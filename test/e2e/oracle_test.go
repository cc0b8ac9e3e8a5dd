package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/authn/oidctest"
)

// TestInvocationOracle brute-forces the gateway's invocation decision: for
// every member kind, bound on the service, on the project or nowhere, and
// every kind of caller, the status the gateway answers (401/403/200) must be
// the one a deliberately simple evaluator written here predicts. The oracle
// does not use internal/iam; it only knows the documented rules.
func TestInvocationOracle(t *testing.T) {
	idp := oidctest.New()
	defer idp.Close()
	s := startServerWith(t, "--trusted-issuer", idp.URL)
	const name = "oracle-hello"
	svcURL := s.deploy(t, name, helloBin)
	sa := s.createSA(t, "oracle-invoker")
	access := strings.TrimSpace(s.mustCLI(t, "auth", "print-access-token").stdout)
	api := s.serverURL(t)
	servicePolicyURL := api + "/v1/projects/" + project + "/locations/" + region + "/services/" + name
	projectPolicyURL := api + "/v1/projects/" + project

	// Callers. The owner is Usher's own user; it holds roles/owner on the
	// project (part of the baseline the oracle reads below).
	owner := strings.TrimSpace(s.mustCLI(t, "auth", "print-identity-token", "--audiences", svcURL).stdout)
	type caller struct {
		name  string
		token string
		// what the oracle knows about it
		authenticated bool
		email         string
		serviceAcct   bool
		groups        []string
	}
	ownerEmail, _ := claims(t, owner)["email"].(string)
	callers := []caller{
		{name: "none"},
		{name: "own user", token: owner, authenticated: true, email: ownerEmail},
		{name: "own service account", token: s.idToken(t, sa, svcURL), authenticated: true, email: sa, serviceAcct: true},
		{name: "external", token: idp.Token(idpWith(idp.Claims("Alice@Example.com", svcURL), "groups", []string{"Team@Example.com"})),
			authenticated: true, email: "alice@example.com", groups: []string{"team@example.com"}},
		{name: "external, email unverified", token: idp.Token(idpWith(idp.Claims("bob@example.com", svcURL),
			"email_verified", false, "groups", []string{"team@example.com"})),
			authenticated: true, groups: []string{"team@example.com"}},
		{name: "wrong audience", token: idp.Token(idp.Claims("alice@example.com", svcURL+".elsewhere"))},
	}
	members := []string{
		"allUsers", "allAuthenticatedUsers",
		"user:alice@example.com", "user:" + ownerEmail,
		"serviceAccount:" + sa,
		"group:team@example.com",
		"domain:example.com", "domain:" + ownerEmail[strings.Index(ownerEmail, "@")+1:],
	}
	invokingRoles := []string{"roles/run.invoker", "roles/run.servicesInvoker", "roles/run.developer",
		"roles/editor", "roles/run.admin", "roles/owner"}

	call := func(method, url string, body any) (int, []byte) {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		r := s.do(t, method, url, bytes.NewReader(b), "Authorization", bearer(access), "Content-Type", "application/json")
		return r.status, []byte(r.body)
	}
	status, body := call(http.MethodPost, projectPolicyURL+":getIamPolicy", map[string]any{})
	if status != 200 {
		t.Fatalf("project getIamPolicy: %d %s", status, body)
	}
	var baseline policy
	if err := json.Unmarshal(body, &baseline); err != nil {
		t.Fatal(err)
	}
	setPolicy := func(url string, bindings []binding) int {
		t.Helper()
		if bindings == nil {
			bindings = []binding{}
		}
		status, body := call(http.MethodPost, url+":setIamPolicy", map[string]any{"policy": map[string]any{"bindings": bindings}})
		if status != 200 && status != 400 {
			t.Fatalf("setIamPolicy %s: %d %s", url, status, body)
		}
		return status
	}
	defer setPolicy(projectPolicyURL, baseline.Bindings)

	// The oracle.
	matches := func(member string, c caller) bool {
		kind, value, _ := strings.Cut(member, ":")
		switch kind {
		case "allUsers":
			return true
		case "allAuthenticatedUsers":
			return c.authenticated
		case "user":
			return c.authenticated && !c.serviceAcct && c.email == value
		case "serviceAccount":
			return c.authenticated && c.serviceAcct && c.email == value
		case "group":
			return c.authenticated && slices.Contains(c.groups, value)
		case "domain":
			return c.authenticated && !c.serviceAcct && strings.HasSuffix(c.email, "@"+value)
		}
		return false
	}
	predict := func(effective []binding, c caller) int {
		var granted []string
		for _, b := range effective {
			if slices.Contains(invokingRoles, b.Role) {
				granted = append(granted, b.Members...)
			}
		}
		if slices.Contains(granted, "allUsers") {
			return 200 // public: no authentication at all
		}
		if !c.authenticated {
			return 401
		}
		for _, m := range granted {
			if matches(m, c) {
				return 200
			}
		}
		return 403
	}

	invoker := func(m string) []binding { return []binding{{Role: "roles/run.invoker", Members: []string{m}}} }
	for _, m := range members {
		for _, where := range []string{"service", "project", "nowhere"} {
			setPolicy(servicePolicyURL, nil)
			setPolicy(projectPolicyURL, baseline.Bindings)
			effective := slices.Clone(baseline.Bindings)
			switch where {
			case "service":
				if got := setPolicy(servicePolicyURL, invoker(m)); got != 200 {
					t.Fatalf("%s on the service: setIamPolicy %d", m, got)
				}
				effective = append(effective, invoker(m)...)
			case "project":
				got := setPolicy(projectPolicyURL, append(slices.Clone(baseline.Bindings), invoker(m)...))
				want := 200
				if m == "allUsers" || m == "allAuthenticatedUsers" {
					want = 400 // refused on a project
				}
				if got != want {
					t.Fatalf("%s on the project: setIamPolicy %d, want %d", m, got, want)
				}
				if got == 200 {
					effective = append(effective, invoker(m)...)
				}
			}
			for _, c := range callers {
				want := predict(effective, c)
				var got int
				for range 20 { // tolerate propagation, not a wrong answer
					var headers []string
					if c.token != "" {
						headers = []string{"Authorization", bearer(c.token)}
					}
					if got = s.get(t, svcURL, headers...).status; got == want {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if got != want {
					t.Errorf("%s bound on %s, caller %s: gateway %d, oracle %d", m, where, c.name, got, want)
				}
			}
		}
	}
	t.Log(fmt.Sprintf("%d members × 3 placements × %d callers compared", len(members), len(callers)))
}
