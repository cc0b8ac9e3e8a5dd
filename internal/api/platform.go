package api

import (
	"net/http"
	"slices"

	"github.com/usher-run/usher/internal/iam"
)

// enabledAPIs are the Google APIs Usher serves; Service Usage reports them
// enabled in every project so clients never try to enable them.
var enabledAPIs = []string{
	"cloudresourcemanager.googleapis.com",
	"iam.googleapis.com",
	"iamcredentials.googleapis.com",
	"run.googleapis.com",
	"serviceusage.googleapis.com",
}

func (a *API) getServiceUsage(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.cfg.Core.AuthorizeProject(r.Context(), c, r.PathValue("project"), iam.PermServiceUsageGet)
	if err != nil {
		return err
	}
	name := r.PathValue("api")
	state := "DISABLED"
	if slices.Contains(enabledAPIs, name) {
		state = "ENABLED"
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"name":   "projects/" + p.ProjectNumber + "/services/" + name,
		"parent": "projects/" + p.ProjectNumber,
		"config": map[string]string{"name": name},
		"state":  state,
	})
}

// batchEnable answers services:batchEnable: what Usher serves is always on,
// and it cannot turn on anything else.
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
	for _, s := range req.ServiceIDs {
		if !slices.Contains(enabledAPIs, s) {
			return newError(http.StatusBadRequest, "FAILED_PRECONDITION", "Usher does not serve %s; it serves %v", s, enabledAPIs)
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"name": "operations/noop.DONE_OPERATION", "done": true,
		"response": map[string]any{"@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"}})
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
