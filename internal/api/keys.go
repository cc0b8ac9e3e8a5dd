package api

import (
	"net/http"
)

// Service-account keys (IAM v1; admin/keys.go decides).

func (a *API) createServiceAccountKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		PrivateKeyType string `json:"privateKeyType"`
		KeyAlgorithm   string `json:"keyAlgorithm"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.KeyAlgorithm != "" && req.KeyAlgorithm != "KEY_ALG_UNSPECIFIED" && req.KeyAlgorithm != "KEY_ALG_RSA_2048" {
		return invalidArgument("keyAlgorithm %s is not supported by Usher; use KEY_ALG_RSA_2048", req.KeyAlgorithm)
	}
	typ := req.PrivateKeyType
	if typ == "TYPE_UNSPECIFIED" {
		typ = ""
	}
	k, err := a.cfg.Core.CreateServiceAccountKey(r.Context(), c, r.PathValue("project"), r.PathValue("sa"), typ)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store") // it holds the private key
	return writeJSON(w, http.StatusOK, k)
}

func (a *API) listServiceAccountKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	keys, err := a.cfg.Core.ListServiceAccountKeys(r.Context(), c, r.PathValue("project"), r.PathValue("sa"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

func (a *API) deleteServiceAccountKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.Core.DeleteServiceAccountKey(r.Context(), c, r.PathValue("project"), r.PathValue("sa"), r.PathValue("key")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct{}{})
}
