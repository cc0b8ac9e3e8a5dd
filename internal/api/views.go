package api

import (
	"net/http"
	"strconv"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
)

// v1's Configurations and Routes: read-only views of the services (one
// each, named as the service), for `gcloud run configurations|routes`.

func (a *API) listConfigurations(w http.ResponseWriter, r *http.Request, c *caller) error {
	return listViews(w, r, "ConfigurationList", func(project, region string) (*admin.ServiceList, error) {
		return a.cfg.Core.ListConfigurations(r.Context(), c, project, region)
	}, apis.ConfigurationOf, func(v apis.Configuration) map[string]string { return v.Metadata.Labels })
}

func (a *API) getConfiguration(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	s, err := a.cfg.Core.GetConfiguration(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apis.ConfigurationOf(s))
}

func (a *API) listRoutes(w http.ResponseWriter, r *http.Request, c *caller) error {
	return listViews(w, r, "RouteList", func(project, region string) (*admin.ServiceList, error) {
		return a.cfg.Core.ListRoutes(r.Context(), c, project, region)
	}, apis.RouteOf, func(v apis.Route) map[string]string { return v.Metadata.Labels })
}

func (a *API) getRoute(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	s, err := a.cfg.Core.GetRoute(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apis.RouteOf(s))
}

// listViews answers a list of one view of every service the scope holds,
// filtered by labelSelector.
func listViews[T any](w http.ResponseWriter, r *http.Request, kind string, list func(project, region string) (*admin.ServiceList, error),
	view func(*apis.Service) T, labels func(T) map[string]string) error {
	project, region := pathScope(r)
	got, err := list(project, listRegion(region))
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	out := apis.List[T]{APIVersion: apis.ServingAPIVersion, Kind: kind,
		Metadata: apis.ListMeta{ResourceVersion: strconv.FormatInt(got.Revision, 10)}, Items: []T{}}
	for i := range got.Items {
		if v := view(&got.Items[i]); selector(labels(v)) {
			out.Items = append(out.Items, v)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
