package api

// The Cloud Logging API v2, what `gcloud logging read` and `gcloud run
// services logs read` call (with gcloud's logging endpoint pointed at
// Usher):
//
//	POST /v2/entries:list
//	    {"resourceNames": ["projects/P"], "filter": "…",
//	     "orderBy": "timestamp desc", "pageSize": N, "pageToken": "…"}
//
// answers {"entries": [LogEntry…], "nextPageToken": "…"}: the project's
// services' output (run.googleapis.com/stdout) and requests
// (run.googleapis.com/requests, refusals included) and its admin activity
// (cloudaudit.googleapis.com/activity). Reading needs
// logging.logEntries.list on the project; a filter Usher does not
// understand is 400 INVALID_ARGUMENT naming what it did not.

import (
	"net/http"

	"github.com/usher-run/usher/internal/admin"
)

func (a *API) routesLogging() {
	a.mux.Handle("POST /v2/entries:list", a.authed(a.listLogEntries))
}

func (a *API) listLogEntries(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req admin.ListLogEntriesRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	page, err := a.cfg.Core.ListLogEntries(r.Context(), c, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}
