package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
)

// pathScope is the project and region a Cloud Run request addresses: the
// path's, else the regional host's ("REGION-localhost"), else "" (the
// default region).
func pathScope(r *http.Request) (project, region string) {
	region = r.PathValue("region")
	if region == "" {
		region = regionFromHost(r.Host)
	}
	return r.PathValue("ns"), region
}

// listRegion is the region a list addresses: "" or "-" for every region.
func listRegion(region string) string {
	if region == "" {
		return admin.AllRegions
	}
	return region
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	got, err := a.cfg.Core.ListServices(r.Context(), c, project, listRegion(region))
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Service]{APIVersion: apis.ServingAPIVersion, Kind: "ServiceList",
		Metadata: apis.ListMeta{ResourceVersion: strconv.FormatInt(got.Revision, 10)}, Items: []apis.Service{}}
	for _, s := range got.Items {
		if selector(s.Metadata.Labels) {
			list.Items = append(list.Items, s)
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

// labelSelector parses "k=v,k2=v2" (equality only).
func labelSelector(sel string) func(map[string]string) bool {
	if strings.TrimSpace(sel) == "" {
		return func(map[string]string) bool { return true }
	}
	want := map[string]string{}
	for _, part := range strings.Split(sel, ",") {
		k, v, _ := strings.Cut(part, "=")
		want[strings.TrimSpace(k)] = strings.TrimSpace(strings.TrimPrefix(v, "="))
	}
	return func(labels map[string]string) bool {
		for k, v := range want {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
}

func (a *API) getService(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	s, _, err := a.cfg.Core.GetService(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s)
}

// decodeService reads a v1 Service, refusing the fields Usher does not
// implement rather than dropping them (apis.ParseService).
func decodeService(r *http.Request) (*apis.Service, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return &apis.Service{}, nil
	}
	s, err := apis.ParseService(b)
	if err != nil {
		return nil, invalidField(err)
	}
	return s, nil
}

func (a *API) createService(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	s, err := decodeService(r)
	if err != nil {
		return err
	}
	if err := apis.ValidateServiceName(s.Metadata.Name); err != nil {
		return invalidField(err)
	}
	res, err := a.cfg.Core.WriteService(r.Context(), c, admin.ServiceWrite{
		Project: project, Region: region, Name: s.Metadata.Name, Mode: admin.Create,
		Build: func(*apis.Service, int64) (*apis.Service, error) { return s, nil },
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res.Service)
}

func (a *API) replaceService(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.PathValue("name")
	s, err := decodeService(r)
	if err != nil {
		return err
	}
	if s.Metadata.Name != "" && s.Metadata.Name != name {
		return invalidArgument("metadata.name %q does not match the service %q in the path", s.Metadata.Name, name)
	}
	res, err := a.cfg.Core.WriteService(r.Context(), c, admin.ServiceWrite{
		Project: project, Region: region, Name: name, Mode: admin.Replace, ResourceVersion: s.Metadata.ResourceVersion,
		Build: func(*apis.Service, int64) (*apis.Service, error) { return s, nil },
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res.Service)
}

func (a *API) deleteService(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.PathValue("name")
	s, _, err := a.cfg.Core.DeleteService(r.Context(), c, project, region, name, "", false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"apiVersion": "v1", "kind": "Status", "status": "Success",
		"details": map[string]any{"name": name, "group": "serving.knative.dev", "kind": "services", "uid": s.Metadata.UID},
	})
}

func (a *API) listRevisions(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	revs, _, err := a.cfg.Core.ListRevisions(r.Context(), c, project, listRegion(region), "")
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Revision]{APIVersion: apis.ServingAPIVersion, Kind: "RevisionList", Items: []apis.Revision{}}
	for _, rv := range revs {
		if selector(rv.Metadata.Labels) {
			list.Items = append(list.Items, rv)
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (a *API) getRevision(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	rv, _, err := a.cfg.Core.GetRevision(r.Context(), c, project, region, "", r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rv)
}

func (a *API) deleteRevision(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.PathValue("name")
	rv, err := a.cfg.Core.DeleteRevision(r.Context(), c, project, region, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"apiVersion": "v1", "kind": "Status", "status": "Success",
		"details": map[string]any{"name": name, "group": "serving.knative.dev", "kind": "revisions", "uid": rv.Metadata.UID},
	})
}

// readMetrics answers GET …/services/NAME:metrics[?window=1h|6h|1d|7d]:
// the service's recent history, every node's share merged
// (history.Result).
func (a *API) readMetrics(w http.ResponseWriter, r *http.Request, c *caller, name string) error {
	project, region := pathScope(r)
	res, err := a.cfg.Core.ServiceMetrics(r.Context(), c, project, region, name, r.URL.Query().Get("window"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// readLogs answers GET …/services/NAME:logs[?limit=N&revision=R]: the
// newest lines the service's instances printed, oldest first.
func (a *API) readLogs(w http.ResponseWriter, r *http.Request, c *caller, name string) error {
	project, region := pathScope(r)
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalidArgument("limit must be a whole number")
		}
		limit = n
	}
	entries, err := a.cfg.Core.ServiceLogs(r.Context(), c, project, region, name, r.URL.Query().Get("revision"), limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}
