package api

import (
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/iam"
)

// Service Usage v1: what gcloud services enable|disable|list and the
// quickstarts' first step call (admin/serviceusage.go decides).

func (a *API) getServiceUsage(w http.ResponseWriter, r *http.Request, c *caller) error {
	svc, err := a.cfg.Core.GetAPIService(r.Context(), c, r.PathValue("project"), r.PathValue("api"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, svc)
}

func (a *API) listServiceUsage(w http.ResponseWriter, r *http.Request, c *caller) error {
	filter := strings.TrimSpace(r.URL.Query().Get("filter"))
	st, ok := strings.CutPrefix(filter, "state:")
	if filter != "" && !ok {
		return invalidArgument("filter %q: Usher supports state:ENABLED and state:DISABLED", filter)
	}
	list, err := a.cfg.Core.ListAPIServices(r.Context(), c, r.PathValue("project"), strings.TrimSpace(st))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"services": list})
}

// serviceUsageMethod answers POST services/NAME:enable and :disable.
func (a *API) serviceUsageMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("api"))
	project := r.PathValue("project")
	var svc admin.APIService
	var kind string
	switch method {
	case "enable":
		list, err := a.cfg.Core.EnableAPIServices(r.Context(), c, project, []string{name})
		if err != nil {
			return err
		}
		svc, kind = list[0], "EnableServiceResponse"
	case "disable":
		var err error
		if svc, err = a.cfg.Core.DisableAPIService(r.Context(), c, project, name); err != nil {
			return err
		}
		kind = "DisableServiceResponse"
	default:
		return notFound("no API method at %s %s", r.Method, r.URL.Path)
	}
	return writeJSON(w, http.StatusOK, doneServiceUsageOp(kind, map[string]any{"service": svc}))
}

// batchEnable answers services:batchEnable.
func (a *API) batchEnable(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("method"))
	if id != "services" || method != "batchEnable" {
		return notFound("no API method at %s %s", r.Method, r.URL.Path)
	}
	var req struct {
		ServiceIDs []string `json:"serviceIds"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	list, err := a.cfg.Core.EnableAPIServices(r.Context(), c, r.PathValue("project"), req.ServiceIDs)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doneServiceUsageOp("BatchEnableServicesResponse", map[string]any{"services": list}))
}

// doneServiceUsageOp is a finished long-running operation: Usher's changes
// to Service Usage take effect at once.
func doneServiceUsageOp(kind string, response map[string]any) map[string]any {
	response["@type"] = "type.googleapis.com/google.api.serviceusage.v1." + kind
	return map[string]any{"name": "operations/noop.DONE_OPERATION", "done": true, "response": response}
}

func (a *API) listLocations(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.cfg.Core.AuthorizeProject(r.Context(), c, r.PathValue("project"), iam.PermRunLocationsList)
	if err != nil {
		return err
	}
	locs := []map[string]string{}
	for _, l := range a.cfg.Core.Regions() {
		locs = append(locs, map[string]string{"name": "projects/" + p.ProjectID + "/locations/" + l, "locationId": l, "displayName": l})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"locations": locs})
}
