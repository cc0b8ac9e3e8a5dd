package admin

import (
	"context"
	"errors"
	"time"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
)

// ReadAuditLog reads a project's audit trail (q's Project is set here), for
// holders of logging.logEntries.list on the project.
func (c *Core) ReadAuditLog(ctx context.Context, caller *Caller, project string, q audit.Query) (audit.Page, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermLogEntriesList)
	if err != nil {
		return audit.Page{}, err
	}
	if c.cfg.Audit == nil {
		return audit.Page{}, Unimplemented("This server keeps no audit trail.")
	}
	q.Project = p.ProjectID
	// Refusals are written in batches: write what is queued so that a read
	// right after a refusal sees it.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c.cfg.Audit.Flush(fctx)
	cancel()
	page, err := c.cfg.Audit.Read(ctx, q)
	if errors.Is(err, audit.ErrBadPageToken) {
		return page, InvalidArgument("pageToken is not one this server issued")
	}
	return page, err
}
