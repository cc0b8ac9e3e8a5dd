package console

import (
	"context"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/history"
	"github.com/usher-run/usher/internal/iam"
)

// backend is the admin core as one signed-in principal sees it: every read
// and write is the same operation the API runs, with the same permission
// checks, as that principal. It is made per request and holds that
// request's context.
type backend struct {
	core   *admin.Core
	caller *admin.Caller
	ctx    context.Context
}

// apiError is an admin error, shown on the console's error pages.
type apiError = admin.Error

// isAborted reports whether err is the answer to a stale etag.
func isAborted(err error) bool {
	e, ok := err.(*apiError)
	return ok && e.Status == "ABORTED"
}

func (b *backend) listServices(project string) ([]apis.Service, error) {
	l, err := b.core.ListServices(b.ctx, b.caller, project, admin.AllRegions)
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (b *backend) getService(project, region, name string) (*apis.Service, error) {
	s, _, err := b.core.GetService(b.ctx, b.caller, project, region, name)
	return s, err
}

// listRevisions lists the revisions of one service, or of every service in
// the project when service is "" (region "-").
func (b *backend) listRevisions(project, region, service string) ([]apis.Revision, error) {
	revs, _, err := b.core.ListRevisions(b.ctx, b.caller, project, region, service)
	return revs, err
}

// serviceLogs returns up to limit of the newest lines the service's
// instances printed, oldest first.
func (b *backend) serviceLogs(project, region, name string, limit int) ([]LogLine, error) {
	entries, err := b.core.ServiceLogs(b.ctx, b.caller, project, region, name, "", limit)
	if err != nil {
		return nil, err
	}
	lines := make([]LogLine, 0, len(entries))
	for _, e := range entries {
		lines = append(lines, LogLine{Time: e.Time, Revision: e.Revision, Instance: e.Instance, Text: e.Text})
	}
	return lines, nil
}

func (b *backend) serviceMetrics(project, region, name, window string) (history.Result, error) {
	res, err := b.core.ServiceMetrics(b.ctx, b.caller, project, region, name, window)
	return res, err
}

func (b *backend) servicePolicy(project, region, name string) (*iam.Policy, error) {
	t, err := b.core.ServiceTarget(b.ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	p, err := b.core.GetPolicy(b.ctx, b.caller, t)
	return &p, err
}

// setServicePolicy writes p, compare-and-swap on p.Etag (ABORTED when it
// is stale).
func (b *backend) setServicePolicy(project, region, name string, p *iam.Policy) (*iam.Policy, error) {
	t, err := b.core.ServiceTarget(b.ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	out, err := b.core.SetPolicy(b.ctx, b.caller, t, p, "")
	return &out, err
}

func (b *backend) projectPolicy(project string) (*iam.Policy, error) {
	t, err := b.core.ProjectTarget(b.ctx, project)
	if err != nil {
		return nil, err
	}
	p, err := b.core.GetPolicy(b.ctx, b.caller, t)
	return &p, err
}

// servicePermissions returns which of perms the principal holds on a service.
func (b *backend) servicePermissions(project, region, name string, perms ...string) (map[string]bool, error) {
	t, err := b.core.ServiceTarget(b.ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	got, err := b.core.TestPermissions(b.ctx, b.caller, t, perms)
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, p := range got {
		held[p] = true
	}
	return held, nil
}

// troubleshoot explains the principal's access to a service.
func (b *backend) troubleshoot(tuple apis.AccessTuple) (*apis.TroubleshootResponse, error) {
	return b.core.Troubleshoot(b.ctx, b.caller, tuple)
}
