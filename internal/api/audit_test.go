package api_test

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

// newAuditHarness is the harness with an audit trail.
func newAuditHarness(t *testing.T) *harness {
	t.Helper()
	return newHarness(t, func(cfg *admin.Config) {
		trail := audit.New(audit.Config{Store: cfg.Store})
		ctx, cancel := context.WithCancel(context.Background())
		go trail.Run(ctx)
		t.Cleanup(func() { cancel(); <-trail.Done() })
		cfg.Audit = trail
	})
}

// auditLog reads the project's audit trail as email, with query parameters
// (name, value pairs).
func (h *harness) auditLog(email string, params ...string) ([]audit.Record, response) {
	h.t.Helper()
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	r := h.call(h.token(email), "GET", client.AuditLogsPath(project)+"?"+q.Encode(), nil)
	if r.status != 200 {
		return nil, r
	}
	var page audit.Page
	if err := json.Unmarshal([]byte(r.raw), &page); err != nil {
		h.t.Fatalf("auditLogs: %v\n%s", err, r.raw)
	}
	return page.Records, r
}

// summary is "KIND SERVICE" per record, oldest first.
func summary(rs []audit.Record) []string {
	out := []string{}
	for i := len(rs) - 1; i >= 0; i-- {
		out = append(out, rs[i].Kind+" "+rs[i].Service)
	}
	return out
}

// TestAuditRecordsWrites: every successful admin write, through v1 and v2,
// is on the trail with its caller; refused writes are not.
func TestAuditRecordsWrites(t *testing.T) {
	h := newAuditHarness(t)
	tok := h.token(owner)
	must := func(r response, what string) response {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("%s: %d %s", what, r.status, r.raw)
		}
		return r
	}
	svc := client.ServicePath(project, region, "svc")
	setPolicy := func(path string, members ...string) response {
		return h.call(tok, "POST", path+":setIamPolicy", map[string]any{"policy": map[string]any{
			"bindings": []map[string]any{{"role": "roles/run.invoker", "members": members}}}})
	}

	h.createService("svc")
	must(setPolicy(svc, "user:alice@example.com", "user:bob@example.com"), "set service policy")
	must(setPolicy(svc, "user:alice@example.com", "user:carol@example.com"), "change service policy")
	if r := h.call(tok, "POST", svc+":setIamPolicy", map[string]any{"policy": map[string]any{"etag": iam.Etag(1), "bindings": []any{}}}); r.status != 409 {
		t.Fatalf("stale etag: %d %s, want 409", r.status, r.raw)
	}
	if r := h.call(h.token("stranger@example.com"), "DELETE", svc, nil); r.status != 403 {
		t.Fatalf("stranger deletes: %d, want 403", r.status)
	}
	got := must(h.call(tok, "GET", svc, nil), "get service")
	var s apis.Service
	json.Unmarshal([]byte(got.raw), &s)
	s.Spec.Template.Spec.Containers[0].Image = "file:///bin/false"
	must(h.call(tok, "PUT", svc, s), "replace service")
	must(h.call(tok, "POST", client.ProjectPath(project)+":setIamPolicy", map[string]any{"policy": map[string]any{
		"bindings": []map[string]any{{"role": "roles/owner", "members": []string{"user:" + owner}}, {"role": "roles/viewer", "members": []string{"user:viewer@example.com"}}}}}),
		"set project policy")
	must(h.call(tok, "POST", client.ServiceAccountsPath(project), map[string]any{"accountId": "robot-one"}), "create service account")
	must(h.call(tok, "DELETE", client.ServiceAccountPath(project, apis.ServiceAccountEmail("robot-one", project)), nil), "delete service account")
	v2 := "/v2/projects/" + project + "/locations/" + region + "/services"
	body := map[string]any{"template": map[string]any{"containers": []any{map[string]any{"image": "file:///bin/true"}}}}
	must(h.call(tok, "POST", v2+"?serviceId=vtwo", body), "v2 create")
	must(h.call(tok, "PATCH", v2+"/vtwo", body), "v2 update")
	must(h.call(tok, "DELETE", v2+"/vtwo", nil), "v2 delete")
	must(h.call(tok, "DELETE", svc, nil), "v1 delete")

	records, r := h.auditLog(owner)
	if records == nil {
		t.Fatalf("auditLogs: %d %s", r.status, r.raw)
	}
	want := []string{
		"service.create svc", "iam.setPolicy svc", "iam.setPolicy svc", "service.replace svc",
		"iam.setPolicy ", "serviceAccount.create ", "serviceAccount.delete ",
		"service.create vtwo", "service.replace vtwo", "service.delete vtwo", "service.delete svc",
	}
	if got := summary(records); !reflect.DeepEqual(got, want) {
		t.Fatalf("audit trail, oldest first:\n got %q\nwant %q", got, want)
	}
	for _, rec := range records {
		if rec.Principal != "user:"+owner || rec.Status != 200 || rec.Project != project || rec.Time.IsZero() || rec.Permission == "" {
			t.Errorf("record %+v: want principal user:%s, status 200, project, time and permission", rec, owner)
		}
	}
	byKind := func(kind, resource string) []audit.Record {
		var out []audit.Record
		for i := len(records) - 1; i >= 0; i-- {
			if records[i].Kind == kind && records[i].Resource == resource {
				out = append(out, records[i])
			}
		}
		return out
	}
	sets := byKind(audit.KindSetIamPolicy, apis.ServiceResource(project, region, "svc"))
	if len(sets) != 2 {
		t.Fatalf("service setIamPolicy records: got %d, want 2", len(sets))
	}
	deltas := func(r audit.Record) []string {
		var out []string
		for _, d := range r.Details.BindingDeltas {
			out = append(out, d.Action+" "+d.Role+" "+d.Member)
		}
		return out
	}
	if got, want := deltas(sets[0]), []string{"ADD roles/run.invoker user:alice@example.com", "ADD roles/run.invoker user:bob@example.com"}; !reflect.DeepEqual(got, want) {
		t.Errorf("first setIamPolicy deltas: got %q, want %q", got, want)
	}
	if got, want := deltas(sets[1]), []string{"ADD roles/run.invoker user:carol@example.com", "REMOVE roles/run.invoker user:bob@example.com"}; !reflect.DeepEqual(got, want) {
		t.Errorf("second setIamPolicy deltas: got %q, want %q", got, want)
	}
	if proj := byKind(audit.KindSetIamPolicy, apis.ProjectResource(project)); len(proj) != 1 || !slices.Equal(deltas(proj[0]), []string{"ADD roles/viewer user:viewer@example.com"}) {
		t.Errorf("project setIamPolicy record: got %+v", proj)
	}
	if rep := byKind(audit.KindServiceReplace, apis.ServiceResource(project, region, "svc")); len(rep) != 1 || rep[0].Details.Image != "file:///bin/false" {
		t.Errorf("replace record: got %+v, want the new image", rep)
	}

	t.Run("filters", func(t *testing.T) {
		for _, tt := range []struct {
			params []string
			want   int
		}{
			{[]string{"kind", "iam.setPolicy"}, 3},
			{[]string{"kind", "service"}, 6},
			{[]string{"service", "vtwo"}, 3},
			{[]string{"service", "svc", "kind", "service.delete"}, 1},
			{[]string{"principal", owner}, 11},
			{[]string{"principal", "user:someone@example.com"}, 0},
			{[]string{"startTime", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 0},
			{[]string{"pageSize", "4"}, 4},
		} {
			got, r := h.auditLog(owner, tt.params...)
			if got == nil || len(got) != tt.want {
				t.Errorf("auditLogs %q: got %d records (%d %s), want %d", tt.params, len(got), r.status, r.raw, tt.want)
			}
		}
		if _, r := h.auditLog(owner, "startTime", "yesterday"); r.status != 400 {
			t.Errorf("bad startTime: got %d, want 400", r.status)
		}
	})

	t.Run("who may read", func(t *testing.T) {
		// viewer@ holds roles/viewer on the project now.
		if got, r := h.auditLog("viewer@example.com"); got == nil {
			t.Errorf("roles/viewer reading the trail: got %d %s, want 200", r.status, r.raw)
		}
		if _, r := h.auditLog("alice@example.com"); r.status != 403 || !strings.Contains(r.raw, iam.PermLogEntriesList) {
			t.Errorf("a principal without %s: got %d %s, want 403 naming it", iam.PermLogEntriesList, r.status, r.raw)
		}
	})
}

// TestAuditRecordsGuardrailsAndRoles: org policy and custom role writes are
// on the trail too, and the troubleshooter names a guardrail that would
// refuse the missing grant.
func TestAuditRecordsGuardrailsAndRoles(t *testing.T) {
	h := newAuditHarness(t)
	tok := h.token(owner)
	h.createService("svc")
	h.setOrgPolicy("iam.allowedPolicyMemberDomains", allowDomains("example.com"))
	h.setOrgPolicy("iam.allowedPolicyMemberDomains", allowDomains("example.com", "example.org"))
	if r := h.call(tok, "DELETE", client.OrgPolicyPath(project, "iam.allowedPolicyMemberDomains"), nil); r.status != 200 {
		t.Fatalf("delete org policy: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", rolesPath, map[string]any{"roleId": "invokerLite", "role": map[string]any{"includedPermissions": []string{iam.PermRoutesInvoke}}}); r.status != 200 {
		t.Fatalf("create role: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "DELETE", rolesPath+"/invokerLite", nil); r.status != 200 {
		t.Fatalf("delete role: %d %s", r.status, r.raw)
	}
	records, r := h.auditLog(owner, "kind", "orgPolicy")
	if got, want := summary(records), []string{"orgPolicy.set ", "orgPolicy.set ", "orgPolicy.delete "}; !reflect.DeepEqual(got, want) {
		t.Errorf("org policy records: got %q (%s), want %q", got, r.raw, want)
	}
	records, r = h.auditLog(owner, "kind", "role")
	if got, want := summary(records), []string{"role.create ", "role.delete "}; !reflect.DeepEqual(got, want) {
		t.Errorf("role records: got %q (%s), want %q", got, r.raw, want)
	}
	for _, rec := range records {
		if rec.Resource != "projects/"+project+"/roles/invokerLite" || rec.Project != project {
			t.Errorf("role record %+v: want resource projects/%s/roles/invokerLite", rec, project)
		}
	}

	h.setOrgPolicy("iam.allowedPolicyMemberDomains", allowDomains("example.com"))
	out, resp := h.troubleshoot(owner, "user:mallory@elsewhere.net", "svc", "")
	if out == nil || out.Access != "NOT_GRANTED" {
		t.Fatalf("%d %s, want NOT_GRANTED", resp.status, resp.raw)
	}
	if len(out.Guardrails) != 1 || !strings.Contains(out.Guardrails[0], "user:mallory@elsewhere.net may not be granted roles") {
		t.Errorf("guardrails %q, want the domain restriction that would refuse the grant", out.Guardrails)
	}
}
