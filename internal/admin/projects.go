package admin

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logfilter"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Resource Manager: projects' lifecycle (gcloud projects create, list,
// describe, update, delete, undelete).
//
// Usher has no organizations or folders. The server's root project (the
// one `usher serve --project` names, created at first start) stands in for
// the organization: resourcemanager.projects.create is checked on its
// policy (its owners, and whoever is granted
// roles/resourcemanager.projectCreator there, create projects), and it
// cannot be deleted. The creator of a project is its owner, as on Google.
//
// A deleted project is DELETE_REQUESTED: its services stop answering
// (their hosts are unknown to the gateway), its service accounts' tokens
// stop working, and every API call that names it is refused as NOT_FOUND,
// until `projects undelete` restores all of it. Usher never purges a
// project, and its ID is never reused (Google keeps IDs reserved too).

// Lifecycle states of a project (Resource Manager v1's lifecycleState).
const (
	ProjectActive          = "ACTIVE"
	ProjectDeleteRequested = "DELETE_REQUESTED"
)

// projectIDPattern is Google's rule for project IDs: 6 to 30 characters,
// lowercase letters, digits and hyphens, starting with a letter and not
// ending with a hyphen.
var projectIDPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)

// projectNamePattern is Google's rule for display names: 4 to 30
// characters of letters, digits, quotes, hyphens, spaces and exclamation
// points.
var projectNamePattern = regexp.MustCompile(`^[\p{L}\p{N}'" !-]{4,30}$`)

// labelKeyPattern and labelValuePattern are Google's label rules.
var (
	labelKeyPattern   = regexp.MustCompile(`^\p{Ll}[\p{Ll}\p{N}_-]{0,62}$`)
	labelValuePattern = regexp.MustCompile(`^[\p{Ll}\p{N}_-]{0,63}$`)
)

// maxLabels is Google's limit of labels per resource.
const maxLabels = 64

// Project quotas, as Google bounds project creation per user. Every
// project costs something on paths that look through all of them (a list,
// a project named by number, the accounts index), and a deleted project
// keeps its record, so both bounds count what exists.
const (
	// MaxProjectsPerCreator bounds the projects one principal has
	// created, deleted ones included (their IDs stay taken).
	MaxProjectsPerCreator = 50
	// MaxProjects bounds the project records of a server, deleted ones
	// included.
	MaxProjects = 2000
)

// ReservedProjectPrefix starts the domains of Google's service agents
// (service-NUMBER@gcp-sa-iap.iam.gserviceaccount.com, the IAP agent Usher
// grants roles/run.invoker). No project may take such an ID: its owner
// could create the agent's account and inherit every grant to it.
const ReservedProjectPrefix = "gcp-sa-"

// ValidateProjectID checks a new project's ID.
func ValidateProjectID(id string) error {
	if !projectIDPattern.MatchString(id) || strings.Contains(id, "google") {
		return invalidFieldf("projectId", "Project ID %q is not valid: use 6 to 30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (and not containing \"google\").", id)
	}
	if strings.HasPrefix(id, ReservedProjectPrefix) {
		return invalidFieldf("projectId", "Project ID %q is not valid: IDs starting with %q name Google's service agents.", id, ReservedProjectPrefix)
	}
	return nil
}

// ProjectSpec is what a caller may set on a project.
type ProjectSpec struct {
	ProjectID   string
	DisplayName string
	Labels      map[string]string
	// Parent is a parent resource ("organizations/N", "folders/N"); Usher
	// has none, so any is refused.
	Parent string
}

func validateProjectSpec(s ProjectSpec) error {
	if s.Parent != "" {
		return invalidFieldf("parent", "Usher has no organizations or folders, so a project cannot have parent %q; leave it out.", s.Parent)
	}
	if s.DisplayName != "" && !projectNamePattern.MatchString(s.DisplayName) {
		return invalidFieldf("name", "Project name %q is not valid: use 4 to 30 letters, digits, quotes, hyphens, spaces or exclamation points.", s.DisplayName)
	}
	if len(s.Labels) > maxLabels {
		return invalidFieldf("labels", "A project has at most %d labels; %d were given.", maxLabels, len(s.Labels))
	}
	for k, v := range s.Labels {
		if !labelKeyPattern.MatchString(k) || !labelValuePattern.MatchString(v) {
			return invalidFieldf("labels", "Label %q=%q is not valid: keys start with a lowercase letter, and keys and values hold up to 63 lowercase letters, digits, underscores or hyphens.", k, v)
		}
	}
	return nil
}

// invalidFieldf is INVALID_ARGUMENT naming field.
func invalidFieldf(field, format string, args ...any) *Error {
	e := InvalidArgument(format, args...)
	e.Violations = []FieldViolation{{Field: field, Description: e.Message}}
	return e
}

// projectRecord reads a project by ID or number, whatever its state.
func (c *Core) projectRecord(ctx context.Context, idOrNumber string) (state.Project, int64, error) {
	var p state.Project
	rev, err := state.Get(ctx, c.cfg.Store, state.ProjectKey(idOrNumber), &p)
	if err == nil {
		return p, rev, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return p, 0, err
	}
	entries, _, err := c.cfg.Store.List(ctx, state.ProjectsPrefix)
	if err != nil {
		return p, 0, err
	}
	projects, err := decodeEntries[state.Project](entries)
	if err != nil {
		return p, 0, err
	}
	for i, q := range projects {
		if q.ProjectNumber == idOrNumber {
			return q, entries[i].Revision, nil
		}
	}
	return p, 0, NotFound("Project '%s' not found.", idOrNumber)
}

// activeProjects are the IDs of the projects in use.
func (c *Core) activeProjects(ctx context.Context) ([]string, error) {
	all, _, err := state.List[state.Project](ctx, c.cfg.Store, state.ProjectsPrefix)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range all {
		if p.Active() {
			ids = append(ids, p.ProjectID)
		}
	}
	return ids, nil
}

// authorizeProjectRecord checks perm on a project in any state.
func (c *Core) authorizeProjectRecord(ctx context.Context, caller *Caller, idOrNumber, perm string) (state.Project, int64, error) {
	p, rev, err := c.projectRecord(ctx, idOrNumber)
	if err != nil {
		return p, 0, err
	}
	lvl, err := c.projectLevel(ctx, p.ProjectID)
	if err != nil {
		return p, 0, err
	}
	return p, rev, c.authorize(caller, perm, lvl.Resource, lvl)
}

// CreateProject creates a project, owned by its creator, with its default
// compute service account, all in one transaction.
func (c *Core) CreateProject(ctx context.Context, caller *Caller, spec ProjectSpec) (state.Project, int64, error) {
	if c.cfg.RootProject == "" {
		return state.Project{}, 0, FailedPrecondition("This server does not create projects.")
	}
	root, err := c.projectLevel(ctx, c.cfg.RootProject)
	if err != nil {
		return state.Project{}, 0, err
	}
	if err := c.authorize(caller, iam.PermProjectsCreate, root.Resource, root); err != nil {
		return state.Project{}, 0, Errorf(403, "PERMISSION_DENIED", "Permission '%s' denied: creating projects needs it on this server's root project '%s' (roles/resourcemanager.projectCreator or roles/owner there).",
			iam.PermProjectsCreate, c.cfg.RootProject)
	}
	if err := ValidateProjectID(spec.ProjectID); err != nil {
		return state.Project{}, 0, err
	}
	if err := validateProjectSpec(spec); err != nil {
		return state.Project{}, 0, err
	}
	inUse := func() error {
		return AlreadyExists("The project ID you specified (%s) is already in use by another project. Please try an alternative ID.", spec.ProjectID)
	}
	if err := c.checkProjectQuota(ctx, caller); err != nil {
		return state.Project{}, 0, err
	}
	if err := c.checkUnclaimedGrants(ctx, spec.ProjectID); err != nil {
		return state.Project{}, 0, err
	}
	number := apis.ProjectNumber(spec.ProjectID)
	if _, _, err := c.projectRecord(ctx, number); err == nil {
		// Numbers derive from IDs; two IDs with one number would make
		// service hosts and default accounts ambiguous.
		return state.Project{}, 0, inUse()
	} else if !IsNotFound(err) {
		return state.Project{}, 0, err
	}
	name := spec.DisplayName
	if name == "" {
		name = spec.ProjectID
	}
	p := state.Project{ProjectID: spec.ProjectID, ProjectNumber: number, Name: name, LifecycleState: ProjectActive,
		CreateTime: c.cfg.Now().UTC().Format(time.RFC3339Nano), Labels: spec.Labels, Creator: caller.Principal.Member()}
	owner := iam.Policy{Version: iam.Version1, Bindings: []iam.Binding{{Role: "roles/owner", Members: []string{caller.Principal.Member()}}}}
	sa := NewServiceAccountRecord(p, apis.DefaultServiceAccount(p.ProjectID), "Default compute service account", "")
	rev, err := c.commit(ctx, caller, change{
		writes: []write{
			{key: state.ProjectKey(p.ProjectID), value: p, expected: store.MustNotExist, conflict: inUse},
			{key: state.ProjectPolicyKey(p.ProjectID), value: owner, expected: store.MustNotExist, conflict: inUse},
			{key: state.ServiceAccountKey(p.ProjectID, sa.Email), value: sa, expected: store.MustNotExist, conflict: inUse},
		},
		record: audit.Record{Kind: audit.KindProjectCreate, Permission: iam.PermProjectsCreate, Resource: apis.ProjectResource(p.ProjectID)},
	})
	return p, rev, err
}

// checkProjectQuota refuses a creation past the quotas: RESOURCE_EXHAUSTED
// (429), as Google answers one.
func (c *Core) checkProjectQuota(ctx context.Context, caller *Caller) error {
	all, _, err := state.List[state.Project](ctx, c.cfg.Store, state.ProjectsPrefix)
	if err != nil {
		return err
	}
	if len(all) >= MaxProjects {
		return Errorf(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "This server holds %d projects (deleted ones included), its limit; no more can be created.", MaxProjects)
	}
	mine := 0
	for _, p := range all {
		if p.Creator == caller.Principal.Member() {
			mine++
		}
	}
	if mine >= MaxProjectsPerCreator {
		return Errorf(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "%s has created %d projects (deleted ones included: Usher never purges one), the limit per creator.", caller.Principal.Member(), MaxProjectsPerCreator)
	}
	return nil
}

// checkUnclaimedGrants refuses a project ID that stored policies already
// name through its service accounts (granted before such grants were
// refused, policies.go): the project's creator would make those accounts
// and inherit grants meant for someone else.
func (c *Core) checkUnclaimedGrants(ctx context.Context, id string) error {
	entries, _, err := c.cfg.Store.List(ctx, "policies/")
	if err != nil {
		return err
	}
	domain, compute := []byte("@"+id+".iam.gserviceaccount.com"), []byte(apis.DefaultServiceAccount(id))
	for _, e := range entries {
		if bytes.Contains(e.Value, domain) || bytes.Contains(e.Value, compute) {
			return FailedPrecondition("Project ID %q cannot be taken: the IAM policy at %s already grants roles to service accounts of a project %q. Choose another ID, or remove those grants first.", id, e.Key, id)
		}
	}
	return nil
}

// GetProject reads a project in any state (resourcemanager.projects.get),
// so its owners see one that is being deleted.
func (c *Core) GetProject(ctx context.Context, caller *Caller, idOrNumber string) (state.Project, int64, error) {
	return c.authorizeProjectRecord(ctx, caller, idOrNumber, iam.PermProjectsGet)
}

// projectFields are the fields a projects list filter may name (Resource
// Manager v1's, and v3's search query names).
var projectFields = logfilter.Fields(func(f string) (logfilter.Kind, bool) {
	switch f {
	case "id", "projectId", "name", "displayName", "parent.id", "parent.type", "parent":
		return logfilter.KindName, true
	case "projectNumber", "lifecycleState", "state":
		return logfilter.KindString, true
	case "createTime":
		return logfilter.KindTime, true
	}
	k, ok := strings.CutPrefix(f, "labels.")
	return logfilter.KindName, ok && k != ""
})

// ProjectListing is one project of a list, with its revision (v3's etag).
type ProjectListing struct {
	Project  state.Project
	Revision int64
}

// ListProjects lists the projects, in any state, on which caller holds
// resourcemanager.projects.get and that match filter, ordered by ID.
func (c *Core) ListProjects(ctx context.Context, caller *Caller, filter string) ([]ProjectListing, error) {
	f, err := logfilter.ParseFields(filter, projectFields)
	if err != nil {
		return nil, invalidFieldf("filter", "%v", err)
	}
	entries, _, err := c.cfg.Store.List(ctx, state.ProjectsPrefix)
	if err != nil {
		return nil, err
	}
	projects, err := decodeEntries[state.Project](entries)
	if err != nil {
		return nil, err
	}
	out := []ProjectListing{}
	for i, p := range projects {
		if !f.Match(projectField(p)) {
			continue
		}
		lvl, err := c.projectLevel(ctx, p.ProjectID)
		if err != nil {
			return nil, err
		}
		if c.holds(caller, iam.PermProjectsGet, lvl) {
			out = append(out, ProjectListing{Project: p, Revision: entries[i].Revision})
		}
	}
	slices.SortFunc(out, func(a, b ProjectListing) int { return strings.Compare(a.Project.ProjectID, b.Project.ProjectID) })
	return out, nil
}

// projectField gives a project's fields to a filter.
func projectField(p state.Project) logfilter.Entry {
	return func(f string) (string, bool) {
		switch f {
		case "id", "projectId":
			return p.ProjectID, true
		case "name", "displayName":
			return p.Name, true
		case "projectNumber":
			return p.ProjectNumber, true
		case "lifecycleState", "state":
			return p.LifecycleState, true
		case "createTime":
			return p.CreateTime, true
		}
		if k, ok := strings.CutPrefix(f, "labels."); ok {
			v, ok := p.Labels[k]
			return v, ok
		}
		return "", false // no parents
	}
}

// UpdateProject sets a project's display name and labels
// (resourcemanager.projects.update); etag, if not 0, must be the project's
// revision.
func (c *Core) UpdateProject(ctx context.Context, caller *Caller, idOrNumber string, displayName string, labels map[string]string, etag int64) (state.Project, int64, error) {
	p, rev, err := c.authorizeProjectRecord(ctx, caller, idOrNumber, iam.PermProjectsUpdate)
	if err != nil {
		return p, 0, err
	}
	if p.LifecycleState != ProjectActive {
		return p, 0, FailedPrecondition("Project '%s' is %s; undelete it before changing it.", p.ProjectID, p.LifecycleState)
	}
	if etag != 0 && etag != rev {
		return p, 0, Aborted("Project '%s' was changed since it was read; read it again and retry.", p.ProjectID)
	}
	if err := validateProjectSpec(ProjectSpec{DisplayName: displayName, Labels: labels}); err != nil {
		return p, 0, err
	}
	if displayName != "" {
		p.Name = displayName
	}
	p.Labels = maps.Clone(labels)
	rev, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.ProjectKey(p.ProjectID), value: p, expected: rev}},
		record: audit.Record{Kind: audit.KindProjectUpdate, Permission: iam.PermProjectsUpdate, Resource: apis.ProjectResource(p.ProjectID)},
	})
	return p, rev, err
}

// DeleteProject marks a project DELETE_REQUESTED
// (resourcemanager.projects.delete): from the next request on, nothing in
// it is served or usable, until it is undeleted. The root project cannot
// be deleted.
func (c *Core) DeleteProject(ctx context.Context, caller *Caller, idOrNumber string) (state.Project, int64, error) {
	return c.setProjectState(ctx, caller, idOrNumber, iam.PermProjectsDelete, ProjectActive, ProjectDeleteRequested, audit.KindProjectDelete)
}

// UndeleteProject restores a DELETE_REQUESTED project
// (resourcemanager.projects.undelete).
func (c *Core) UndeleteProject(ctx context.Context, caller *Caller, idOrNumber string) (state.Project, int64, error) {
	return c.setProjectState(ctx, caller, idOrNumber, iam.PermProjectsUndelete, ProjectDeleteRequested, ProjectActive, audit.KindProjectUndelete)
}

func (c *Core) setProjectState(ctx context.Context, caller *Caller, idOrNumber, perm, from, to, kind string) (state.Project, int64, error) {
	p, rev, err := c.authorizeProjectRecord(ctx, caller, idOrNumber, perm)
	if err != nil {
		return p, 0, err
	}
	if to == ProjectDeleteRequested && p.ProjectID == c.cfg.RootProject {
		return p, 0, FailedPrecondition("Project '%s' is this server's root project (it stands in for the organization) and cannot be deleted.", p.ProjectID)
	}
	if p.LifecycleState != from {
		return p, 0, FailedPrecondition("Project '%s' is %s, not %s.", p.ProjectID, p.LifecycleState, from)
	}
	p.LifecycleState = to
	rev, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.ProjectKey(p.ProjectID), value: p, expected: rev}},
		record: audit.Record{Kind: kind, Permission: perm, Resource: apis.ProjectResource(p.ProjectID)},
	})
	return p, rev, err
}
