package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// AllRegions is the region of a list across every region ("-", as gcloud
// sends it).
const AllRegions = "-"

// Project finds a project in use by ID or number (gcloud may send either):
// a project being deleted is not found, so nothing in it can be read,
// changed or used.
func (c *Core) Project(ctx context.Context, idOrNumber string) (state.Project, error) {
	p, _, err := c.projectRecord(ctx, idOrNumber)
	if err == nil && !p.Active() {
		return p, NotFound("Project '%s' has been deleted (%s); `gcloud projects undelete %s` restores it.", p.ProjectID, p.LifecycleState, p.ProjectID)
	}
	return p, err
}

// Region checks a region named by a request; "" is the default region, and
// AllRegions is allowed only where list says so.
func (c *Core) Region(region string, list bool) (string, error) {
	switch {
	case region == "":
		return c.cfg.DefaultRegion, nil
	case region == AllRegions && list:
		return region, nil
	case c.regions.Valid(region):
		return region, nil
	}
	return "", InvalidArgument("Region '%s' is not a region Usher serves; use one of Cloud Run's regions, such as %s.", region, c.cfg.DefaultRegion)
}

// projectLevel is the project's policy and custom roles, the level every
// resource of the project inherits from.
func (c *Core) projectLevel(ctx context.Context, project string) (iam.Level, error) {
	pol, _, err := c.readPolicy(ctx, state.ProjectPolicyKey(project))
	if err != nil {
		return iam.Level{}, err
	}
	custom, err := c.customRoles(ctx, project)
	return iam.Level{Resource: apis.ProjectResource(project), Policy: pol, Roles: custom}, err
}

// serviceLevels are the policies in force on a service: its project's, then its own.
func (c *Core) serviceLevels(ctx context.Context, project, region, name string) ([]iam.Level, error) {
	proj, err := c.projectLevel(ctx, project)
	if err != nil {
		return nil, err
	}
	pol, _, err := c.readPolicy(ctx, state.ServicePolicyKey(project, region, name))
	if err != nil {
		return nil, err
	}
	return []iam.Level{proj, {Resource: apis.ServiceResource(project, region, name), Policy: pol}}, nil
}

// AuthorizeProject checks that caller holds perm on project (by ID or
// number) and returns the project.
func (c *Core) AuthorizeProject(ctx context.Context, caller *Caller, project, perm string) (state.Project, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return p, err
	}
	proj, err := c.projectLevel(ctx, p.ProjectID)
	if err != nil {
		return p, err
	}
	return p, c.authorize(caller, perm, proj.Resource, proj)
}

// authorizeService checks that caller holds perm on a service (which need
// not exist: then its project's policy decides).
func (c *Core) authorizeService(ctx context.Context, caller *Caller, perm, project, region, name string) error {
	levels, err := c.serviceLevels(ctx, project, region, name)
	if err != nil {
		return err
	}
	return c.authorize(caller, perm, "namespaces/"+project+"/services/"+name, levels...)
}

// AuthorizeService checks that caller holds perm on a service (which need
// not exist) and returns its project ID and region.
func (c *Core) AuthorizeService(ctx context.Context, caller *Caller, perm, project, region, name string) (string, string, error) {
	p, region, err := c.serviceScope(ctx, project, region, name)
	if err != nil {
		return "", "", err
	}
	return p.ProjectID, region, c.authorizeService(ctx, caller, perm, p.ProjectID, region, name)
}

// readPolicy returns the policy at key (nil if none) and its revision.
func (c *Core) readPolicy(ctx context.Context, key string) (*iam.Policy, int64, error) {
	var p iam.Policy
	rev, err := state.Get(ctx, c.cfg.Store, key, &p)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return &p, rev, nil
}

// customRoles is the catalogue of project's custom roles (nil: none).
func (c *Core) customRoles(ctx context.Context, project string) (*iam.Roles, error) {
	roles, _, err := state.List[iam.Role](ctx, c.cfg.Store, state.ProjectRolesPrefix(project))
	if err != nil || len(roles) == 0 {
		return nil, err
	}
	ptrs := make([]*iam.Role, len(roles))
	for i := range roles {
		ptrs[i] = &roles[i]
	}
	return iam.NewRoles(ptrs...), nil
}

// CustomRoles is the catalogue of a project's custom roles (nil: none).
func (c *Core) CustomRoles(ctx context.Context, project string) (*iam.Roles, error) {
	return c.customRoles(ctx, project)
}

// decodeEntries decodes store entries as T.
func decodeEntries[T any](entries []store.Entry) ([]T, error) {
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func revisionString(rev int64) string { return strconv.FormatInt(rev, 10) }

// AuthorizeImpersonation checks that caller may sign in to the console as
// target, and records it. Acting as target reaches every project target
// can touch, so caller needs resourcemanager.projects.setIamPolicy (the
// authority to grant target anything) on every project of this server.
func (c *Core) AuthorizeImpersonation(ctx context.Context, caller *Caller, target iam.Principal) error {
	projects, _, err := state.List[state.Project](ctx, c.cfg.Store, state.ProjectsPrefix)
	if err != nil {
		return err
	}
	for _, p := range projects {
		proj, err := c.projectLevel(ctx, p.ProjectID)
		if err != nil {
			return err
		}
		if !c.holds(caller, iam.PermProjectsSetIamPolicy, proj) {
			return Errorf(http.StatusForbidden, "PERMISSION_DENIED", "Signing in to the console as %s needs permission '%s' on every project of this server; %s lacks it on project '%s'.",
				target.Member(), iam.PermProjectsSetIamPolicy, caller.Principal.Member(), p.ProjectID)
		}
	}
	for _, p := range projects { // each project's trail shows it
		c.record(ctx, caller, audit.Record{Kind: audit.KindConsoleImpersonate, Permission: iam.PermProjectsSetIamPolicy,
			Resource: apis.ProjectResource(p.ProjectID), Details: &audit.Details{Email: target.Email}})
	}
	return nil
}
