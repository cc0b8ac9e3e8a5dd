package admin

import "context"

// AuthorizeJob checks that caller holds perm on a job (which need not
// exist: then its project's policy decides) and returns the job's project
// ID and region, for callers that read something of the job's themselves
// (the v2 API's operations).
func (c *Core) AuthorizeJob(ctx context.Context, caller *Caller, perm, project, region, name string) (string, string, error) {
	p, region, err := c.jobScope(ctx, project, region, name)
	if err != nil {
		return "", "", err
	}
	if err := c.authorizeJob(ctx, caller, perm, p.ProjectID, region, name); err != nil {
		return "", "", err
	}
	return p.ProjectID, region, nil
}
