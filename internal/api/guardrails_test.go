package api_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/api"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/mirror"
)

const (
	domainsConstraint = "constraints/iam.allowedPolicyMemberDomains"
	invokerConstraint = "constraints/run.managed.requireInvokerIam"
)

// setOrgPolicy creates or replaces the project's policy for constraint id.
func (h *harness) setOrgPolicy(id string, spec map[string]any) {
	h.t.Helper()
	body := map[string]any{"name": "projects/" + project + "/policies/" + id, "spec": spec}
	r := h.call(h.token(owner), "PATCH", client.OrgPolicyPath(project, id), body)
	if r.status == 404 {
		r = h.call(h.token(owner), "POST", client.OrgPoliciesPath(project), body)
	}
	if r.status != 200 {
		h.t.Fatalf("set org policy %s: %d %s", id, r.status, r.raw)
	}
}

func allowDomains(domains ...string) map[string]any {
	return map[string]any{"rules": []any{map[string]any{"values": map[string]any{"allowedValues": domains}}}}
}

var enforced = map[string]any{"rules": []any{map[string]any{"enforce": true}}}

// wantGuardrail fails unless r is 400 FAILED_PRECONDITION naming constraint
// and every one of names.
func wantGuardrail(t *testing.T, r response, constraint string, names ...string) {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	if r.status != 400 || r.errStatus() != "FAILED_PRECONDITION" || !strings.Contains(msg, constraint) {
		t.Fatalf("got %d %s, want 400 FAILED_PRECONDITION naming %s", r.status, r.raw, constraint)
	}
	for _, n := range names {
		if !strings.Contains(msg, n) {
			t.Errorf("message %q does not name %q", msg, n)
		}
	}
}

func invokerPolicy(etag string, members ...string) map[string]any {
	return map[string]any{"policy": map[string]any{"etag": etag,
		"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": members}}}}
}

// TestGuardrailRefusesAllUsers is the test: with allowed domains set,
// binding allUsers is refused with FAILED_PRECONDITION naming the constraint,
// and the policy is left as it was.
func TestGuardrailRefusesAllUsers(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	h.createService("public")
	h.createService("private")
	publicPath := client.ServicePath(project, region, "public")
	privatePath := client.ServicePath(project, region, "private")

	// Before the guardrail: "public" has allUsers, "private" one user.
	if r := h.call(tok, "POST", publicPath+":setIamPolicy", invokerPolicy("", "allUsers")); r.status != 200 {
		t.Fatalf("set allUsers before the guardrail: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", privatePath+":setIamPolicy", invokerPolicy("", "user:alice@example.com")); r.status != 200 {
		t.Fatalf("set policy: %d %s", r.status, r.raw)
	}
	h.setOrgPolicy("iam.allowedPolicyMemberDomains", allowDomains("example.com"))

	before := h.policy(privatePath)
	etag := before.body["etag"].(string)
	for _, member := range []string{"allUsers", "allAuthenticatedUsers", "user:eve@evil.example", "group:ops@evil.example", "domain:evil.example", "serviceAccount:bot@gcp-sa-notusher.iam.gserviceaccount.com", "user:eve@sub.example.com"} {
		t.Run("refuses "+member, func(t *testing.T) {
			r := h.call(tok, "POST", privatePath+":setIamPolicy", invokerPolicy(etag, "user:alice@example.com", member))
			wantGuardrail(t, r, domainsConstraint, member, "example.com", "do not belong to a permitted customer")
			if after := h.policy(privatePath); after.raw != before.raw {
				t.Errorf("a refused write changed the policy: %s -> %s", before.raw, after.raw)
			}
		})
	}
	// Two offenders are both named.
	r := h.call(tok, "POST", privatePath+":setIamPolicy", invokerPolicy(etag, "allUsers", "user:eve@evil.example"))
	wantGuardrail(t, r, domainsConstraint, "allUsers", "user:eve@evil.example")

	// Members of the allowed domain, and Usher's own service accounts, are fine.
	if r := h.call(tok, "POST", client.ServiceAccountsPath(project), map[string]any{"accountId": "robot-1"}); r.status != 200 {
		t.Fatalf("create service account: %d %s", r.status, r.raw)
	}
	ok := h.call(tok, "POST", privatePath+":setIamPolicy", invokerPolicy(etag, "user:alice@example.com", "user:Bob@Example.com",
		"group:team@example.com", "domain:example.com", "serviceAccount:"+apis.ServiceAccountEmail("robot-1", project), "serviceAccount:"+apis.DefaultServiceAccount(project)))
	if ok.status != 200 {
		t.Fatalf("members of the allowed domain: %d %s, want 200", ok.status, ok.raw)
	}

	// The existing allUsers binding stays, and a write that keeps it succeeds.
	pub := h.policy(publicPath)
	if !strings.Contains(pub.raw, `"allUsers"`) {
		t.Fatalf("the existing allUsers binding is gone: %s", pub.raw)
	}
	if r := h.call(tok, "POST", publicPath+":setIamPolicy", invokerPolicy(pub.body["etag"].(string), "allUsers", "user:carol@example.com")); r.status != 200 {
		t.Fatalf("a write keeping the existing allUsers: %d %s, want 200", r.status, r.raw)
	}
	// But granting it another role is a new grant.
	pub = h.policy(publicPath)
	r = h.call(tok, "POST", publicPath+":setIamPolicy", map[string]any{"policy": map[string]any{"etag": pub.body["etag"], "bindings": []any{
		map[string]any{"role": "roles/run.invoker", "members": []string{"allUsers", "user:carol@example.com"}},
		map[string]any{"role": "roles/run.servicesInvoker", "members": []string{"allUsers"}},
	}}})
	wantGuardrail(t, r, domainsConstraint, "allUsers")
	if after := h.policy(publicPath); after.raw != pub.raw {
		t.Errorf("a refused write changed the policy: %s -> %s", pub.raw, after.raw)
	}

	// The project's own policy is guarded too.
	projPath := client.ProjectPath(project)
	proj := h.policy(projPath)
	r = h.call(tok, "POST", projPath+":setIamPolicy", map[string]any{"policy": map[string]any{"etag": proj.body["etag"], "bindings": []any{
		map[string]any{"role": "roles/owner", "members": []string{"user:" + owner}},
		map[string]any{"role": "roles/viewer", "members": []string{"user:eve@evil.example"}},
	}}})
	wantGuardrail(t, r, domainsConstraint, "user:eve@evil.example")

	// Deleting the org policy lifts the restriction.
	if r := h.call(tok, "DELETE", client.OrgPolicyPath(project, "iam.allowedPolicyMemberDomains"), nil); r.status != 200 {
		t.Fatalf("delete org policy: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", privatePath+":setIamPolicy", invokerPolicy("", "allUsers")); r.status != 200 {
		t.Fatalf("allUsers after the org policy is deleted: %d %s, want 200", r.status, r.raw)
	}
}

// TestGuardrailRequireInvokerIAM: with run.managed.requireInvokerIam
// enforced, the invoker check cannot be turned off (v1 annotation, v2
// field), services already without it may still be updated, and deleting
// the policy lifts the restriction.
func TestGuardrailRequireInvokerIAM(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	svc := func(name, disabled string) apis.Service {
		s := apis.Service{Metadata: apis.ObjectMeta{Name: name}, Spec: apis.ServiceSpec{Template: apis.RevisionTemplate{Spec: apis.RevisionSpec{Containers: []apis.Container{{Image: "file:///bin/true"}}}}}}
		if disabled != "" {
			s.Metadata.Annotations = map[string]string{apis.AnnotationInvokerIAMDisabled: disabled}
		}
		return s
	}
	// Created before the guardrail, with the check off.
	if r := h.call(tok, "POST", client.ServicesPath(project, region), svc("already-public", "True")); r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	h.createService("private")
	h.setOrgPolicy("run.managed.requireInvokerIam", enforced)

	// v1 create and replace.
	wantGuardrail(t, h.call(tok, "POST", client.ServicesPath(project, region), svc("new", "True")), invokerConstraint, "'new'")
	if r := h.call(tok, "GET", client.ServicePath(project, region, "new"), nil); r.status != 404 {
		t.Fatalf("a refused create stored the service: %d %s", r.status, r.raw)
	}
	privatePath := client.ServicePath(project, region, "private")
	before := h.call(tok, "GET", privatePath, nil)
	var s apis.Service
	json.Unmarshal([]byte(before.raw), &s)
	s.Metadata.Annotations[apis.AnnotationInvokerIAMDisabled] = "true"
	wantGuardrail(t, h.call(tok, "PUT", privatePath, s), invokerConstraint, "'private'")
	if after := h.call(tok, "GET", privatePath, nil); strings.Contains(after.raw, apis.AnnotationInvokerIAMDisabled) || after.body["metadata"].(map[string]any)["resourceVersion"] != before.body["metadata"].(map[string]any)["resourceVersion"] {
		t.Fatalf("a refused replace changed the service: %s", after.raw)
	}
	// "False" and no annotation are fine.
	s.Metadata.Annotations[apis.AnnotationInvokerIAMDisabled] = "False"
	if r := h.call(tok, "PUT", privatePath, s); r.status != 200 {
		t.Fatalf("replace with the check on: %d %s", r.status, r.raw)
	}

	// v2 create and update.
	const v2Body = `{"invokerIamDisabled": true, "template": {"containers": [{"image": "file:///bin/true"}]}}`
	wantGuardrail(t, h.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId=new2", json.RawMessage(v2Body)), invokerConstraint)
	wantGuardrail(t, h.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId=new2&validateOnly=true", json.RawMessage(v2Body)), invokerConstraint)
	wantGuardrail(t, h.call(tok, "PATCH", "/v2/"+parentV2+"/services/private", json.RawMessage(v2Body)), invokerConstraint)
	wantGuardrail(t, h.call(tok, "PATCH", "/v2/"+parentV2+"/services/private?updateMask=invokerIamDisabled", json.RawMessage(`{"invokerIamDisabled": true}`)), invokerConstraint)
	wantGuardrail(t, h.call(tok, "PATCH", "/v2/"+parentV2+"/services/new3?allowMissing=true", json.RawMessage(v2Body)), invokerConstraint)
	if r := h.call(tok, "GET", "/v2/"+parentV2+"/services/private", nil); r.status != 200 || r.body["invokerIamDisabled"] == true {
		t.Fatalf("v2 view after refused updates: %d %s", r.status, r.raw)
	}

	// A service whose check was already off may be updated, keeping it off.
	pubPath := client.ServicePath(project, region, "already-public")
	cur := h.call(tok, "GET", pubPath, nil)
	var pub apis.Service
	json.Unmarshal([]byte(cur.raw), &pub)
	pub.Spec.Template.Spec.Containers[0].Env = []apis.EnvVar{{Name: "V", Value: "2"}}
	if r := h.call(tok, "PUT", pubPath, pub); r.status != 200 {
		t.Fatalf("update of a service already without the check: %d %s, want 200", r.status, r.raw)
	}

	// Deleting the org policy lifts it.
	if r := h.call(tok, "DELETE", client.OrgPolicyPath(project, "run.managed.requireInvokerIam"), nil); r.status != 200 {
		t.Fatalf("delete org policy: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", client.ServicesPath(project, region), svc("new", "True")); r.status != 200 {
		t.Fatalf("create without the check after the org policy is deleted: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId=new2", json.RawMessage(v2Body)); r.status != 200 {
		t.Fatalf("v2 create without the check after the org policy is deleted: %d %s", r.status, r.raw)
	}
}

// TestOrgPolicyAPI covers the Org Policy v2 methods: validation,
// permissions, etags and the effective policy.
func TestOrgPolicyAPI(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	grant := func(role, member string) {
		t.Helper()
		c := client.New(client.Config{Server: h.server.URL, Credential: h.secret})
		if _, err := c.ModifyIamPolicy(context.Background(), client.ProjectPath(project), func(p *iam.Policy) (bool, error) {
			return p.AddBinding(role, member, nil), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	grant("roles/run.admin", "user:admin@example.com")
	grant("roles/viewer", "user:viewer@example.com")
	list := client.OrgPoliciesPath(project)
	domains := client.OrgPolicyPath(project, "iam.allowedPolicyMemberDomains")
	body := func(name string, spec any) map[string]any { return map[string]any{"name": name, "spec": spec} }
	name := "projects/" + project + "/policies/iam.allowedPolicyMemberDomains"

	if r := h.call(tok, "GET", domains, nil); r.status != 404 {
		t.Fatalf("unset policy: %d %s, want 404", r.status, r.raw)
	}
	bad := []struct {
		what string
		body any
		want string
	}{
		{"unknown constraint", body("projects/"+project+"/policies/compute.vmExternalIpAccess", allowDomains("example.com")), "not supported"},
		{"another project", body("projects/other/policies/iam.allowedPolicyMemberDomains", allowDomains("example.com")), "does not name project"},
		{"not a domain", body(name, allowDomains("not a domain")), "not a domain"},
		{"denied values", body(name, map[string]any{"rules": []any{map[string]any{"values": map[string]any{"deniedValues": []string{"x.com"}}}}}), "allowedValues only"},
		{"enforce on a list constraint", body(name, enforced), "list constraint"},
		{"values on a boolean constraint", body("projects/"+project+"/policies/run.managed.requireInvokerIam", allowDomains("example.com")), "boolean constraint"},
		{"condition", body(name, map[string]any{"rules": []any{map[string]any{"allowAll": true, "condition": map[string]string{"expression": "true"}}}}), "condition"},
		{"two rules", body(name, map[string]any{"rules": []any{map[string]any{"allowAll": true}, map[string]any{"denyAll": true}}}), "exactly one rule"},
		{"no spec", map[string]any{"name": name}, "no spec"},
	}
	for _, tt := range bad {
		t.Run("refuses "+tt.what, func(t *testing.T) {
			r := h.call(tok, "POST", list, tt.body)
			if r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" || !strings.Contains(r.raw, tt.want) {
				t.Fatalf("got %d %s, want 400 INVALID_ARGUMENT mentioning %q", r.status, r.raw, tt.want)
			}
		})
	}

	// Only holders of orgpolicy.policy.set (owners) write; viewers read.
	if r := h.call(h.token("admin@example.com"), "POST", list, body(name, allowDomains("example.com"))); r.status != 403 || !strings.Contains(r.raw, "orgpolicy.policy.set") {
		t.Fatalf("run.admin sets an org policy: %d %s, want 403 naming orgpolicy.policy.set", r.status, r.raw)
	}
	created := h.call(tok, "POST", list, body(name, allowDomains("Example.com", "is:example.org", "example.com")))
	if created.status != 200 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	if !strings.Contains(created.raw, `"example.com",`) || !strings.Contains(created.raw, `"example.org"`) || strings.Contains(created.raw, "is:") || created.body["etag"] == "" {
		t.Errorf("created policy not normalized: %s", created.raw)
	}
	if r := h.call(tok, "POST", list, body(name, allowDomains("example.com"))); r.status != 409 || r.errStatus() != "ALREADY_EXISTS" {
		t.Fatalf("second create: %d %s, want 409 ALREADY_EXISTS", r.status, r.raw)
	}
	for _, who := range []string{"viewer@example.com", "admin@example.com"} {
		if r := h.call(h.token(who), "GET", domains, nil); r.status != 200 || r.body["name"] != name {
			t.Fatalf("%s reads the policy: %d %s", who, r.status, r.raw)
		}
	}
	if r := h.call(h.token("viewer@example.com"), "DELETE", domains, nil); r.status != 403 {
		t.Fatalf("viewer deletes: %d %s, want 403", r.status, r.raw)
	}
	if r := h.call(h.token("stranger@example.com"), "GET", domains, nil); r.status != 403 {
		t.Fatalf("stranger reads: %d %s, want 403", r.status, r.raw)
	}

	// Etags: a stale one is ABORTED and changes nothing.
	etag := created.body["etag"].(string)
	upd := body(name, allowDomains("example.net"))
	upd["etag"] = etag
	if r := h.call(tok, "PATCH", domains, upd); r.status != 200 {
		t.Fatalf("update with the current etag: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "PATCH", domains, upd); r.status != 409 || r.errStatus() != "ABORTED" {
		t.Fatalf("update with a stale etag: %d %s, want 409 ABORTED", r.status, r.raw)
	}
	if r := h.call(tok, "DELETE", domains+"?etag="+etag, nil); r.status != 409 {
		t.Fatalf("delete with a stale etag: %d %s, want 409", r.status, r.raw)
	}
	if r := h.call(tok, "GET", list, nil); r.status != 200 || !strings.Contains(r.raw, "example.net") || strings.Contains(r.raw, "example.org") {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "PATCH", client.OrgPolicyPath(project, "run.managed.requireInvokerIam"), body("", enforced)); r.status != 404 {
		t.Fatalf("update of an unset policy: %d %s, want 404", r.status, r.raw)
	}

	// Effective policies, and the constraints list.
	if r := h.call(tok, "GET", domains+":getEffectivePolicy", nil); r.status != 200 || !strings.Contains(r.raw, "example.net") {
		t.Fatalf("effective: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", client.OrgPolicyPath(project, "run.managed.requireInvokerIam")+":getEffectivePolicy", nil); r.status != 200 || !strings.Contains(r.raw, `"enforce": false`) {
		t.Fatalf("effective unset boolean: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", client.OrgConstraintsPath(project), nil); r.status != 200 || !strings.Contains(r.raw, "iam.allowedPolicyMemberDomains") || !strings.Contains(r.raw, "run.managed.requireInvokerIam") {
		t.Fatalf("constraints: %d %s", r.status, r.raw)
	}
}

// TestGuardrailServerFile: the server's org policy file applies to every
// project, a project's own policy cannot lift it, and it is read on each
// write (an edit applies at once; a broken file refuses writes).
func TestGuardrailServerFile(t *testing.T) {
	h := newHarness(t)
	file := filepath.Join(t.TempDir(), "org-policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`
- name: organizations/123/policies/iam.allowedPolicyMemberDomains
  spec:
    rules:
    - values:
        allowedValues: [example.com]
- name: run.managed.requireInvokerIam
  spec:
    rules:
    - enforce: true
`)
	// The same store and issuer, served by an API that reads the file.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	mir := mirror.New(h.st, mirror.Config{Decode: func(string, []byte) (any, bool, error) { return nil, false, nil }})
	if err := mir.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go mir.Run(ctx)
	srv := httptest.NewServer(api.New(api.Config{
		Core: admin.New(admin.Config{Store: h.st, Roles: iam.Predefined(), Minter: h.iss, Sync: mir, DefaultRegion: region,
			ServiceURL:    func(p, r, n string) string { return apis.ServiceURL("http", n, p, r, "run.localhost", "8080") },
			OrgPolicyFile: file}),
		Verifier: authn.New(authn.Config{Issuer: h.server.URL, Keys: h.iss}),
	}))
	t.Cleanup(srv.Close)
	hf := *h
	hf.server = srv
	tok := hf.token(owner)
	hf.createService("svc")
	path := client.ServicePath(project, region, "svc")

	wantGuardrail(t, hf.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "allUsers")), domainsConstraint, "the server's org policy file")
	// The project lifting the constraint does not lift the server's.
	hf.setOrgPolicy("iam.allowedPolicyMemberDomains", map[string]any{"rules": []any{map[string]any{"allowAll": true}}})
	hf.setOrgPolicy("run.managed.requireInvokerIam", map[string]any{"rules": []any{map[string]any{"enforce": false}}})
	wantGuardrail(t, hf.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "allUsers")), domainsConstraint)
	// The project narrowing it applies on top: both lists must allow.
	hf.setOrgPolicy("iam.allowedPolicyMemberDomains", allowDomains("example.com", "example.org"))
	wantGuardrail(t, hf.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "user:a@example.org")), domainsConstraint, "allowed domains: example.com;")
	if r := hf.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "user:a@example.com")); r.status != 200 {
		t.Fatalf("a member both allow: %d %s", r.status, r.raw)
	}
	if r := hf.call(tok, "GET", client.OrgPolicyPath(project, "run.managed.requireInvokerIam")+":getEffectivePolicy", nil); !strings.Contains(r.raw, `"enforce": true`) {
		t.Fatalf("effective policy misses the server's: %s", r.raw)
	}
	wantGuardrail(t, hf.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId=open", json.RawMessage(`{"invokerIamDisabled": true, "template": {"containers": [{"image": "file:///bin/true"}]}}`)), invokerConstraint)
	// The original API (no file) is unaffected.
	if r := h.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "user:a@example.org")); r.status != 200 {
		t.Fatalf("without the server file: %d %s", r.status, r.raw)
	}

	// Edits apply at once; a broken file fails closed.
	write("name: run.managed.requireInvokerIam\nspec: {rules: [{enforce: true}]}\n")
	if r := hf.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "user:a@example.com", "user:b@example.org")); r.status != 200 {
		t.Fatalf("after the file dropped the domain rule: %d %s", r.status, r.raw)
	}
	write("name: [")
	if r := hf.call(tok, "POST", path+":setIamPolicy", invokerPolicy("", "user:a@example.com")); r.status != 500 || !strings.Contains(r.raw, "org policy file") {
		t.Fatalf("with a broken file: %d %s, want 500 naming the file", r.status, r.raw)
	}
}
