package api_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

// troubleshoot asks the troubleshooter, as email, about principal invoking svc.
func (h *harness) troubleshoot(email, principal, svc, permission string) (*apis.TroubleshootResponse, response) {
	h.t.Helper()
	r := h.call(h.token(email), "POST", client.TroubleshootPath, map[string]any{"accessTuple": apis.AccessTuple{
		Principal: principal, FullResourceName: client.ServiceFullResourceName(project, region, svc), Permission: permission}})
	if r.status != 200 {
		return nil, r
	}
	var out apis.TroubleshootResponse
	if err := json.Unmarshal([]byte(r.raw), &out); err != nil {
		h.t.Fatalf("troubleshoot: %v\n%s", err, r.raw)
	}
	return &out, r
}

func TestTroubleshoot(t *testing.T) {
	h := newAuditHarness(t)
	h.createService("svc")
	tok := h.token(owner)
	svc := client.ServicePath(project, region, "svc")
	if r := h.call(tok, "POST", svc+":setIamPolicy", map[string]any{"policy": map[string]any{"version": 3, "bindings": []any{
		map[string]any{"role": "roles/run.invoker", "members": []string{"user:alice@example.com", "group:team@example.com"}},
		map[string]any{"role": "roles/run.viewer", "members": []string{"user:bob@example.com"}},
		map[string]any{"role": "roles/run.invoker", "members": []string{"user:carol@example.com"},
			"condition": map[string]any{"title": "expired", "expression": `request.time < timestamp("2001-01-01T00:00:00Z")`}},
		map[string]any{"role": "roles/run.invoker", "members": []string{"user:dave@example.com"},
			"condition": map[string]any{"title": "started", "expression": `request.time > timestamp("2001-01-01T00:00:00Z")`}},
	}}}); r.status != 200 {
		t.Fatalf("set policy: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", client.ProjectPath(project)+":setIamPolicy", map[string]any{"policy": map[string]any{"bindings": []any{
		map[string]any{"role": "roles/owner", "members": []string{"user:" + owner}},
		map[string]any{"role": "roles/run.viewer", "members": []string{"user:runviewer@example.com"}},
	}}}); r.status != 200 {
		t.Fatalf("set project policy: %d %s", r.status, r.raw)
	}
	serviceResource := "//run.googleapis.com/projects/" + project + "/locations/" + region + "/services/svc"

	t.Run("granted on the service names the binding", func(t *testing.T) {
		out, r := h.troubleshoot(owner, "user:alice@example.com", "svc", "")
		if out == nil {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if out.Access != "GRANTED" || out.AccessTuple.Permission != iam.PermRoutesInvoke {
			t.Fatalf("access %s for %s, want GRANTED for run.routes.invoke", out.Access, out.AccessTuple.Permission)
		}
		if !strings.Contains(out.Explanation[0], "roles/run.invoker") || !strings.Contains(out.Explanation[0], "projects/"+project+"/locations/"+region+"/services/svc") {
			t.Errorf("explanation %q, want the granting role and resource", out.Explanation[0])
		}
		if len(out.ExplainedPolicies) != 2 || out.ExplainedPolicies[0].FullResourceName != serviceResource ||
			out.ExplainedPolicies[0].Access != "GRANTED" || out.ExplainedPolicies[1].Access != "NOT_GRANTED" {
			t.Fatalf("explained policies: %+v, want the service's (granted) then the project's (not)", out.ExplainedPolicies)
		}
		b := out.ExplainedPolicies[0].BindingExplanations[0]
		if b.Role != "roles/run.invoker" || b.Access != "GRANTED" || b.RolePermission != "ROLE_PERMISSION_INCLUDED" ||
			b.Memberships["user:alice@example.com"].Membership != "MEMBERSHIP_INCLUDED" ||
			b.Memberships["group:team@example.com"].Membership != "MEMBERSHIP_UNKNOWN_UNSUPPORTED" {
			t.Errorf("first binding: %+v", b)
		}
	})

	t.Run("granted through the project", func(t *testing.T) {
		out, r := h.troubleshoot(owner, owner, "svc", "")
		if out == nil || out.Access != "GRANTED" || !strings.Contains(out.Explanation[0], "roles/owner") {
			t.Fatalf("%d %s, want GRANTED through roles/owner", r.status, r.raw)
		}
	})

	t.Run("not granted says which roles would and where they are missing", func(t *testing.T) {
		out, r := h.troubleshoot(owner, "user:bob@example.com", "svc", "")
		if out == nil || out.Access != "NOT_GRANTED" {
			t.Fatalf("%d %s, want NOT_GRANTED", r.status, r.raw)
		}
		if !slices.Contains(out.RolesGranting, "roles/run.invoker") || slices.Contains(out.RolesGranting, "roles/run.viewer") {
			t.Errorf("rolesGranting %q, want invoker roles and not viewer", out.RolesGranting)
		}
		text := strings.Join(out.Explanation, "\n")
		for _, want := range []string{"does not have run.routes.invoke", "user:bob@example.com is not among those members", "add-iam-policy-binding svc"} {
			if !strings.Contains(text, want) {
				t.Errorf("explanation lacks %q:\n%s", want, text)
			}
		}
		var viewer apis.BindingExplanation
		for _, b := range out.ExplainedPolicies[0].BindingExplanations {
			if b.Role == "roles/run.viewer" {
				viewer = b
			}
		}
		if viewer.Role != "roles/run.viewer" || viewer.RolePermission != "ROLE_PERMISSION_NOT_INCLUDED" ||
			viewer.Memberships["user:bob@example.com"].Membership != "MEMBERSHIP_INCLUDED" || viewer.Access != "NOT_GRANTED" {
			t.Errorf("bob's viewer binding: %+v, want member included, permission not", viewer)
		}
	})

	t.Run("conditions are evaluated as for a request now", func(t *testing.T) {
		out, r := h.troubleshoot(owner, "carol@example.com", "svc", "")
		if out == nil || out.Access != "NOT_GRANTED" {
			t.Fatalf("%d %s, want NOT_GRANTED", r.status, r.raw)
		}
		if text := strings.Join(out.Explanation, "\n"); !strings.Contains(text, `but for its condition "expired", which does not hold`) {
			t.Errorf("explanation does not name the condition that failed:\n%s", text)
		}
		out, r = h.troubleshoot(owner, "dave@example.com", "svc", "")
		if out == nil || out.Access != "GRANTED" {
			t.Fatalf("%d %s, want GRANTED", r.status, r.raw)
		}
		if text := strings.Join(out.Explanation, "\n"); !strings.Contains(text, `because its condition "started" holds`) {
			t.Errorf("explanation does not name the condition that held:\n%s", text)
		}
	})

	t.Run("other permissions", func(t *testing.T) {
		out, r := h.troubleshoot(owner, "bob@example.com", "svc", iam.PermServicesGet)
		if out == nil || out.Access != "GRANTED" {
			t.Fatalf("%d %s, want bob to hold run.services.get through run.viewer", r.status, r.raw)
		}
	})

	t.Run("allUsers", func(t *testing.T) {
		out, r := h.troubleshoot(owner, "allUsers", "svc", "")
		if out == nil || out.Access != "NOT_GRANTED" {
			t.Fatalf("%d %s, want NOT_GRANTED for a caller without credentials", r.status, r.raw)
		}
	})

	t.Run("a caller who cannot read the project policy", func(t *testing.T) {
		// run.viewer holds run.services.getIamPolicy, not the project's.
		out, r := h.troubleshoot("runviewer@example.com", "user:alice@example.com", "svc", "")
		if out == nil || out.Access != "GRANTED" {
			t.Fatalf("%d %s, want GRANTED: the service's own policy decides", r.status, r.raw)
		}
		out, r = h.troubleshoot("runviewer@example.com", owner, "svc", "")
		if out == nil || out.Access != "UNKNOWN_INFO_DENIED" || out.ExplainedPolicies[1].Access != "UNKNOWN_INFO_DENIED" || out.ExplainedPolicies[1].Policy != nil {
			t.Fatalf("%d %s, want UNKNOWN_INFO_DENIED and the project's policy hidden", r.status, r.raw)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		if _, r := h.troubleshoot("alice@example.com", "bob@example.com", "svc", ""); r.status != 403 {
			t.Errorf("an invoker asking: got %d, want 403 (needs run.services.getIamPolicy)", r.status)
		}
		if _, r := h.troubleshoot(owner, "bob@example.com", "missing", ""); r.status != 404 {
			t.Errorf("a service that does not exist: got %d, want 404", r.status)
		}
		if _, r := h.troubleshoot(owner, "group:team@example.com", "svc", ""); r.status != 400 {
			t.Errorf("a group as principal: got %d, want 400", r.status)
		}
		r := h.call(tok, "POST", client.TroubleshootPath, map[string]any{"accessTuple": map[string]any{"principal": "bob@example.com", "fullResourceName": "projects/" + project}})
		if r.status != 400 {
			t.Errorf("a resource that is not a service: got %d, want 400", r.status)
		}
	})
}
