package api

import (
	"net/http"
	"strconv"

	"github.com/usher-run/usher/internal/admin"
)

// Secret Manager v1 (admin/secrets.go decides). Payloads travel base64 in
// JSON, as Google's do; answers that carry one are never cached.

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request, c *caller) error {
	secrets, err := a.cfg.Core.ListSecrets(r.Context(), c, r.PathValue("project"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"secrets": secrets, "totalSize": len(secrets)})
}

func (a *API) createSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Labels      map[string]string `json:"labels"`
		Replication map[string]any    `json:"replication"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	s, err := a.cfg.Core.CreateSecret(r.Context(), c, r.PathValue("project"), r.URL.Query().Get("secretId"), req.Labels, req.Replication)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s)
}

// secretGetOrPolicy answers GET …/secrets/NAME and GET …/secrets/NAME:getIamPolicy.
func (a *API) secretGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("secret"))
	if method == "" {
		s, err := a.cfg.Core.GetSecret(r.Context(), c, r.PathValue("project"), name)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, s)
	}
	return a.secretMethod(w, r, c)
}

// secretMethod answers POST …/secrets/NAME:addVersion and the IAM methods.
func (a *API) secretMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	project := r.PathValue("project")
	name, method := splitMethod(r.PathValue("secret"))
	if method != "addVersion" {
		return a.policyMethod(w, r, c, method, func() (*admin.Target, error) {
			return a.cfg.Core.SecretTarget(r.Context(), project, name)
		})
	}
	var req struct {
		Payload struct {
			Data       []byte `json:"data"`
			DataCrc32c string `json:"dataCrc32c"`
		} `json:"payload"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	var crc *int64
	if s := req.Payload.DataCrc32c; s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return invalidArgument("payload.dataCrc32c %q is not an integer", s)
		}
		crc = &n
	}
	v, err := a.cfg.Core.AddSecretVersion(r.Context(), c, project, name, req.Payload.Data, crc)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (a *API) deleteSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.Core.DeleteSecret(r.Context(), c, r.PathValue("project"), r.PathValue("secret")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct{}{})
}

func (a *API) listSecretVersions(w http.ResponseWriter, r *http.Request, c *caller) error {
	versions, err := a.cfg.Core.ListSecretVersions(r.Context(), c, r.PathValue("project"), r.PathValue("secret"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"versions": versions, "totalSize": len(versions)})
}

// secretVersionGetOrAccess answers GET …/versions/V and …/versions/V:access.
func (a *API) secretVersionGetOrAccess(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, secret := r.PathValue("project"), r.PathValue("secret")
	version, method := splitMethod(r.PathValue("version"))
	switch method {
	case "":
		v, err := a.cfg.Core.GetSecretVersion(r.Context(), c, project, secret, version)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, v)
	case "access":
		p, err := a.cfg.Core.AccessSecretVersion(r.Context(), c, project, secret, version)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		return writeJSON(w, http.StatusOK, p)
	}
	return notFound("no method %q here", method)
}
