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
	"net/http"
	"strconv"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
)

func (a *API) routesAudit() {
	a.mux.Handle("GET /v1/projects/{project}/auditLogs", a.authed(a.listAuditLogs))
	a.mux.Handle("POST /v1/iam:troubleshoot", a.authed(a.troubleshoot))
}

func (a *API) listAuditLogs(w http.ResponseWriter, r *http.Request, c *caller) error {
	v := r.URL.Query()
	q := audit.Query{
		Region: v.Get("region"), Service: v.Get("service"),
		Principal: v.Get("principal"), Kind: v.Get("kind"), PageToken: v.Get("pageToken"),
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"startTime", &q.Since}, {"endTime", &q.Until}} {
		if s := v.Get(t.name); s != "" {
			var err error
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
	page, err := a.cfg.Core.ReadAuditLog(r.Context(), c, r.PathValue("project"), q)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

func (a *API) troubleshoot(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		AccessTuple *apis.AccessTuple `json:"accessTuple"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.AccessTuple == nil {
		return invalidArgument("accessTuple is required")
	}
	out, err := a.cfg.Core.Troubleshoot(r.Context(), c, *req.AccessTuple)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
