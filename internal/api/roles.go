package api

import (
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/iam"
)

// Custom roles, IAM v1 projects.roles: a project's own named sets of the
// permissions Usher checks, grantable in that project's policies and its
// services' policies. Deleting is soft (deleted: true; bindings stay but grant
// nothing) and undoable with :undelete. Predefined roles are served read-only
// at /v1/roles, and /v1/permissions:queryTestablePermissions tells gcloud
// which permissions a custom role may include.

func (a *API) routesRoles() {
	m := a.mux
	m.Handle("GET /v1/projects/{project}/roles", a.authed(a.listRoles))
	m.Handle("POST /v1/projects/{project}/roles", a.authed(a.createRole))
	m.Handle("GET /v1/projects/{project}/roles/{role}", a.authed(a.getRole))
	m.Handle("PATCH /v1/projects/{project}/roles/{role}", a.authed(a.patchRole))
	m.Handle("DELETE /v1/projects/{project}/roles/{role}", a.authed(a.deleteRole))
	m.Handle("POST /v1/projects/{project}/roles/{role}", a.authed(a.roleMethod))
	m.Handle("GET /v1/roles", a.authed(a.listPredefinedRoles))
	m.Handle("GET /v1/roles/{role}", a.authed(a.getPredefinedRole))
	m.Handle("POST /v1/permissions:queryTestablePermissions", a.authed(a.queryTestablePermissions))
}

// roleView is a role as IAM v1 answers it.
type roleView struct {
	Name                string   `json:"name"`
	Title               string   `json:"title,omitempty"`
	Description         string   `json:"description,omitempty"`
	IncludedPermissions []string `json:"includedPermissions,omitempty"`
	Stage               string   `json:"stage,omitempty"`
	Etag                string   `json:"etag,omitempty"`
	Deleted             bool     `json:"deleted,omitempty"`
}

func viewOf(r *iam.Role, rev int64, full bool) roleView {
	v := roleView{Name: r.Name, Title: r.Title, Description: r.Description, Stage: r.Stage, Deleted: r.Deleted, Etag: iam.Etag(rev)}
	if full {
		v.IncludedPermissions = r.Permissions
	}
	return v
}

// writeRole answers a role write.
func writeRole(w http.ResponseWriter, role *iam.Role, rev int64, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewOf(role, rev, true))
}

func (a *API) createRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		RoleID string           `json:"roleId"`
		Role   admin.RoleFields `json:"role"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	role, rev, err := a.cfg.Core.CreateRole(r.Context(), c, r.PathValue("project"), req.RoleID, req.Role)
	return writeRole(w, role, rev, err)
}

func roleID(r *http.Request) string {
	id, _ := splitMethod(r.PathValue("role"))
	return id
}

func (a *API) getRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	role, rev, err := a.cfg.Core.GetRole(r.Context(), c, r.PathValue("project"), roleID(r))
	return writeRole(w, role, rev, err)
}

func (a *API) listRoles(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	roles, revs, err := a.cfg.Core.ListRoles(r.Context(), c, r.PathValue("project"), q.Get("showDeleted") == "true")
	if err != nil {
		return err
	}
	full := strings.EqualFold(q.Get("view"), "FULL")
	out := []roleView{}
	for i := range roles {
		out = append(out, viewOf(&roles[i], revs[i], full))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

func (a *API) patchRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	var f admin.RoleFields
	if err := decodeBody(r, &f); err != nil {
		return err
	}
	var mask map[string]bool
	if m := r.URL.Query().Get("updateMask"); m != "" {
		mask = map[string]bool{}
		for _, field := range strings.Split(m, ",") {
			switch field = strings.TrimSpace(field); field {
			case "title", "description", "includedPermissions", "included_permissions", "stage":
				mask[strings.Replace(field, "included_permissions", "includedPermissions", 1)] = true
			default:
				return invalidArgument("updateMask field %q is not supported; use title, description, includedPermissions, stage", field)
			}
		}
	}
	role, rev, err := a.cfg.Core.UpdateRole(r.Context(), c, r.PathValue("project"), roleID(r), f, mask)
	return writeRole(w, role, rev, err)
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	role, rev, err := a.cfg.Core.DeleteRole(r.Context(), c, r.PathValue("project"), roleID(r), r.URL.Query().Get("etag"))
	return writeRole(w, role, rev, err)
}

func (a *API) roleMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	_, method := splitMethod(r.PathValue("role"))
	if method != "undelete" {
		return notFound("no method %q on roles", method)
	}
	var req struct {
		Etag string `json:"etag"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	role, rev, err := a.cfg.Core.UndeleteRole(r.Context(), c, r.PathValue("project"), roleID(r), req.Etag)
	return writeRole(w, role, rev, err)
}

// predefinedView renders a predefined role; roles/owner lists every
// permission Usher checks.
func (a *API) predefinedView(role *iam.Role, full bool) roleView {
	v := roleView{Name: role.Name, Title: role.Title, Description: role.Description, Stage: iam.StageGA, Etag: iam.EmptyEtag}
	if full {
		v.IncludedPermissions = role.Permissions
		if role.Name == "roles/owner" {
			v.IncludedPermissions = iam.KnownPermissions()
		}
	}
	return v
}

// listPredefinedRoles answers any authenticated caller, as IAM does.
func (a *API) listPredefinedRoles(w http.ResponseWriter, r *http.Request, _ *caller) error {
	full := strings.EqualFold(r.URL.Query().Get("view"), "FULL")
	out := []roleView{}
	for _, role := range a.cfg.Core.Roles().List() {
		out = append(out, a.predefinedView(role, full))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

func (a *API) getPredefinedRole(w http.ResponseWriter, r *http.Request, _ *caller) error {
	name := "roles/" + r.PathValue("role")
	role, ok := a.cfg.Core.Roles().Lookup(name)
	if !ok {
		return notFound("The role named %s was not found.", name)
	}
	return writeJSON(w, http.StatusOK, a.predefinedView(role, true))
}

// queryTestablePermissions lists the permissions a custom role may include
// (the ones Usher checks), whatever the resource: gcloud asks before creating
// or updating a role, to warn about unsupported ones.
func (a *API) queryTestablePermissions(w http.ResponseWriter, r *http.Request, _ *caller) error {
	var req struct {
		FullResourceName string `json:"fullResourceName"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	type permission struct {
		Name                    string `json:"name"`
		Stage                   string `json:"stage"`
		CustomRolesSupportLevel string `json:"customRolesSupportLevel"`
	}
	out := []permission{}
	for _, p := range iam.KnownPermissions() {
		out = append(out, permission{Name: p, Stage: iam.StageGA, CustomRolesSupportLevel: "SUPPORTED"})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"permissions": out})
}
