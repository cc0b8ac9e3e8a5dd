package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests attack the admin API's authority as a principal with too few
// roles would (the CLI with --impersonate-service-account, raw API calls):
// every way to gain what IAM did not grant must be refused, and the same
// action must work once the permission is granted.

// developer creates service account name holding roles/run.developer on
// the project and, as Cloud Run's docs ask of developers, Service Account
// User on the project's default runtime account; it returns its email and
// the CLI flag that acts as it.
func (s *server) developer(t *testing.T, name string) (email, as string) {
	t.Helper()
	email = s.createSA(t, name)
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+email, "--role=roles/run.developer")
	compute := s.describeDefaultAccount(t)
	s.mustCLI(t, "iam", "service-accounts", "add-iam-policy-binding", compute, "--member=serviceAccount:"+email, "--role=roles/iam.serviceAccountUser")
	return email, "--impersonate-service-account=" + email
}

// describeDefaultAccount is the project's default runtime service account.
func (s *server) describeDefaultAccount(t *testing.T) string {
	t.Helper()
	var accounts []struct{ Email string }
	if err := json.Unmarshal([]byte(s.mustCLI(t, "iam", "service-accounts", "list", "--format", "json").stdout), &accounts); err != nil {
		t.Fatal(err)
	}
	for _, a := range accounts {
		if strings.HasSuffix(a.Email, "-compute@developer.gserviceaccount.com") {
			return a.Email
		}
	}
	t.Fatalf("no default compute account in %+v", accounts)
	return ""
}

// apiCall sends a JSON request to the admin API with an access token.
func (s *server) apiCall(t *testing.T, token, method, path string, body any) response {
	t.Helper()
	var rd *strings.Reader
	if body == nil {
		rd = strings.NewReader("")
	} else {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	return s.do(t, method, s.serverURL(t)+path, rd, "Authorization", bearer(token), "Content-Type", "application/json")
}

// accessToken prints an access token, as the owner or as the account the
// flags impersonate.
func (s *server) accessToken(t *testing.T, flags ...string) string {
	t.Helper()
	return strings.TrimSpace(s.mustCLI(t, append([]string{"auth", "print-access-token"}, flags...)...).stdout)
}

// TestRuntimeIdentityNeedsActAs: deploying as a service account is acting
// as it; a developer without iam.serviceAccounts.actAs on the account (or
// naming a user, or a missing or disabled account) is refused, on every API.
func TestRuntimeIdentityNeedsActAs(t *testing.T) {
	s := startServer(t)
	_, as := s.developer(t, "dev-actas")
	target := s.createSA(t, "powerful")

	mustStep(t, "a user is not a runtime identity", func(t *testing.T) {
		line := deployFails(t, s.cli(t, "run", "deploy", "evil", "--image=file://"+helloBin, "--region="+region, "--service-account=owner@usher.localhost"))
		if !strings.Contains(line, "is not a service account") {
			t.Errorf("deploy as a user: got %q", line)
		}
	})
	mustStep(t, "without actAs the developer cannot deploy as another account", func(t *testing.T) {
		s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+saEmail("dev-actas"), "--role=roles/run.admin")
		line := deployFails(t, s.cli(t, "run", "deploy", "evil", "--image=file://"+helloBin, "--region="+region, "--service-account="+target, as))
		if !strings.Contains(line, "iam.serviceAccounts.actAs") {
			t.Errorf("deploy as %s without actAs: got %q", target, line)
		}
		// The v2 API is the same operation.
		tok := s.accessToken(t, as)
		r := s.apiCall(t, tok, "POST", "/v2/projects/"+project+"/locations/"+region+"/services?serviceId=evil2", map[string]any{
			"template": map[string]any{"serviceAccount": target, "containers": []any{map[string]any{"image": "file://" + helloBin}}},
		})
		if r.status != 403 || !strings.Contains(r.body, "iam.serviceAccounts.actAs") {
			t.Errorf("v2 create as %s: got %d %s, want 403 naming actAs", target, r.status, r.body)
		}
	})
	mustStep(t, "with roles/iam.serviceAccountUser on the account it works", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "add-iam-policy-binding", target, "--member=serviceAccount:"+saEmail("dev-actas"), "--role=roles/iam.serviceAccountUser")
		s.mustCLI(t, "run", "deploy", "good", "--image=file://"+helloBin, "--region="+region, "--service-account="+target, as)
	})
	mustStep(t, "a missing account is refused", func(t *testing.T) {
		line := deployFails(t, s.cli(t, "run", "deploy", "ghost", "--image=file://"+helloBin, "--region="+region, "--service-account="+saEmail("nobody-here")))
		if !strings.Contains(line, "does not exist") {
			t.Errorf("deploy as a missing account: got %q", line)
		}
	})
	mustStep(t, "a disabled account is refused", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "disable", target)
		line := deployFails(t, s.cli(t, "run", "deploy", "good2", "--image=file://"+helloBin, "--region="+region, "--service-account="+target))
		if !strings.Contains(line, "disabled") {
			t.Errorf("deploy as a disabled account: got %q", line)
		}
		s.mustCLI(t, "iam", "service-accounts", "enable", target)
	})
}

// TestInvokerCheckNeedsSetIamPolicy: turning the invoker check off makes a
// service public, so it needs run.services.setIamPolicy, like allUsers.
func TestInvokerCheckNeedsSetIamPolicy(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "priv", helloBin)
	_, as := s.developer(t, "dev-public")
	line := deployFails(t, s.cli(t, "run", "services", "update", "priv", "--region="+region, "--no-invoker-iam-check", as))
	if !strings.Contains(line, "run.services.setIamPolicy") {
		t.Errorf("--no-invoker-iam-check as run.developer: got %q", line)
	}
	tok := s.accessToken(t, as)
	r := s.apiCall(t, tok, "PATCH", "/v2/projects/"+project+"/locations/"+region+"/services/priv?updateMask=invokerIamDisabled",
		map[string]any{"invokerIamDisabled": true})
	if r.status != 403 {
		t.Errorf("v2 invokerIamDisabled as run.developer: got %d %s, want 403", r.status, r.body)
	}
	if r := s.get(t, url); r.status != 401 {
		t.Fatalf("after the refused attempts the service answers %d, want 401", r.status)
	}
	line = deployFails(t, s.cli(t, "run", "deploy", "pub", "--image=file://"+helloBin, "--region="+region, "--no-invoker-iam-check", as))
	if !strings.Contains(line, "run.services.setIamPolicy") {
		t.Errorf("deploy --no-invoker-iam-check as run.developer: got %q", line)
	}
	// The owner may.
	s.mustCLI(t, "run", "services", "update", "priv", "--region="+region, "--no-invoker-iam-check")
	expectHello(t, s.get(t, url))
}

// TestTokenKindsNeverMix: an identity token is no admin credential whatever
// its audience, the admin audience is never minted as an identity token,
// and an access token never invokes a service.
func TestTokenKindsNeverMix(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "kinds", helloBin)
	sa := s.createSA(t, "minter")
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+sa, "--role=roles/owner")
	owner := s.accessToken(t)

	r := s.apiCall(t, owner, "POST", "/v1/projects/-/serviceAccounts/"+sa+":generateIdToken", map[string]any{"audience": "usher-admin-api"})
	if r.status != 400 {
		t.Errorf("generateIdToken for the admin audience: got %d %s, want 400", r.status, r.body)
	}
	r = s.apiCall(t, owner, "POST", "/v1/projects/-/serviceAccounts/"+sa+":generateIdToken", map[string]any{"audience": "https://example.com"})
	var id struct{ Token string }
	if err := json.Unmarshal([]byte(r.body), &id); r.status != 200 || err != nil || id.Token == "" {
		t.Fatalf("generateIdToken: got %d %s", r.status, r.body)
	}
	if r := s.apiCall(t, id.Token, "GET", "/v1/projects/"+project+":getIamPolicy", nil); r.status != 401 {
		t.Errorf("an identity token on the admin API: got %d, want 401", r.status)
	}
	if r := s.get(t, url, "Authorization", bearer(owner)); r.status != 401 {
		t.Errorf("an access token at the gateway: got %d, want 401", r.status)
	}
	if r := s.get(t, url, "Authorization", bearer(s.idToken(t, sa, url))); r.status != 200 {
		t.Errorf("an identity token of an owner at the gateway: got %d, want 200", r.status)
	}
	// /token never mints the admin audience as an identity token either.
	r = s.do(t, "POST", s.serverURL(t)+"/token", strings.NewReader("grant_type=refresh_token&refresh_token="+s.credential(t)+"&audience=usher-admin-api"),
		"Content-Type", "application/x-www-form-urlencoded")
	if r.status == 200 {
		t.Errorf("/token with audience usher-admin-api: got 200 %s", r.body)
	}
}

// credential is the owner's long-lived CLI credential.
func (s *server) credential(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ Credential string }
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Credential == "" {
		t.Fatalf("%s: no credential (%v)", s.config, err)
	}
	return cfg.Credential
}

// TestServiceAccountLifecycle: deleting an account revokes its tokens at
// once and leaves deleted:… members that grant nothing; a re-created
// account inherits nothing; undelete restores; disable stops tokens until
// enable.
func TestServiceAccountLifecycle(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "life", helloBin)
	sa := s.createSA(t, "short-lived")
	s.grant(t, "life", "serviceAccount:"+sa, "roles/run.invoker")
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+sa, "--role=roles/viewer")
	tok := s.idToken(t, sa, url)
	access := s.accessToken(t, "--impersonate-service-account="+sa)
	expectHello(t, s.get(t, url, "Authorization", bearer(tok)))
	var before struct{ UniqueID string }
	r := s.apiCall(t, s.accessToken(t), "GET", "/v1/projects/"+project+"/serviceAccounts/"+sa, nil)
	json.Unmarshal([]byte(r.body), &before)

	mustStep(t, "disable stops its tokens; enable restores them", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "disable", sa)
		if r := s.get(t, url, "Authorization", bearer(tok)); r.status != 401 {
			t.Errorf("identity token of a disabled account: got %d, want 401", r.status)
		}
		if r := s.apiCall(t, access, "GET", "/v1/projects/"+project, nil); r.status != 401 {
			t.Errorf("access token of a disabled account: got %d, want 401", r.status)
		}
		if r := s.cli(t, "auth", "print-identity-token", "--impersonate-service-account="+sa, "--audiences="+url); r.code == 0 {
			t.Errorf("a token minted for a disabled account: %s", r)
		}
		s.mustCLI(t, "iam", "service-accounts", "enable", sa)
		expectHello(t, s.get(t, url, "Authorization", bearer(tok)))
	})
	mustStep(t, "delete revokes at once and rewrites members", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "delete", sa, "--quiet")
		if r := s.get(t, url, "Authorization", bearer(tok)); r.status != 401 {
			t.Errorf("identity token of a deleted account: got %d, want 401", r.status)
		}
		if r := s.apiCall(t, access, "GET", "/v1/projects/"+project, nil); r.status != 401 {
			t.Errorf("access token of a deleted account: got %d, want 401", r.status)
		}
		want := "deleted:serviceAccount:" + sa + "?uid=" + before.UniqueID
		if got := s.servicePolicy(t, "life").members("roles/run.invoker"); len(got) != 1 || got[0] != want {
			t.Errorf("service policy after delete: got %q, want [%s]", got, want)
		}
		if got := s.projectPolicy(t).members("roles/viewer"); len(got) != 1 || got[0] != want {
			t.Errorf("project policy after delete: got %q, want [%s]", got, want)
		}
	})
	mustStep(t, "a re-created account inherits nothing", func(t *testing.T) {
		s.createSA(t, "short-lived")
		if r := s.get(t, url, "Authorization", bearer(tok)); r.status != 401 {
			t.Errorf("the deleted account's token after re-creation: got %d, want 401", r.status)
		}
		if r := s.get(t, url, "Authorization", bearer(s.idToken(t, sa, url))); r.status != 403 {
			t.Errorf("the new account's own token: got %d, want 403 (no grant)", r.status)
		}
		s.mustCLI(t, "iam", "service-accounts", "delete", sa, "--quiet")
	})
	mustStep(t, "undelete restores the account and its grants", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "undelete", before.UniqueID)
		if got := s.servicePolicy(t, "life").members("roles/run.invoker"); len(got) != 1 || got[0] != "serviceAccount:"+sa {
			t.Errorf("service policy after undelete: got %q", got)
		}
		expectHello(t, s.get(t, url, "Authorization", bearer(tok)))
	})
}

// TestHostExecutablesNeedTheirOwnPermission: a file:// image runs a host
// executable; run.developer may not, unless it lies under --process-images.
func TestHostExecutablesNeedTheirOwnPermission(t *testing.T) {
	allowed := t.TempDir()
	b, err := os.ReadFile(helloBin)
	if err != nil {
		t.Fatal(err)
	}
	allowedHello := filepath.Join(allowed, "hello")
	if err := os.WriteFile(allowedHello, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, "--process-images", allowed)
	_, as := s.developer(t, "dev-exec")
	line := deployFails(t, s.cli(t, "run", "deploy", "shell", "--image=file:///bin/sh", "--args=-c,cat /etc/hostname", "--region="+region, as))
	if !strings.Contains(line, "usher.hostExecutables.run") {
		t.Errorf("run.developer deploying /bin/sh: got %q", line)
	}
	s.mustCLI(t, "run", "deploy", "allowed", "--image=file://"+allowedHello, "--region="+region, as)
	// A link out of the allowed directory does not count as inside it.
	link := filepath.Join(allowed, "sh")
	if err := os.Symlink("/bin/sh", link); err != nil {
		t.Fatal(err)
	}
	line = deployFails(t, s.cli(t, "run", "deploy", "linked", "--image=file://"+link, "--region="+region, as))
	if !strings.Contains(line, "usher.hostExecutables.run") {
		t.Errorf("run.developer deploying a link to /bin/sh: got %q", line)
	}
}

// TestConsoleImpersonationNeedsEveryProject: signing in to the console as
// someone else needs the owner's authority in every project, and is
// recorded as impersonation.
func TestConsoleImpersonationNeedsEveryProject(t *testing.T) {
	s := startServer(t)
	// A second project (a restart with another --project creates it).
	s.stop()
	s.serveArgs = []string{"--project", "other-project"}
	s.restart(t, "")
	// The CLI now defaults to other-project; bob owns it, and only it.
	s.mustCLI(t, "iam", "service-accounts", "create", "bob-owner")
	bob := "bob-owner@other-project.iam.gserviceaccount.com"
	s.mustCLI(t, "projects", "add-iam-policy-binding", "other-project", "--member=serviceAccount:"+bob, "--role=roles/owner")
	line := cliFails(t, s.cli(t, "console", "--no-browser", "--as=user:owner@usher.localhost", "--impersonate-service-account="+bob))
	if !strings.Contains(line, "every project") {
		t.Errorf("owner of one project signing in as the owner of another: got %q", line)
	}
	s.mustCLI(t, "console", "--no-browser", "--as=serviceAccount:"+bob)
	out := s.mustCLI(t, "logging", "read", "--project", project, "--format", "json").stdout
	if !strings.Contains(out, "console.impersonate") || !strings.Contains(out, bob) {
		t.Errorf("audit trail after an impersonation: got %s", out)
	}
}

// TestCallerBounds: requests too large to evaluate cheaply are refused with
// INVALID_ARGUMENT and change nothing.
func TestCallerBounds(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "bounded", helloBin)
	owner := s.accessToken(t)
	path := "/v1/projects/" + project + "/locations/" + region + "/services/bounded"
	perms := make([]string, 101)
	for i := range perms {
		perms[i] = "run.routes.invoke"
	}
	if r := s.apiCall(t, owner, "POST", path+":testIamPermissions", map[string]any{"permissions": perms}); r.status != 400 {
		t.Errorf("testIamPermissions with 101 permissions: got %d %s, want 400", r.status, r.body)
	}
	members := make([]string, 1501)
	for i := range members {
		members[i] = fmt.Sprintf("user:u%d@example.com", i)
	}
	r := s.apiCall(t, owner, "POST", path+":setIamPolicy", map[string]any{"policy": map[string]any{
		"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": members}}}})
	if r.status != 400 || !strings.Contains(r.body, "1500") {
		t.Errorf("a policy of 1501 members: got %d %s, want 400 naming the limit", r.status, r.body)
	}
	var items []string
	for i := range 300 {
		items = append(items, fmt.Sprint(i))
	}
	list := "[" + strings.Join(items, ",") + "]"
	r = s.apiCall(t, owner, "POST", path+":setIamPolicy", map[string]any{"policy": map[string]any{"version": 3,
		"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"user:a@example.com"},
			"condition": map[string]any{"title": "costly", "expression": list + ".all(x, " + list + ".all(y, resource.name.startsWith('p')))"}}}}})
	if r.status != 400 || !strings.Contains(r.body, "too expensive") {
		t.Errorf("an expensive condition: got %d %s, want 400", r.status, r.body)
	}
	if got := s.servicePolicy(t, "bounded").Bindings; len(got) != 0 {
		t.Errorf("policy after refused writes: got %+v, want none", got)
	}
	line := cliFails(t, s.cli(t, "run", "services", "describe", "bounded", "--region=mars-north1"))
	if !strings.Contains(line, "mars-north1") {
		t.Errorf("an unknown region: got %q", line)
	}
}

// deployFails is cliFails for deploy and update, which print what they are
// doing first: the last stderr line is the one "ERROR: " line.
func deployFails(t *testing.T, r cliResult) string {
	t.Helper()
	if r.code == 0 {
		t.Errorf("got %s\nwant a non-zero exit", r)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "ERROR: ") || strings.Count(r.stderr, "ERROR: ") != 1 {
		t.Errorf("usher %s: got stderr %q, want it to end with one line starting with \"ERROR: \"", strings.Join(r.args, " "), r.stderr)
	}
	return last
}
