package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Attacks on issue 10's change (admin core, actAs, service account
// lifecycle), written from the attacker's side. Each test passes only when
// the attack is refused.

// TestRedTeamMixedCaseMemberSurvivesDelete: a binding written with a
// mixed-case email ("serviceAccount:Victim@…", which IAM matches
// case-insensitively) must be rewritten on delete like the lowercase one,
// so a re-created account of the same email inherits nothing.
func TestRedTeamMixedCaseMemberSurvivesDelete(t *testing.T) {
	s := startServer(t)
	sa := s.createSA(t, "victim")
	mixed := "serviceAccount:" + strings.ToUpper(sa[:1]) + sa[1:]
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member="+mixed, "--role=roles/run.admin")
	// The grant works (IAM matches emails case-insensitively).
	s.mustCLI(t, "run", "services", "list", "--region="+region, "--impersonate-service-account="+sa)

	s.mustCLI(t, "iam", "service-accounts", "delete", sa, "--quiet")
	for _, m := range s.projectPolicy(t).members("roles/run.admin") {
		if strings.EqualFold(m, "serviceAccount:"+sa) {
			t.Errorf("project policy after deleting %s still holds %q (want it rewritten to deleted:…)", sa, m)
		}
	}
	// Whoever re-creates the email inherits roles/run.admin.
	s.createSA(t, "victim")
	if r := s.cli(t, "run", "services", "list", "--region="+region, "--impersonate-service-account="+sa); r.code == 0 {
		t.Errorf("a re-created account listed services with the deleted account's grant: %s", r)
	}
}

// TestRedTeamMixedCaseRuntimeAccountOutlivesDisable: deploying with the
// runtime account's email in upper case passes the actAs check (which
// lowercases) but the metadata server and the token index then do not
// recognise the account as Usher's, so its instances keep getting working
// tokens after the account is disabled.
func TestRedTeamMixedCaseRuntimeAccountOutlivesDisable(t *testing.T) {
	s := startServer(t)
	backend := s.deploy(t, "backend", helloBin)
	sa := s.createSA(t, "front-sa")
	s.grant(t, "backend", "serviceAccount:"+sa, "roles/run.invoker")
	env := "--set-env-vars=BACKEND_URL=" + backend + ",USHER_ADDR=" + s.currentAddr()
	lower := s.deploy(t, "front-lower", frontendBin, "--allow-unauthenticated", "--service-account="+sa, env)
	upper := s.deploy(t, "front-upper", frontendBin, "--allow-unauthenticated", "--service-account="+strings.ToUpper(sa), env)
	for _, u := range []string{lower, upper} {
		if got := s.get(t, u+"/call"); got.status != 200 || got.body != "200 Hello World!" {
			t.Fatalf("%s/call before disable: %d %q", u, got.status, got.body)
		}
	}
	s.mustCLI(t, "iam", "service-accounts", "disable", sa)
	for _, u := range []string{lower, upper} {
		if got := s.get(t, u+"/call"); strings.HasPrefix(got.body, "200 ") {
			t.Errorf("%s/call after disabling %s: got %d %q, want the call refused", u, sa, got.status, got.body)
		}
	}
}

// TestRedTeamSideDoorsRefused: side doors around actAs and the invoker
// check that a run.developer (with actAs on the default account only)
// might try; every one must be refused.
func TestRedTeamSideDoorsRefused(t *testing.T) {
	s := startServerWith(t, "--process-images", filepath.Dir(helloBin))
	target := s.createSA(t, "powerful")
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+target, "--role=roles/owner")
	s.deploy(t, "strong", helloBin, "--service-account="+target)
	s.deploy(t, "weak", helloBin)
	_, as := s.developer(t, "dev-red")
	tok := s.accessToken(t, as)
	var uid struct{ UniqueID string }
	json.Unmarshal([]byte(s.apiCall(t, s.accessToken(t), "GET", "/v1/projects/"+project+"/serviceAccounts/"+target, nil).body), &uid)
	v1 := "/apis/serving.knative.dev/v1/namespaces/" + project + "/services/"
	v2 := "/v2/projects/" + project + "/locations/" + region + "/services/"

	// v1 replace of weak with the runtime account changed to target.
	var weak map[string]any
	json.Unmarshal([]byte(s.apiCall(t, tok, "GET", v1+"weak", nil).body), &weak)
	tmpl := weak["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	upper := strings.ToUpper(target)
	tests := []struct {
		name, method, path string
		body               func() any
	}{
		{"v1 replace to another account", "PUT", v1 + "weak", func() any { tmpl["serviceAccountName"] = target; return weak }},
		{"v1 replace to another account, upper case", "PUT", v1 + "weak", func() any { tmpl["serviceAccountName"] = upper; return weak }},
		{"v1 replace by project number", "PUT", "/apis/serving.knative.dev/v1/namespaces/" + projectNumberOf(t, s) + "/services/weak", func() any { tmpl["serviceAccountName"] = target; return weak }},
		{"v2 patch validateOnly", "PATCH", v2 + "weak?updateMask=template.serviceAccount&validateOnly=true", func() any {
			return map[string]any{"template": map[string]any{"serviceAccount": target}}
		}},
		{"v2 upsert allowMissing", "PATCH", v2 + "fresh?allowMissing=true", func() any {
			return map[string]any{"template": map[string]any{"serviceAccount": target, "containers": []any{map[string]any{"image": "file://" + helloBin}}}}
		}},
		{"v2 create by unique ID", "POST", "/v2/projects/" + project + "/locations/" + region + "/services?serviceId=byuid", func() any {
			return map[string]any{"template": map[string]any{"serviceAccount": uid.UniqueID, "containers": []any{map[string]any{"image": "file://" + helloBin}}}}
		}},
		{"v2 image change of a service running as target", "PATCH", v2 + "strong?updateMask=template.containers", func() any {
			return map[string]any{"template": map[string]any{"containers": []any{map[string]any{"image": "file://" + echoBin}}}}
		}},
		{"v2 invoker check off via region in upper case", "PATCH", "/v2/projects/" + project + "/locations/" + strings.ToUpper(region) + "/services/weak?updateMask=invokerIamDisabled", func() any {
			return map[string]any{"invokerIamDisabled": true}
		}},
		{"generateIdToken for the admin audience", "POST", "/v1/projects/-/serviceAccounts/" + s.describeDefaultAccount(t) + ":generateIdToken", func() any {
			return map[string]any{"audience": "usher-admin-api"}
		}},
		{"generateAccessToken through delegates", "POST", "/v1/projects/-/serviceAccounts/" + target + ":generateAccessToken", func() any {
			return map[string]any{"delegates": []string{"projects/-/serviceAccounts/" + s.describeDefaultAccount(t)}, "scope": []string{"https://www.googleapis.com/auth/cloud-platform"}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.apiCall(t, tok, tc.method, tc.path, tc.body())
			if r.status < 400 {
				t.Errorf("got %d %s, want a refusal", r.status, r.body)
			}
			t.Logf("refused: %d %.300q", r.status, r.body)
		})
	}
	if got := s.apiCall(t, s.accessToken(t), "GET", v1+"strong", nil).body; strings.Contains(got, filepath.Base(echoBin)) {
		t.Errorf("strong's image changed by the attempts: %s", got)
	}
}

func projectNumberOf(t *testing.T, s *server) string {
	t.Helper()
	var p struct{ ProjectNumber string }
	json.Unmarshal([]byte(s.apiCall(t, s.accessToken(t), "GET", "/v1/projects/"+project, nil).body), &p)
	return p.ProjectNumber
}

// TestRedTeamDeveloperPrunesWhoChangedAccess: admin records share one count
// bound, so a run.developer making many harmless deploys pushes out the
// record of who granted access (the issue: the record of who changed
// access must not be erasable by an attacker).
func TestRedTeamDeveloperPrunesWhoChangedAccess(t *testing.T) {
	s := startServerWith(t, "--audit-max-records=20", "--process-images", filepath.Dir(helloBin))
	s.deploy(t, "weak", helloBin)
	// The grant the attacker wants forgotten.
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=user:insider@example.com", "--role=roles/owner")
	isGrant := func(r auditRecord) bool {
		return r.Kind == "iam.setPolicy" && strings.Contains(fmt.Sprint(r.Details.BindingDeltas), "insider@example.com")
	}
	if len(find(s.auditLog(t), isGrant)) == 0 {
		t.Fatal("the grant is not on the trail even before the flood")
	}
	_, as := s.developer(t, "dev-prune")
	for i := range 40 {
		s.mustCLI(t, "run", "services", "update", "weak", "--region="+region, fmt.Sprintf("--update-env-vars=N=%d", i), as)
	}
	s.stop()
	s.restart(t, "") // the trail prunes at start
	grants := find(s.auditLog(t), isGrant)
	if len(grants) == 0 {
		t.Errorf("after 40 deploys by a run.developer the record of granting roles/owner to insider@example.com is gone")
	}
}
