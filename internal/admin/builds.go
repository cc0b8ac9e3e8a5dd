package admin

// Building from source (`usher run deploy --source`): the core decides who
// may build, then runs the build (package build) and returns the image to
// deploy. The deploy that follows is an ordinary one, with its own checks.
//
// Who may build:
//   - anyone who may create or update the target service or job
//     (run.services.create|update, run.jobs.create|update): a Dockerfile
//     build runs its RUN steps in the Docker engine's build containers,
//     isolated as the containers such a principal may deploy anyway;
//   - a Go build also needs usher.hostExecutables.run on the project, the
//     permission of file:// images: its output is an executable of Usher's
//     host, and the operator's --process-images exemption does not apply
//     (the build makes a new executable, it does not pick an allowed one).
// The first check runs before the upload is read; the second once the
// source's language is known, before anything runs.

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/build"
	"github.com/usher-run/usher/internal/iam"
)

// KindSourceBuild is the audit kind of a build from source.
const KindSourceBuild = "source.build"

// SourceBuild is one build from source for a service or job.
type SourceBuild struct {
	Project, Region string
	// Kind is "services" or "jobs".
	Kind, Name string
}

// AuthorizeSourceBuild checks that caller may write the build's target,
// and returns it with the project's ID and the region resolved.
func (c *Core) AuthorizeSourceBuild(ctx context.Context, caller *Caller, b SourceBuild) (SourceBuild, error) {
	if c.cfg.Builder == nil {
		return b, FailedPrecondition("This server does not build from source.")
	}
	var create, update, resource string
	switch b.Kind {
	case "services":
		p, region, err := c.serviceScope(ctx, b.Project, b.Region, b.Name)
		if err != nil {
			return b, err
		}
		b.Project, b.Region = p.ProjectID, region
		create, update, resource = iam.PermServicesCreate, iam.PermServicesUpdate, apis.ServiceResource(b.Project, b.Region, b.Name)
	case "jobs":
		p, region, err := c.jobScope(ctx, b.Project, b.Region, b.Name)
		if err != nil {
			return b, err
		}
		b.Project, b.Region = p.ProjectID, region
		create, update, resource = iam.PermJobsCreate, iam.PermJobsUpdate, apis.JobResource(b.Project, b.Region, b.Name)
	default:
		return b, InvalidArgument("a source build is for services or jobs, not %q", b.Kind)
	}
	levels, err := c.buildTargetLevels(ctx, b)
	if err != nil {
		return b, err
	}
	if !c.holds(caller, create, levels...) && !c.holds(caller, update, levels...) {
		return b, PermissionDenied(create, resource)
	}
	return b, nil
}

func (c *Core) buildTargetLevels(ctx context.Context, b SourceBuild) ([]iam.Level, error) {
	if b.Kind == "jobs" {
		return c.jobLevels(ctx, b.Project, b.Region, b.Name)
	}
	return c.serviceLevels(ctx, b.Project, b.Region, b.Name)
}

// BuildSource receives src (a gzipped tar of the source directory) for an
// authorized build (AuthorizeSourceBuild), checks what its language needs,
// builds it with the tools' output going to out, and returns the image.
// started is called once the build is allowed to run, before any output.
func (c *Core) BuildSource(ctx context.Context, caller *Caller, b SourceBuild, src io.Reader, started func(language string), out io.Writer) (string, error) {
	release, ok := c.cfg.Builder.TryAcquire()
	if !ok {
		return "", Errorf(429, "RESOURCE_EXHAUSTED", "Too many builds are running on this server; retry in a minute.")
	}
	defer release()
	s, err := c.cfg.Builder.Open(src)
	if errors.Is(err, build.ErrInvalidSource) {
		return "", InvalidArgument("%s", strings.TrimPrefix(err.Error(), build.ErrInvalidSource.Error()+": "))
	}
	if err != nil {
		return "", err
	}
	defer s.Close()
	if s.Language.Host {
		proj, err := c.projectLevel(ctx, b.Project)
		if err != nil {
			return "", err
		}
		if !c.holds(caller, iam.PermHostExecutablesRun, proj) {
			return "", Errorf(403, "PERMISSION_DENIED", "Permission '%s' denied on resource '%s': building a %s source makes an executable of Usher's host, which needs roles/run.admin or roles/owner; add a Dockerfile to build a container image instead.",
				iam.PermHostExecutablesRun, apis.ProjectResource(b.Project), s.Language.Name)
		}
	}
	started(s.Language.Name)
	image, err := s.Build(ctx, c.cfg.Builder, build.Target{Project: b.Project, Region: b.Region, Kind: b.Kind, Name: b.Name}, out)
	if err != nil {
		return "", FailedPrecondition("Build failed: %v", err)
	}
	resource := apis.ServiceResource(b.Project, b.Region, b.Name)
	if b.Kind == "jobs" {
		resource = apis.JobResource(b.Project, b.Region, b.Name)
	}
	perm := iam.PermServicesCreate
	if b.Kind == "jobs" {
		perm = iam.PermJobsCreate
	}
	c.record(ctx, caller, audit.Record{Kind: KindSourceBuild, Permission: perm, Resource: resource, Details: &audit.Details{Image: image}})
	return image, nil
}
