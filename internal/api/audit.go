package api

// The audit trail (package audit) from the API's side: every admin write is
// recorded by a one-line call to a.audit once it has succeeded, and
//
//	GET /v1/projects/{project}/auditLogs
//	    ?service=S&region=R&principal=P&kind=K&startTime=T&endTime=T
//	    &pageSize=N&pageToken=TOKEN
//
// answers {"entries": [record…], "nextPageToken": "…"}, newest first. All
// parameters are optional: service and region match exactly; principal is
// a member ("user:x@y"), a bare email (any member type) or "anonymous";
// kind matches exactly or by dotted prefix ("service" for service.*);
// startTime and endTime are RFC 3339, inclusive; pageSize defaults to 100
// (at most 1000). Reading needs logging.logEntries.list on the project
// (roles/owner, roles/editor, roles/viewer, roles/run.viewer).

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
)

// Auditor keeps the audit trail (an *audit.Trail).
type Auditor interface {
	// Record writes one record durably; failures are the Auditor's to log.
	Record(ctx context.Context, r audit.Record) error
	Read(ctx context.Context, q audit.Query) (audit.Page, error)
	// Flush writes what is queued (refused requests), so a read sees it.
	Flush(ctx context.Context) error
}

var _ Auditor = (*audit.Trail)(nil)

func (a *API) routesAudit() {
	a.mux.Handle("GET /v1/projects/{project}/auditLogs", a.authed(a.listAuditLogs))
	a.mux.Handle("POST /v1/iam:troubleshoot", a.authed(a.troubleshoot))
}

// audit records a write c made on resource (an IAM resource name), needing
// perm, after it succeeded. Best effort: the write has happened, so a
// failure to record it is logged by the Auditor and not returned.
func (a *API) audit(ctx context.Context, c *caller, kind, perm, resource string, d *audit.Details) {
	if a.cfg.Audit == nil {
		return
	}
	project, region, service := splitResource(resource)
	a.cfg.Audit.Record(ctx, audit.Record{
		Kind: kind, Principal: c.Principal.Member(), Project: project, Region: region, Service: service,
		Resource: resource, Permission: perm, Status: http.StatusOK, Details: d,
	})
}

// auditRole records a custom role write; what is "created", "updated",
// "deleted" or "undeleted" (roles.go's words).
func (a *API) auditRole(ctx context.Context, c *caller, what, role string) {
	kind, perm := audit.KindRoleUpdate, iam.PermRolesUpdate
	switch what {
	case "created":
		kind, perm = audit.KindRoleCreate, iam.PermRolesCreate
	case "deleted":
		kind, perm = audit.KindRoleDelete, iam.PermRolesDelete
	case "undeleted":
		kind, perm = audit.KindRoleUndelete, iam.PermRolesUndelete
	}
	a.audit(ctx, c, kind, perm, role, nil)
}

// splitResource reads projects/P[/locations/R/services/S] (other resources
// of a project give only P).
func splitResource(resource string) (project, region, service string) {
	parts := strings.Split(resource, "/")
	if len(parts) >= 2 && parts[0] == "projects" {
		project = parts[1]
	}
	if len(parts) == 6 && parts[2] == "locations" && parts[4] == "services" {
		region, service = parts[3], parts[5]
	}
	return project, region, service
}

// serviceWriteKind is the kind of a service write: a create when there was
// no old service.
func serviceWriteKind(old *apis.Service) string {
	if old == nil {
		return audit.KindServiceCreate
	}
	return audit.KindServiceReplace
}

// serviceDetails describes a written service.
func serviceDetails(s *apis.Service) *audit.Details {
	d := &audit.Details{Generation: s.Metadata.Generation}
	if cs := s.Spec.Template.Spec.Containers; len(cs) > 0 {
		d.Image = cs[0].Image
	}
	return d
}

func (a *API) listAuditLogs(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermLogEntriesList)
	if err != nil {
		return err
	}
	if a.cfg.Audit == nil {
		return newError(http.StatusNotImplemented, "UNIMPLEMENTED", "This server keeps no audit trail.")
	}
	v := r.URL.Query()
	q := audit.Query{
		Project: p.ProjectID, Region: v.Get("region"), Service: v.Get("service"),
		Principal: v.Get("principal"), Kind: v.Get("kind"), PageToken: v.Get("pageToken"),
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"startTime", &q.Since}, {"endTime", &q.Until}} {
		if s := v.Get(t.name); s != "" {
			if *t.dst, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return invalidArgument("%s %q is not an RFC 3339 time", t.name, s)
			}
		}
	}
	if s := v.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audit.MaxPageSize {
			return invalidArgument("pageSize must be a whole number from 1 to %d", audit.MaxPageSize)
		}
		q.PageSize = n
	}
	// Refusals are written in batches: write what is queued so that a read
	// right after a refusal sees it.
	fctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	a.cfg.Audit.Flush(fctx)
	cancel()
	page, err := a.cfg.Audit.Read(r.Context(), q)
	if errors.Is(err, audit.ErrBadPageToken) {
		return invalidArgument("pageToken is not one this server issued")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}
