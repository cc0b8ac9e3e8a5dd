package admin

// What a service write may grant beyond the service itself, and the
// permission Google checks for each (Usher adds one of its own):
//
//   - Running as a service account: the revision's instances get that
//     account's tokens from the metadata server, so deploying as an account
//     is acting as it. Google checks iam.serviceAccounts.actAs on the
//     account (roles/iam.serviceAccountUser) for every deploy that makes a
//     revision, and so does Usher: on create, and on every update that
//     makes a new revision or changes the account. The account must be one
//     of Usher's, exist and be enabled.
//   - Turning the invoker check off (run.googleapis.com/invoker-iam-disabled,
//     v2 invokerIamDisabled) makes the service public, as granting allUsers
//     does: it needs run.services.setIamPolicy on the service.
//   - A file:// image runs an executable of the host, as Usher's instance
//     user: that is host code execution. It needs usher.hostExecutables.run
//     on the project (roles/owner and roles/run.admin hold it, run.developer
//     does not), unless the executable lies under a directory the operator
//     listed with --process-images.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// checkServiceAuthority checks what writing s (over old, nil on create)
// would let caller do beyond run.services.create or update.
func (c *Core) checkServiceAuthority(ctx context.Context, caller *Caller, project, region string, s, old *apis.Service) error {
	newRevision := old == nil || s.Metadata.Generation != old.Metadata.Generation
	account := s.Spec.Template.Spec.ServiceAccountName
	if newRevision || account != old.Spec.Template.Spec.ServiceAccountName {
		if err := c.checkActAs(ctx, caller, account); err != nil {
			return err
		}
	}
	if s.InvokerIAMDisabled() && (old == nil || !old.InvokerIAMDisabled()) {
		levels, err := c.serviceLevels(ctx, project, region, s.Metadata.Name)
		if err != nil {
			return err
		}
		if !c.holds(caller, iam.PermServicesSetIamPolicy, levels...) {
			return Errorf(403, "PERMISSION_DENIED", "Permission '%s' denied on resource '%s': disabling the invoker IAM check makes the service public, which needs the permission to set its IAM policy (roles/run.admin or roles/owner).",
				iam.PermServicesSetIamPolicy, apis.ServiceResource(project, region, s.Metadata.Name))
		}
	}
	if image := s.Spec.Template.Spec.Containers[0].Image; newRevision && runtime.IsFileImage(image) {
		if err := c.checkHostExecutable(ctx, caller, project, image); err != nil {
			return err
		}
	}
	return nil
}

// checkActAs checks that caller may act as the service account email: it
// must be one of Usher's service accounts, exist, be enabled, and caller
// must hold iam.serviceAccounts.actAs on it (through its project's policy
// or its own).
func (c *Core) checkActAs(ctx context.Context, caller *Caller, email string) error {
	email = strings.ToLower(email)
	resource := "projects/-/serviceAccounts/" + email
	if iam.NewPrincipal(email).Kind != iam.ServiceAccount {
		return InvalidArgument("%s is not a service account; a service runs as a service account (NAME@PROJECT.iam.gserviceaccount.com).", email)
	}
	project, err := c.accountProject(ctx, email)
	if err != nil {
		return err
	}
	if project == "" {
		return InvalidArgument("Service account %s does not exist in any of this server's projects; create it with `usher iam service-accounts create`.", email)
	}
	var sa apis.ServiceAccount
	_, err = state.Get(ctx, c.cfg.Store, state.ServiceAccountKey(project, email), &sa)
	if errors.Is(err, store.ErrNotFound) {
		// Whether it exists is told only to those who may act as it.
		t, terr := c.accountLevels(ctx, project, email)
		if terr != nil {
			return terr
		}
		if aerr := c.authorize(caller, iam.PermSAActAs, resource, t...); aerr != nil {
			return aerr
		}
		return InvalidArgument("Service account %s does not exist.", email)
	}
	if err != nil {
		return err
	}
	levels, err := c.accountLevels(ctx, project, email)
	if err != nil {
		return err
	}
	if !c.holds(caller, iam.PermSAActAs, levels...) {
		return Errorf(403, "PERMISSION_DENIED", "Permission '%s' denied on service account %s (or it may not exist): running a service as it needs the Service Account User role (roles/iam.serviceAccountUser) on it or its project.",
			iam.PermSAActAs, email)
	}
	if sa.Disabled {
		return FailedPrecondition("Service account %s is disabled; enable it (usher iam service-accounts enable) or choose another.", email)
	}
	return nil
}

// accountLevels are the policies in force on a service account: its
// project's, then its own.
func (c *Core) accountLevels(ctx context.Context, project, email string) ([]iam.Level, error) {
	proj, err := c.projectLevel(ctx, project)
	if err != nil {
		return nil, err
	}
	own, _, err := c.readPolicy(ctx, state.ServiceAccountPolicyKey(project, email))
	if err != nil {
		return nil, err
	}
	return []iam.Level{proj, {Resource: apis.ServiceAccountResource(project, email), Policy: own}}, nil
}

// accountProject is the project of Usher's in use that owns the service
// account email ("" when none does, or it is being deleted): NAME@PROJECT.iam.gserviceaccount.com, or a
// project's default PROJECTNUMBER-compute@developer.gserviceaccount.com.
func (c *Core) accountProject(ctx context.Context, email string) (string, error) {
	if project := apis.ServiceAccountProject(email); project != "" {
		var p state.Project
		_, err := state.Get(ctx, c.cfg.Store, state.ProjectKey(project), &p)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Active()) {
			// A project being deleted holds no usable account: none of its
			// accounts can be run as or newly granted.
			return "", nil
		}
		return project, err
	}
	if !strings.HasSuffix(email, "-compute@developer.gserviceaccount.com") {
		return "", nil
	}
	projects, _, err := state.List[state.Project](ctx, c.cfg.Store, state.ProjectsPrefix)
	if err != nil {
		return "", err
	}
	for _, p := range projects {
		if p.Active() && apis.DefaultServiceAccount(p.ProjectID) == email {
			return p.ProjectID, nil
		}
	}
	return "", nil
}

// checkHostExecutable checks that caller may run the host executable a
// file:// image names.
func (c *Core) checkHostExecutable(ctx context.Context, caller *Caller, project, image string) error {
	if c.underProcessImageDirs(strings.TrimPrefix(image, "file://")) {
		return nil
	}
	proj, err := c.projectLevel(ctx, project)
	if err != nil {
		return err
	}
	if !c.holds(caller, iam.PermHostExecutablesRun, proj) {
		return Errorf(403, "PERMISSION_DENIED", "Permission '%s' denied on resource '%s': a file:// image runs an executable of Usher's host, which needs roles/run.admin or roles/owner, unless it lies under a directory the operator allows (usher serve --process-images DIR).",
			iam.PermHostExecutablesRun, apis.ProjectResource(project))
	}
	return nil
}

// underProcessImageDirs reports whether path, with symbolic links resolved,
// lies inside one of the operator's process image directories.
func (c *Core) underProcessImageDirs(path string) bool {
	if len(c.cfg.ProcessImageDirs) == 0 || !filepath.IsAbs(path) {
		return false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	for _, dir := range c.cfg.ProcessImageDirs {
		d, err := filepath.EvalSymlinks(dir)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(d, real); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}
