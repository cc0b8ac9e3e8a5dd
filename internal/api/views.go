package api

import (
	"net/http"
	"strconv"

	"github.com/usher-run/usher/internal/apis"
)

// v1's Configurations and Routes: read-only views of the services (one
// each, named as the service), for `gcloud run configurations|routes`.

func (a *API) listConfigurations(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	got, err := a.cfg.Core.ListConfigurations(r.Context(), c, project, listRegion(region))
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Configuration]{APIVersion: apis.ServingAPIVersion, Kind: "ConfigurationList",
		Metadata: apis.ListMeta{ResourceVersion: strconv.FormatInt(got.Revision, 10)}, Items: []apis.Configuration{}}
	for i := range got.Items {
		if v := apis.ConfigurationOf(&got.Items[i]); selector(v.Metadata.Labels) {
			list.Items = append(list.Items, v)
		}
	}
	return writeJSON(w, http.StatusOK, list)
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
	project, region := pathScope(r)
	got, err := a.cfg.Core.ListRoutes(r.Context(), c, project, listRegion(region))
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Route]{APIVersion: apis.ServingAPIVersion, Kind: "RouteList",
		Metadata: apis.ListMeta{ResourceVersion: strconv.FormatInt(got.Revision, 10)}, Items: []apis.Route{}}
	for i := range got.Items {
		if v := apis.RouteOf(&got.Items[i]); selector(v.Metadata.Labels) {
			list.Items = append(list.Items, v)
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (a *API) getRoute(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	s, err := a.cfg.Core.GetRoute(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apis.RouteOf(s))
}
