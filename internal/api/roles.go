package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
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

// customRoles is the catalogue of project's custom roles (nil: none). Policy
// checks put it on the project's iam.Level, so every decision on the project
// and its resources can grant them.
func (a *API) customRoles(ctx context.Context, project string) (*iam.Roles, error) {
	roles, _, err := state.List[iam.Role](ctx, a.cfg.Store, state.ProjectRolesPrefix(project))
	if err != nil || len(roles) == 0 {
		return nil, err
	}
	ptrs := make([]*iam.Role, len(roles))
	for i := range roles {
		ptrs[i] = &roles[i]
	}
	return iam.NewRoles(ptrs...), nil
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

// roleFields are a role's settable fields in a request body.
type roleFields struct {
	Title               *string  `json:"title"`
	Description         *string  `json:"description"`
	IncludedPermissions []string `json:"includedPermissions"`
	Stage               *string  `json:"stage"`
	Etag                string   `json:"etag"`
}

// rolePrecondition is the FAILED_PRECONDITION of acting on a role in the wrong
// state (updating a deleted one…).
func rolePrecondition(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "FAILED_PRECONDITION", format, args...)
}

func (a *API) createRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermRolesCreate)
	if err != nil {
		return err
	}
	var req struct {
		RoleID string     `json:"roleId"`
		Role   roleFields `json:"role"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := iam.ValidateRoleID(req.RoleID); err != nil {
		return invalidArgument("%v", err)
	}
	role := &iam.Role{Name: iam.CustomRoleName(p.ProjectID, req.RoleID), Title: req.RoleID, Stage: iam.StageAlpha}
	applyRoleFields(role, req.Role, nil)
	if err := iam.ValidateCustomRole(role); err != nil {
		return invalidArgument("%v", err)
	}
	ctx := r.Context()
	key := state.RoleKey(p.ProjectID, req.RoleID)
	rev, err := state.Put(ctx, a.cfg.Store, key, role, store.MustNotExist)
	if errors.Is(err, store.ErrConflict) {
		var old iam.Role
		if _, gerr := state.Get(ctx, a.cfg.Store, key, &old); gerr == nil && old.Deleted {
			return alreadyExists("A role named %s in projects/%s already exists and is deleted; undelete it or choose another role ID.", req.RoleID, p.ProjectID)
		}
		return alreadyExists("A role named %s in projects/%s already exists.", req.RoleID, p.ProjectID)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(ctx, rev); err != nil {
		return err
	}
	a.cfg.Log.Info("custom role created", "role", role.Name, "caller", c.Principal.String(), "permissions", len(role.Permissions))
	a.auditRole(ctx, c, "created", role.Name) // audit.go
	return writeJSON(w, http.StatusOK, viewOf(role, rev, true))
}

// applyRoleFields sets the fields of f that mask names (all when mask is nil).
func applyRoleFields(role *iam.Role, f roleFields, mask map[string]bool) {
	want := func(field string) bool { return mask == nil || mask[field] }
	if f.Title != nil && want("title") {
		role.Title = *f.Title
	}
	if f.Description != nil && want("description") {
		role.Description = *f.Description
	}
	if want("includedPermissions") && (f.IncludedPermissions != nil || mask != nil) {
		perms := slices.Clone(f.IncludedPermissions)
		slices.Sort(perms)
		role.Permissions = slices.Compact(perms)
	}
	if f.Stage != nil && *f.Stage != "" && want("stage") {
		role.Stage = *f.Stage
	}
}

// readRole reads custom role id of project after checking perm on the project.
func (a *API) readRole(r *http.Request, c *caller, perm string) (*iam.Role, int64, string, error) {
	p, err := a.authorizeProject(r, c, perm)
	if err != nil {
		return nil, 0, "", err
	}
	id, _ := splitMethod(r.PathValue("role"))
	key := state.RoleKey(p.ProjectID, id)
	var role iam.Role
	rev, err := state.Get(r.Context(), a.cfg.Store, key, &role)
	if errors.Is(err, store.ErrNotFound) || iam.ValidateRoleID(id) != nil {
		return nil, 0, "", notFound("The role named %s was not found.", iam.CustomRoleName(p.ProjectID, id))
	}
	if err != nil {
		return nil, 0, "", err
	}
	return &role, rev, key, nil
}

func (a *API) getRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	role, rev, _, err := a.readRole(r, c, iam.PermRolesGet)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewOf(role, rev, true))
}

func (a *API) listRoles(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermRolesList)
	if err != nil {
		return err
	}
	entries, _, err := a.cfg.Store.List(r.Context(), state.ProjectRolesPrefix(p.ProjectID))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	showDeleted := q.Get("showDeleted") == "true"
	full := strings.EqualFold(q.Get("view"), "FULL")
	out := []roleView{}
	for _, e := range entries {
		var role iam.Role
		if err := json.Unmarshal(e.Value, &role); err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		if role.Deleted && !showDeleted {
			continue
		}
		out = append(out, viewOf(&role, e.Revision, full))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

// writeRole stores an updated role compare-and-swap on rev and answers once
// the gateway's tables use it.
func (a *API) writeRole(w http.ResponseWriter, r *http.Request, c *caller, key string, role *iam.Role, rev int64, what string) error {
	ctx := r.Context()
	newRev, err := state.Put(ctx, a.cfg.Store, key, role, rev)
	if errors.Is(err, store.ErrConflict) {
		return aborted("The role %s was changed concurrently. Read it again and retry.", role.Name)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(ctx, newRev); err != nil {
		return err
	}
	a.cfg.Log.Info("custom role "+what, "role", role.Name, "caller", c.Principal.String())
	a.auditRole(ctx, c, what, role.Name) // audit.go
	return writeJSON(w, http.StatusOK, viewOf(role, newRev, true))
}

// checkEtag refuses a stale etag (an empty one overwrites, as IAM allows).
func checkEtag(etag string, rev int64) error {
	if etag == "" {
		return nil
	}
	want, err := iam.ParseEtag(etag)
	if err != nil {
		return invalidArgument("%v", err)
	}
	if want != rev {
		return aborted("The role was changed since etag %s was read. Read it again and retry.", etag)
	}
	return nil
}

func (a *API) patchRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	role, rev, key, err := a.readRole(r, c, iam.PermRolesUpdate)
	if err != nil {
		return err
	}
	var f roleFields
	if err := decodeBody(r, &f); err != nil {
		return err
	}
	if role.Deleted {
		return rolePrecondition("You can't update the deleted role %s; undelete it first.", role.Name)
	}
	if err := checkEtag(f.Etag, rev); err != nil {
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
	applyRoleFields(role, f, mask)
	if err := iam.ValidateCustomRole(role); err != nil {
		return invalidArgument("%v", err)
	}
	return a.writeRole(w, r, c, key, role, rev, "updated")
}

func (a *API) deleteRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	role, rev, key, err := a.readRole(r, c, iam.PermRolesDelete)
	if err != nil {
		return err
	}
	if role.Deleted {
		return rolePrecondition("You can't delete role %s as it is already deleted.", role.Name)
	}
	if err := checkEtag(r.URL.Query().Get("etag"), rev); err != nil {
		return err
	}
	role.Deleted = true
	return a.writeRole(w, r, c, key, role, rev, "deleted")
}

func (a *API) roleMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	_, method := splitMethod(r.PathValue("role"))
	if method != "undelete" {
		return notFound("no method %q on roles", method)
	}
	role, rev, key, err := a.readRole(r, c, iam.PermRolesUndelete)
	if err != nil {
		return err
	}
	var req struct {
		Etag string `json:"etag"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !role.Deleted {
		return rolePrecondition("You can't undelete role %s as it is not deleted.", role.Name)
	}
	if err := checkEtag(req.Etag, rev); err != nil {
		return err
	}
	role.Deleted = false
	return a.writeRole(w, r, c, key, role, rev, "undeleted")
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
	for _, role := range a.cfg.Roles.List() {
		out = append(out, a.predefinedView(role, full))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

func (a *API) getPredefinedRole(w http.ResponseWriter, r *http.Request, _ *caller) error {
	name := "roles/" + r.PathValue("role")
	role, ok := a.cfg.Roles.Lookup(name)
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

// checkRolesGrantable refuses newly bound custom roles that are deleted, so a
// binding cannot be added to a role that grants nothing; bindings already in
// the policy are left alone (their role may have been deleted since).
func checkRolesGrantable(p, current *iam.Policy, roles *iam.Roles) error {
	bound := map[string]bool{}
	if current != nil {
		for _, b := range current.Bindings {
			bound[b.Role] = true
		}
	}
	for _, b := range p.Bindings {
		if bound[b.Role] {
			continue
		}
		if role, ok := roles.Lookup(b.Role); ok && role.Deleted {
			return invalidArgument("Role %s is deleted; undelete it before granting it.", b.Role)
		}
	}
	return nil
}
