package admin

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logentries"
	"github.com/usher-run/usher/internal/logfilter"
	"github.com/usher-run/usher/internal/logs"
)

// LogEntries is the Logging API's store (a *logentries.Book).
type LogEntries interface {
	List(ctx context.Context, q logentries.Query) (logentries.Page, error)
	// Lines are a service's newest output lines, as printed.
	Lines(ctx context.Context, project, region, service, revision string, limit int) ([]logs.Entry, error)
	// Flush writes what is queued, so a read sees it.
	Flush(ctx context.Context) error
}

var _ LogEntries = (*logentries.Book)(nil)

// ListLogEntriesRequest is the body of Logging API v2 entries.list.
type ListLogEntriesRequest struct {
	ResourceNames []string `json:"resourceNames"`
	// ProjectIds is the deprecated form of resourceNames.
	ProjectIds []string `json:"projectIds"`
	Filter     string   `json:"filter"`
	OrderBy    string   `json:"orderBy"`
	PageSize   int      `json:"pageSize"`
	PageToken  string   `json:"pageToken"`
}

// ListLogEntries answers entries.list: one project's log entries (its
// services' output and requests, and its admin activity) that match the
// filter, for holders of logging.logEntries.list on the project. A filter
// Usher does not understand is INVALID_ARGUMENT naming what it did not,
// never ignored.
func (c *Core) ListLogEntries(ctx context.Context, caller *Caller, req ListLogEntriesRequest) (logentries.Page, error) {
	names := req.ResourceNames
	for _, id := range req.ProjectIds {
		names = append(names, "projects/"+id)
	}
	if len(names) != 1 {
		return logentries.Page{}, InvalidArgument("resourceNames must name exactly one project (projects/PROJECT_ID); got %d resources", len(names))
	}
	project, ok := strings.CutPrefix(names[0], "projects/")
	if !ok || project == "" || strings.Contains(project, "/") {
		return logentries.Page{}, InvalidArgument("resourceNames: %q is not a project (projects/PROJECT_ID); log buckets, views, folders and organizations are not served", names[0])
	}
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermLogEntriesList)
	if err != nil {
		return logentries.Page{}, err
	}
	if c.cfg.Entries == nil {
		return logentries.Page{}, Unimplemented("This server keeps no log entries.")
	}
	q := logentries.Query{Project: p.ProjectID, PageToken: req.PageToken}
	switch strings.ToLower(strings.Join(strings.Fields(req.OrderBy), " ")) {
	case "", "timestamp", "timestamp asc":
	case "timestamp desc":
		q.Descending = true
	default:
		return logentries.Page{}, InvalidArgument(`orderBy must be "timestamp asc" or "timestamp desc", not %q`, req.OrderBy)
	}
	if req.PageSize < 0 || req.PageSize > logentries.MaxPageSize {
		return logentries.Page{}, InvalidArgument("pageSize must be a whole number from 1 to %d", logentries.MaxPageSize)
	}
	q.PageSize = req.PageSize
	if q.Filter, err = logfilter.Parse(req.Filter); err != nil {
		e := InvalidArgument("Unparseable filter: %v", err)
		e.Violations = []FieldViolation{{Field: "filter", Description: err.Error()}}
		return logentries.Page{}, e
	}
	// Entries and refusals are written in batches: write what is queued so
	// that a read right after a request sees it.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c.cfg.Entries.Flush(fctx)
	if c.cfg.Audit != nil {
		c.cfg.Audit.Flush(fctx)
	}
	cancel()
	page, err := c.cfg.Entries.List(ctx, q)
	if errors.Is(err, logentries.ErrBadPageToken) {
		return page, InvalidArgument("pageToken is not one this server issued")
	}
	return page, err
}
