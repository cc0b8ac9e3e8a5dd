package api_test

import (
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
)

// rootProjectHarness is the API with project as the server's root project.
func rootProjectHarness(t *testing.T) *harness {
	return newHarness(t, func(c *admin.Config) { c.RootProject = project })
}

func projectIDs(r response, key string) []string {
	var ids []string
	list, _ := r.body[key].([]any)
	for _, p := range list {
		ids = append(ids, p.(map[string]any)["projectId"].(string))
	}
	return ids
}

func TestProjectLifecycle(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)

	r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "team-b", "name": "Team B", "labels": map[string]string{"env": "dev"}})
	if r.status != 200 || r.body["done"] != true || r.body["name"] != "operations/cp.team-b" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	resp := r.body["response"].(map[string]any)
	if resp["projectId"] != "team-b" || resp["lifecycleState"] != "ACTIVE" || resp["projectNumber"] != apis.ProjectNumber("team-b") || resp["name"] != "Team B" {
		t.Fatalf("create response: %v", resp)
	}
	// gcloud polls the operation.
	if r := h.call(tok, "GET", "/v1/operations/cp.team-b", nil); r.status != 200 || r.body["done"] != true {
		t.Fatalf("operation: %d %s", r.status, r.raw)
	}
	// The creator owns it, and it has its default runtime account.
	if r := h.call(tok, "POST", "/v1/projects/team-b:getIamPolicy", map[string]any{}); r.status != 200 || !strings.Contains(r.raw, `"user:`+owner+`"`) || !strings.Contains(r.raw, "roles/owner") {
		t.Fatalf("new project's policy: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects/team-b/serviceAccounts/"+apis.DefaultServiceAccount("team-b"), nil); r.status != 200 {
		t.Fatalf("default account: %d %s", r.status, r.raw)
	}
	// Services can be deployed into it.
	svc := map[string]any{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": map[string]any{"name": "hello", "namespace": "team-b"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "file:///bin/true"}}}}}}
	if r := h.call(tok, "POST", client.ServicesPath("team-b", region), svc); r.status != 200 {
		t.Fatalf("deploy into the new project: %d %s", r.status, r.raw)
	}

	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "team-b"}); r.status != 409 || r.errStatus() != "ALREADY_EXISTS" {
		t.Fatalf("duplicate: %d %s", r.status, r.raw)
	}

	// Lists, with gcloud's default filter and a user's filter rewritten.
	if r := h.call(tok, "GET", "/v1/projects?filter=lifecycleState%3AACTIVE", nil); r.status != 200 || strings.Join(projectIDs(r, "projects"), ",") != "team-b,"+project {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects?filter=lifecycleState%3AACTIVE+AND+%28labels.env%3Ddev%29", nil); strings.Join(projectIDs(r, "projects"), ",") != "team-b" {
		t.Fatalf("filtered list: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v3/projects:search?query=id%3Ateam-b", nil); r.status != 200 || strings.Join(projectIDs(r, "projects"), ",") != "team-b" {
		t.Fatalf("v3 search: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects?filter=owner%3Dme", nil); r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" {
		t.Fatalf("unknown filter field: %d %s", r.status, r.raw)
	}

	// v3 describe and update.
	r = h.call(tok, "GET", "/v3/projects/team-b", nil)
	if r.status != 200 || r.body["name"] != "projects/"+apis.ProjectNumber("team-b") || r.body["state"] != "ACTIVE" || r.body["displayName"] != "Team B" {
		t.Fatalf("v3 get: %d %s", r.status, r.raw)
	}
	etag := r.body["etag"].(string)
	if r := h.call(tok, "PATCH", "/v3/projects/team-b?updateMask=displayName", map[string]any{"displayName": "Team Bee", "etag": etag}); r.status != 200 || r.body["response"].(map[string]any)["displayName"] != "Team Bee" {
		t.Fatalf("v3 patch: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "PATCH", "/v3/projects/team-b?updateMask=displayName", map[string]any{"displayName": "Stale", "etag": etag}); r.status != 409 || r.errStatus() != "ABORTED" {
		t.Fatalf("v3 patch with a stale etag: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "PATCH", "/v3/projects/team-b?updateMask=parent", map[string]any{"parent": "folders/1"}); r.status != 400 {
		t.Fatalf("v3 patch of the parent: %d %s", r.status, r.raw)
	}

	// Delete: nothing in it answers, until undelete.
	if r := h.call(tok, "DELETE", "/v1/projects/team-b", nil); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects/team-b", nil); r.status != 200 || r.body["lifecycleState"] != "DELETE_REQUESTED" {
		t.Fatalf("describe a deleted project: %d %s", r.status, r.raw)
	}
	for _, path := range []string{client.ServicesPath("team-b", region), "/v1/projects/team-b/serviceAccounts", "/v1/projects/team-b/secrets"} {
		if r := h.call(tok, "GET", path, nil); r.status != 404 || !strings.Contains(r.raw, "undelete") {
			t.Fatalf("GET %s in a deleted project: %d %s", path, r.status, r.raw)
		}
	}
	if r := h.call(tok, "POST", client.ServicesPath("team-b", region), svc); r.status != 404 {
		t.Fatalf("deploy into a deleted project: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects?filter=lifecycleState%3AACTIVE", nil); strings.Join(projectIDs(r, "projects"), ",") != project {
		t.Fatalf("list after delete: %s", r.raw)
	}
	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "team-b"}); r.status != 409 {
		t.Fatalf("a deleted project's ID is reused: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "DELETE", "/v1/projects/team-b", nil); r.status != 400 || r.errStatus() != "FAILED_PRECONDITION" {
		t.Fatalf("delete twice: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v1/projects/team-b:undelete", map[string]any{}); r.status != 200 {
		t.Fatalf("undelete: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", client.ServicePath("team-b", region, "hello"), nil); r.status != 200 {
		t.Fatalf("service after undelete: %d %s", r.status, r.raw)
	}
	// v3 delete and undelete answer operations.
	if r := h.call(tok, "DELETE", "/v3/projects/team-b", nil); r.status != 200 || r.body["response"].(map[string]any)["state"] != "DELETE_REQUESTED" {
		t.Fatalf("v3 delete: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v3/projects/team-b:undelete", map[string]any{}); r.status != 200 || r.body["response"].(map[string]any)["state"] != "ACTIVE" {
		t.Fatalf("v3 undelete: %d %s", r.status, r.raw)
	}

	// The root project stands in for the organization.
	if r := h.call(tok, "DELETE", "/v1/projects/"+project, nil); r.status != 400 || r.errStatus() != "FAILED_PRECONDITION" {
		t.Fatalf("delete the root project: %d %s", r.status, r.raw)
	}
}

func TestProjectRequestsRefused(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)
	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"short ID", map[string]any{"projectId": "abc"}, "projectId"},
		{"uppercase ID", map[string]any{"projectId": "Team-Bee"}, "projectId"},
		{"ID ending in a hyphen", map[string]any{"projectId": "team-bee-"}, "projectId"},
		{"climbing ID", map[string]any{"projectId": "../policies"}, "projectId"},
		{"slash in ID", map[string]any{"projectId": "team/bee"}, "projectId"},
		{"reserved word", map[string]any{"projectId": "my-google-app"}, "projectId"},
		{"a parent", map[string]any{"projectId": "team-bee", "parent": map[string]any{"type": "organization", "id": "1"}}, "parent"},
		{"tags", map[string]any{"projectId": "team-bee", "tags": map[string]any{"k": "v"}}, "tags"},
		{"bad label", map[string]any{"projectId": "team-bee", "labels": map[string]any{"Env": "x"}}, "labels"},
		{"unknown field", map[string]any{"projectId": "team-bee", "billingAccount": "x"}, "billingAccount"},
	} {
		r := h.call(tok, "POST", "/v1/projects", c.body)
		if r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" || !strings.Contains(r.raw, c.field) {
			t.Errorf("%s: %d %s", c.name, r.status, r.raw)
		}
	}
	if r := h.call(tok, "GET", "/v1/projects?filter=lifecycleState%3AACTIVE", nil); strings.Join(projectIDs(r, "projects"), ",") != project {
		t.Fatalf("a refused request created something: %s", r.raw)
	}
	if r := h.call(tok, "GET", "/v3/projects?parent=organizations%2F1", nil); r.status != 400 {
		t.Fatalf("v3 list under an organization: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/operations/cp.nope-nope", nil); r.status != 404 {
		t.Fatalf("operation of no project: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/operations/xx."+project, nil); r.status != 404 {
		t.Fatalf("operation of an unknown kind: %d %s", r.status, r.raw)
	}
}

// TestProjectPermissions: creating needs resourcemanager.projects.create on
// the root project; a project's creator owns it and nothing else; a list
// shows only projects the caller may get; delete needs its permission.
func TestProjectPermissions(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)
	alice := h.token("alice@example.com")
	if r := h.call(alice, "POST", "/v1/projects", map[string]any{"projectId": "alice-proj"}); r.status != 403 || !strings.Contains(r.raw, "resourcemanager.projects.create") {
		t.Fatalf("create without the permission: %d %s", r.status, r.raw)
	}
	// A project-level owner of another project is no creator.
	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "team-b"}); r.status != 200 {
		t.Fatal(r.raw)
	}
	addBinding(t, h, tok, "/v1/projects/team-b", "user:alice@example.com", "roles/owner")
	if r := h.call(alice, "POST", "/v1/projects", map[string]any{"projectId": "alice-proj"}); r.status != 403 {
		t.Fatalf("an owner of a non-root project created one: %d %s", r.status, r.raw)
	}
	addBinding(t, h, tok, "/v1/projects/"+project, "user:alice@example.com", "roles/resourcemanager.projectCreator")
	if r := h.call(alice, "POST", "/v1/projects", map[string]any{"projectId": "alice-proj"}); r.status != 200 {
		t.Fatalf("create with projectCreator: %d %s", r.status, r.raw)
	}
	if r := h.call(alice, "GET", "/v1/projects?filter=lifecycleState%3AACTIVE", nil); strings.Join(projectIDs(r, "projects"), ",") != "alice-proj,team-b" {
		t.Fatalf("alice's list: %s", r.raw)
	}
	bob := h.token("bob@example.com")
	if r := h.call(bob, "GET", "/v1/projects", nil); r.status != 200 || len(projectIDs(r, "projects")) != 0 {
		t.Fatalf("bob's list: %d %s", r.status, r.raw)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/projects/alice-proj"},
		{"GET", "/v3/projects/alice-proj"},
		{"GET", "/v1/operations/cp.alice-proj"},
		{"DELETE", "/v1/projects/alice-proj"},
		{"DELETE", "/v3/projects/alice-proj"},
		{"PUT", "/v1/projects/alice-proj"},
		{"POST", "/v1/projects/alice-proj:undelete"},
	} {
		if r := h.call(bob, c.method, c.path, map[string]any{"name": "Bobs project"}); r.status != 403 {
			t.Errorf("bob %s %s: %d %s", c.method, c.path, r.status, r.raw)
		}
	}
	// A viewer reads but cannot delete.
	addBinding(t, h, alice, "/v1/projects/alice-proj", "user:bob@example.com", "roles/viewer")
	if r := h.call(bob, "GET", "/v1/projects/alice-proj", nil); r.status != 200 {
		t.Fatalf("viewer get: %d %s", r.status, r.raw)
	}
	if r := h.call(bob, "DELETE", "/v1/projects/alice-proj", nil); r.status != 403 {
		t.Fatalf("viewer delete: %d %s", r.status, r.raw)
	}
	// alice's root grant lets her create, not delete the root or touch it.
	if r := h.call(alice, "DELETE", "/v1/projects/"+project, nil); r.status != 403 {
		t.Fatalf("projectCreator deleted the root: %d %s", r.status, r.raw)
	}
}

// addBinding grants member role on the resource at path (a v1 project).
func addBinding(t *testing.T, h *harness, tok, path, member, role string) {
	t.Helper()
	r := h.call(tok, "POST", path+":getIamPolicy", map[string]any{})
	if r.status != 200 {
		t.Fatalf("getIamPolicy %s: %d %s", path, r.status, r.raw)
	}
	pol := r.body
	bindings, _ := pol["bindings"].([]any)
	pol["bindings"] = append(bindings, map[string]any{"role": role, "members": []any{member}})
	if r := h.call(tok, "POST", path+":setIamPolicy", map[string]any{"policy": pol}); r.status != 200 {
		t.Fatalf("setIamPolicy %s: %d %s", path, r.status, r.raw)
	}
}
