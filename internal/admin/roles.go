package admin

// Custom roles, IAM v1 projects.roles: a project's own named sets of the
// permissions Usher checks, grantable in that project's policies and its
// services' policies. Deleting is soft (deleted: true; bindings stay but
// grant nothing) and undoable with undelete.

import (
	"context"
	"errors"
	"slices"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// RoleFields are a role's settable fields in a request (nil: not given).
type RoleFields struct {
	Title               *string  `json:"title"`
	Description         *string  `json:"description"`
	IncludedPermissions []string `json:"includedPermissions"`
	Stage               *string  `json:"stage"`
	Etag                string   `json:"etag"`
}

// apply sets the fields mask names (all when mask is nil).
func (f RoleFields) apply(role *iam.Role, mask map[string]bool) {
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

// CreateRole creates custom role id in project.
func (c *Core) CreateRole(ctx context.Context, caller *Caller, project, id string, f RoleFields) (*iam.Role, int64, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermRolesCreate)
	if err != nil {
		return nil, 0, err
	}
	if err := iam.ValidateRoleID(id); err != nil {
		return nil, 0, InvalidArgument("%v", err)
	}
	role := &iam.Role{Name: iam.CustomRoleName(p.ProjectID, id), Title: id, Stage: iam.StageAlpha}
	f.apply(role, nil)
	if err := iam.ValidateCustomRole(role); err != nil {
		return nil, 0, InvalidArgument("%v", err)
	}
	key := state.RoleKey(p.ProjectID, id)
	rev, err := c.commit(ctx, caller, change{
		writes: []write{{key: key, value: role, expected: store.MustNotExist, conflict: func() error {
			var old iam.Role
			if _, gerr := state.Get(ctx, c.cfg.Store, key, &old); gerr == nil && old.Deleted {
				return AlreadyExists("A role named %s in projects/%s already exists and is deleted; undelete it or choose another role ID.", id, p.ProjectID)
			}
			return AlreadyExists("A role named %s in projects/%s already exists.", id, p.ProjectID)
		}}},
		record: audit.Record{Kind: audit.KindRoleCreate, Permission: iam.PermRolesCreate, Resource: role.Name},
	})
	if err != nil {
		return nil, 0, err
	}
	return role, rev, nil
}

// readRole reads custom role id of project after checking perm on the project.
func (c *Core) readRole(ctx context.Context, caller *Caller, project, id, perm string) (*iam.Role, int64, string, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, perm)
	if err != nil {
		return nil, 0, "", err
	}
	key := state.RoleKey(p.ProjectID, id)
	var role iam.Role
	rev, err := state.Get(ctx, c.cfg.Store, key, &role)
	if errors.Is(err, store.ErrNotFound) || iam.ValidateRoleID(id) != nil {
		return nil, 0, "", NotFound("The role named %s was not found.", iam.CustomRoleName(p.ProjectID, id))
	}
	if err != nil {
		return nil, 0, "", err
	}
	return &role, rev, key, nil
}

// GetRole reads custom role id.
func (c *Core) GetRole(ctx context.Context, caller *Caller, project, id string) (*iam.Role, int64, error) {
	role, rev, _, err := c.readRole(ctx, caller, project, id, iam.PermRolesGet)
	return role, rev, err
}

// ListRoles lists a project's custom roles (deleted ones too when asked).
func (c *Core) ListRoles(ctx context.Context, caller *Caller, project string, showDeleted bool) ([]iam.Role, []int64, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermRolesList)
	if err != nil {
		return nil, nil, err
	}
	roles, revs, err := state.List[iam.Role](ctx, c.cfg.Store, state.ProjectRolesPrefix(p.ProjectID))
	if err != nil {
		return nil, nil, err
	}
	var out []iam.Role
	var outRevs []int64
	for i, r := range roles {
		if r.Deleted && !showDeleted {
			continue
		}
		out = append(out, r)
		outRevs = append(outRevs, revs[i])
	}
	return out, outRevs, nil
}

// UpdateRole applies f (the fields mask names; all when nil) to role id.
func (c *Core) UpdateRole(ctx context.Context, caller *Caller, project, id string, f RoleFields, mask map[string]bool) (*iam.Role, int64, error) {
	role, rev, key, err := c.readRole(ctx, caller, project, id, iam.PermRolesUpdate)
	if err != nil {
		return nil, 0, err
	}
	if role.Deleted {
		return nil, 0, FailedPrecondition("You can't update the deleted role %s; undelete it first.", role.Name)
	}
	f.apply(role, mask)
	if err := iam.ValidateCustomRole(role); err != nil {
		return nil, 0, InvalidArgument("%v", err)
	}
	return c.writeRole(ctx, caller, key, role, rev, f.Etag, audit.KindRoleUpdate, iam.PermRolesUpdate)
}

// DeleteRole soft-deletes role id.
func (c *Core) DeleteRole(ctx context.Context, caller *Caller, project, id, etag string) (*iam.Role, int64, error) {
	role, rev, key, err := c.readRole(ctx, caller, project, id, iam.PermRolesDelete)
	if err != nil {
		return nil, 0, err
	}
	if role.Deleted {
		return nil, 0, FailedPrecondition("You can't delete role %s as it is already deleted.", role.Name)
	}
	role.Deleted = true
	return c.writeRole(ctx, caller, key, role, rev, etag, audit.KindRoleDelete, iam.PermRolesDelete)
}

// UndeleteRole restores a soft-deleted role id.
func (c *Core) UndeleteRole(ctx context.Context, caller *Caller, project, id, etag string) (*iam.Role, int64, error) {
	role, rev, key, err := c.readRole(ctx, caller, project, id, iam.PermRolesUndelete)
	if err != nil {
		return nil, 0, err
	}
	if !role.Deleted {
		return nil, 0, FailedPrecondition("You can't undelete role %s as it is not deleted.", role.Name)
	}
	role.Deleted = false
	return c.writeRole(ctx, caller, key, role, rev, etag, audit.KindRoleUndelete, iam.PermRolesUndelete)
}

// writeRole stores a changed role, compare-and-swap on the etag the caller
// gave (none: the revision read).
func (c *Core) writeRole(ctx context.Context, caller *Caller, key string, role *iam.Role, rev int64, etag, kind, perm string) (*iam.Role, int64, error) {
	stale := func() error {
		return Aborted("The role %s was changed concurrently. Read it again and retry.", role.Name)
	}
	if _, err := etagRevision(etag, rev, stale); err != nil {
		return nil, 0, err
	}
	newRev, err := c.commit(ctx, caller, change{
		writes: []write{{key: key, value: role, expected: rev, conflict: stale}},
		record: audit.Record{Kind: kind, Permission: perm, Resource: role.Name},
	})
	if err != nil {
		return nil, 0, err
	}
	return role, newRev, nil
}
