package api_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

const rolesPath = "/v1/projects/" + project + "/roles"

// grantAs adds a binding as the owner through the client's read-modify-write.
func (h *harness) grantAs(path, role, member string, cond *iam.Expr) {
	h.t.Helper()
	c := client.New(client.Config{Server: h.server.URL, Credential: h.secret})
	if _, err := c.ModifyIamPolicy(context.Background(), path, func(p *iam.Policy) (bool, error) {
		if cond != nil {
			p.Version = iam.Version3
		}
		return p.AddBinding(role, member, cond), nil
	}); err != nil {
		h.t.Fatalf("granting %s to %s on %s: %v", role, member, path, err)
	}
}

// held is testIamPermissions on path as email.
func (h *harness) held(email, path string, perms ...string) []string {
	h.t.Helper()
	r := h.call(h.token(email), "POST", path+":testIamPermissions", map[string]any{"permissions": perms})
	if r.status != 200 {
		h.t.Fatalf("testIamPermissions on %s as %s = %d %s", path, email, r.status, r.raw)
	}
	var out []string
	list, _ := r.body["permissions"].([]any)
	for _, p := range list {
		out = append(out, p.(string))
	}
	return out
}

func TestCustomRolesCRUD(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	create := func(id string, perms ...string) response {
		return h.call(tok, "POST", rolesPath, map[string]any{"roleId": id, "role": map[string]any{
			"title": "Invoker only", "description": "Invoke services", "includedPermissions": perms}})
	}

	r := create("invokeOnly", "run.routes.invoke", "run.services.get", "run.routes.invoke")
	if r.status != 200 {
		t.Fatalf("create = %d %s", r.status, r.raw)
	}
	if r.body["name"] != "projects/"+project+"/roles/invokeOnly" || r.body["stage"] != "ALPHA" || r.body["etag"] == "" || r.body["title"] != "Invoker only" {
		t.Errorf("created role = %s, want Google's shape (name, title, stage ALPHA, etag)", r.raw)
	}
	if perms := r.body["includedPermissions"].([]any); len(perms) != 2 {
		t.Errorf("includedPermissions = %v, want the two distinct permissions", perms)
	}

	refused := []struct {
		name, id   string
		perms      []string
		wantStatus int
		wantErr    string
		wantMsg    string
	}{
		{"duplicate", "invokeOnly", []string{"run.routes.invoke"}, 409, "ALREADY_EXISTS", "already exists"},
		{"bad id", "no-dashes", []string{"run.routes.invoke"}, 400, "INVALID_ARGUMENT", "role ID"},
		{"unknown permission", "computeAdmin", []string{"compute.instances.create"}, 400, "INVALID_ARGUMENT", "Permission compute.instances.create is not valid"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := create(tt.id, tt.perms...)
			if r.status != tt.wantStatus || r.errStatus() != tt.wantErr || !strings.Contains(r.raw, tt.wantMsg) {
				t.Fatalf("create = %d %s, want %d %s mentioning %q", r.status, r.raw, tt.wantStatus, tt.wantErr, tt.wantMsg)
			}
		})
	}

	got := h.call(tok, "GET", rolesPath+"/invokeOnly", nil)
	if got.status != 200 || got.body["etag"] != r.body["etag"] {
		t.Fatalf("get = %d %s", got.status, got.raw)
	}
	if miss := h.call(tok, "GET", rolesPath+"/nope", nil); miss.status != 404 {
		t.Errorf("get missing = %d %s, want 404", miss.status, miss.raw)
	}

	list := h.call(tok, "GET", rolesPath, nil)
	if list.status != 200 || !strings.Contains(list.raw, "invokeOnly") || strings.Contains(list.raw, "includedPermissions") {
		t.Errorf("list (BASIC view) = %d %s", list.status, list.raw)
	}
	if full := h.call(tok, "GET", rolesPath+"?view=FULL", nil); !strings.Contains(full.raw, "run.routes.invoke") {
		t.Errorf("list (FULL view) = %s", full.raw)
	}

	etag := got.body["etag"].(string)
	patched := h.call(tok, "PATCH", rolesPath+"/invokeOnly?updateMask=title,includedPermissions",
		map[string]any{"title": "Just invoke", "includedPermissions": []string{"run.routes.invoke"}, "description": "ignored (not in mask)", "etag": etag})
	if patched.status != 200 || patched.body["title"] != "Just invoke" || patched.body["description"] != "Invoke services" ||
		len(patched.body["includedPermissions"].([]any)) != 1 || patched.body["etag"] == etag {
		t.Fatalf("patch = %d %s", patched.status, patched.raw)
	}
	if stale := h.call(tok, "PATCH", rolesPath+"/invokeOnly", map[string]any{"title": "x", "etag": etag}); stale.status != 409 || stale.errStatus() != "ABORTED" {
		t.Errorf("patch with a stale etag = %d %s, want 409 ABORTED", stale.status, stale.raw)
	}

	del := h.call(tok, "DELETE", rolesPath+"/invokeOnly", nil)
	if del.status != 200 || del.body["deleted"] != true {
		t.Fatalf("delete = %d %s", del.status, del.raw)
	}
	if l := h.call(tok, "GET", rolesPath, nil); strings.Contains(l.raw, "invokeOnly") {
		t.Errorf("list shows a deleted role: %s", l.raw)
	}
	if l := h.call(tok, "GET", rolesPath+"?showDeleted=true", nil); !strings.Contains(l.raw, "invokeOnly") {
		t.Errorf("list with showDeleted misses the deleted role: %s", l.raw)
	}
	if again := h.call(tok, "DELETE", rolesPath+"/invokeOnly", nil); again.status != 400 || again.errStatus() != "FAILED_PRECONDITION" {
		t.Errorf("second delete = %d %s, want FAILED_PRECONDITION", again.status, again.raw)
	}
	if up := h.call(tok, "PATCH", rolesPath+"/invokeOnly", map[string]any{"title": "x"}); up.status != 400 || up.errStatus() != "FAILED_PRECONDITION" {
		t.Errorf("update of a deleted role = %d %s, want FAILED_PRECONDITION", up.status, up.raw)
	}
	if re := create("invokeOnly", "run.routes.invoke"); re.status != 409 || !strings.Contains(re.raw, "deleted") {
		t.Errorf("re-create of a deleted role = %d %s, want ALREADY_EXISTS saying it is deleted", re.status, re.raw)
	}
	und := h.call(tok, "POST", rolesPath+"/invokeOnly:undelete", map[string]any{})
	if und.status != 200 || und.body["deleted"] == true {
		t.Fatalf("undelete = %d %s", und.status, und.raw)
	}

	// Predefined roles and testable permissions, as gcloud reads them.
	if pre := h.call(tok, "GET", "/v1/roles/run.invoker", nil); pre.status != 200 || !strings.Contains(pre.raw, "run.routes.invoke") {
		t.Errorf("GET /v1/roles/run.invoker = %d %s", pre.status, pre.raw)
	}
	if pre := h.call(tok, "GET", "/v1/roles", nil); !strings.Contains(pre.raw, "roles/iam.roleAdmin") {
		t.Errorf("GET /v1/roles = %s", pre.raw)
	}
	q := h.call(tok, "POST", "/v1/permissions:queryTestablePermissions", map[string]any{"fullResourceName": "//cloudresourcemanager.googleapis.com/projects/" + project})
	if q.status != 200 || !strings.Contains(q.raw, `"run.routes.invoke"`) || !strings.Contains(q.raw, "SUPPORTED") {
		t.Errorf("queryTestablePermissions = %d %s", q.status, q.raw)
	}
}

func TestCustomRolesAuthorization(t *testing.T) {
	h := newHarness(t)
	h.grantAs(client.ProjectPath(project), "roles/iam.roleViewer", "user:viewer@example.com", nil)
	h.grantAs(client.ProjectPath(project), "roles/iam.roleAdmin", "user:admin@example.com", nil)
	body := map[string]any{"roleId": "role1", "role": map[string]any{"includedPermissions": []string{"run.routes.invoke"}}}
	tests := []struct {
		who, method, path string
		body              any
		want              int
	}{
		{"stranger@example.com", "POST", rolesPath, body, 403},
		{"viewer@example.com", "POST", rolesPath, body, 403},
		{"admin@example.com", "POST", rolesPath, body, 200},
		{"stranger@example.com", "GET", rolesPath, nil, 403},
		{"stranger@example.com", "GET", rolesPath + "/role1", nil, 403},
		{"viewer@example.com", "GET", rolesPath, nil, 200},
		{"viewer@example.com", "GET", rolesPath + "/role1", nil, 200},
		{"viewer@example.com", "DELETE", rolesPath + "/role1", nil, 403},
		{"viewer@example.com", "PATCH", rolesPath + "/role1", map[string]any{"title": "t"}, 403},
		{"admin@example.com", "PATCH", rolesPath + "/role1", map[string]any{"title": "t"}, 200},
		{"admin@example.com", "DELETE", rolesPath + "/role1", nil, 200},
		{"viewer@example.com", "POST", rolesPath + "/role1:undelete", map[string]any{}, 403},
		{"admin@example.com", "POST", rolesPath + "/role1:undelete", map[string]any{}, 200},
		{"stranger@example.com", "GET", "/v1/roles/run.invoker", nil, 200}, // predefined roles are public knowledge
	}
	for _, tt := range tests {
		t.Run(tt.who+" "+tt.method+" "+tt.path, func(t *testing.T) {
			r := h.call(h.token(tt.who), tt.method, tt.path, tt.body)
			if r.status != tt.want {
				t.Fatalf("got %d %s, want %d", r.status, r.raw, tt.want)
			}
			if tt.want == 403 && !strings.Contains(r.raw, "iam.roles.") {
				t.Errorf("403 does not name the iam.roles permission: %s", r.raw)
			}
		})
	}
}

// TestCustomRoleGrants: a custom role bound on a service or its project
// grants exactly its permissions through the one evaluator (testIamPermissions
// and the API's own checks), only in its project, and nothing once deleted.
func TestCustomRoleGrants(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	tok := h.token(owner)
	svc := client.ServicePath(project, region, "svc")
	if r := h.call(tok, "POST", rolesPath, map[string]any{"roleId": "invokeOnly", "role": map[string]any{"includedPermissions": []string{"run.routes.invoke"}}}); r.status != 200 {
		t.Fatalf("create role = %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", rolesPath, map[string]any{"roleId": "reader", "role": map[string]any{"includedPermissions": []string{"run.services.get", "run.services.list"}}}); r.status != 200 {
		t.Fatalf("create role = %d %s", r.status, r.raw)
	}
	invokeOnly := iam.CustomRoleName(project, "invokeOnly")
	h.grantAs(svc, invokeOnly, "user:alice@example.com", nil)
	h.grantAs(client.ProjectPath(project), iam.CustomRoleName(project, "reader"), "user:bob@example.com", nil)

	perms := []string{"run.routes.invoke", "run.services.get", "run.services.setIamPolicy"}
	if got := h.held("alice@example.com", svc, perms...); !slices.Equal(got, []string{"run.routes.invoke"}) {
		t.Errorf("alice holds %v on the service, want [run.routes.invoke]", got)
	}
	if got := h.held("bob@example.com", svc, perms...); !slices.Equal(got, []string{"run.services.get"}) {
		t.Errorf("bob holds %v on the service (project grant inherited), want [run.services.get]", got)
	}
	if r := h.call(h.token("bob@example.com"), "GET", svc, nil); r.status != 200 {
		t.Errorf("bob GET service through the custom role = %d %s", r.status, r.raw)
	}
	if r := h.call(h.token("alice@example.com"), "GET", svc, nil); r.status != 403 {
		t.Errorf("alice GET service = %d, want 403", r.status)
	}

	set := func(role string, etag string) response {
		return h.call(tok, "POST", svc+":setIamPolicy", map[string]any{"policy": map[string]any{"etag": etag,
			"bindings": []any{map[string]any{"role": role, "members": []string{"user:alice@example.com"}}}}})
	}
	if r := set("projects/other-project/roles/invokeOnly", ""); r.status != 400 || !strings.Contains(r.raw, "does not exist") {
		t.Errorf("binding another project's custom role = %d %s, want 400", r.status, r.raw)
	}

	if r := h.call(tok, "DELETE", rolesPath+"/invokeOnly", nil); r.status != 200 {
		t.Fatalf("delete role = %d %s", r.status, r.raw)
	}
	if got := h.held("alice@example.com", svc, perms...); len(got) != 0 {
		t.Errorf("alice holds %v through a deleted role, want nothing", got)
	}
	// The binding stays (policy writes keep it) but a new one is refused.
	if r := set(invokeOnly, ""); r.status != 200 {
		t.Errorf("re-setting a policy that already binds the deleted role = %d %s, want 200", r.status, r.raw)
	}
	h.call(tok, "POST", svc+":setIamPolicy", map[string]any{"policy": map[string]any{"bindings": []any{}}})
	if r := set(invokeOnly, ""); r.status != 400 || !strings.Contains(r.raw, "is deleted") {
		t.Errorf("newly binding a deleted role = %d %s, want 400", r.status, r.raw)
	}
}

// TestConditionalBindingsThroughAPI: setIamPolicy validates conditions as
// Google does, and testIamPermissions evaluates them like the gateway.
func TestConditionalBindingsThroughAPI(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	h.createService("other")
	tok := h.token(owner)
	svc := client.ServicePath(project, region, "svc")
	set := func(path string, version int, role, expr string) response {
		return h.call(tok, "POST", path+":setIamPolicy", map[string]any{"policy": map[string]any{"version": version,
			"bindings": []any{map[string]any{"role": role, "members": []string{"user:carol@example.com"},
				"condition": map[string]any{"title": "c1", "expression": expr}}}}})
	}
	refused := []struct {
		name, role, expr string
		version          int
		want             string
	}{
		{"version 1", "roles/run.invoker", "true", 1, "version 3"},
		{"syntax", "roles/run.invoker", "request.time <", 3, "bindings[0] (role roles/run.invoker): condition \\\"c1\\\" is not valid"},
		{"not bool", "roles/run.invoker", "resource.name", 3, "must evaluate to a bool"},
		{"unknown attribute", "roles/run.invoker", "request.host == 'x'", 3, "undeclared reference"},
		{"basic role", "roles/viewer", "true", 3, "basic role"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := set(svc, tt.version, tt.role, tt.expr)
			if r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" || !strings.Contains(r.raw, tt.want) {
				t.Fatalf("setIamPolicy = %d %s, want INVALID_ARGUMENT containing %q", r.status, r.raw, tt.want)
			}
		})
	}

	if r := set(svc, 3, "roles/run.invoker", `request.time < timestamp("2000-01-01T00:00:00Z")`); r.status != 200 {
		t.Fatalf("set expired conditional binding = %d %s", r.status, r.raw)
	} else if r.body["version"] != float64(3) || !strings.Contains(r.raw, "c1") {
		t.Errorf("policy = %s, want version 3 with the condition", r.raw)
	}
	if got := h.held("carol@example.com", svc, "run.routes.invoke"); len(got) != 0 {
		t.Errorf("expired conditional grant: holds %v, want nothing", got)
	}
	set(svc, 3, "roles/run.invoker", `request.time < timestamp("2999-01-01T00:00:00Z")`)
	if got := h.held("carol@example.com", svc, "run.routes.invoke"); !slices.Equal(got, []string{"run.routes.invoke"}) {
		t.Errorf("live conditional grant: holds %v, want [run.routes.invoke]", got)
	}

	// A project grant scoped by resource.name reaches one service only.
	h.grantAs(client.ProjectPath(project), "roles/run.developer", "user:dave@example.com",
		&iam.Expr{Title: "only svc", Expression: `resource.name.endsWith("/services/svc")`})
	if got := h.held("dave@example.com", svc, "run.services.get"); len(got) != 1 {
		t.Errorf("dave on svc holds %v, want run.services.get", got)
	}
	if got := h.held("dave@example.com", client.ServicePath(project, region, "other"), "run.services.get"); len(got) != 0 {
		t.Errorf("dave on other holds %v, want nothing", got)
	}
	if r := h.call(h.token("dave@example.com"), "GET", svc, nil); r.status != 200 {
		t.Errorf("dave GET svc (conditional project grant) = %d %s", r.status, r.raw)
	}
	if r := h.call(h.token("dave@example.com"), "GET", client.ServicePath(project, region, "other"), nil); r.status != 403 {
		t.Errorf("dave GET other = %d, want 403", r.status)
	}
}
