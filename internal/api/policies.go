package api

import (
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/iam"
)

// splitMethod splits "name:method" (a custom method on a resource).
func splitMethod(segment string) (name, method string) {
	name, method, _ = strings.Cut(segment, ":")
	return name, method
}

func (a *API) serviceGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	switch method {
	case "":
		return a.getService(w, r, c)
	case "getIamPolicy":
		return a.policyMethod(w, r, c, method, a.serviceTarget(r, name))
	case "logs":
		return a.readLogs(w, r, c, name)
	case "metrics":
		return a.readMetrics(w, r, c, name)
	}
	return notFound("no method %q on services", method)
}

func (a *API) servicePolicyMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	return a.policyMethod(w, r, c, method, a.serviceTarget(r, name))
}

// serviceTarget resolves the service the path names as a policy target.
func (a *API) serviceTarget(r *http.Request, name string) func() (*admin.Target, error) {
	return func() (*admin.Target, error) {
		project, region := pathScope(r)
		return a.cfg.Core.ServiceTarget(r.Context(), project, region, name)
	}
}

func (a *API) projectGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("project"))
	if method == "" {
		return a.getProjectV1(w, r, c, id) // projects.go
	}
	return a.projectPolicyMethod(w, r, c)
}

func (a *API) projectPolicyMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("project"))
	switch method {
	case "undelete":
		return a.undeleteProject(w, r, c, id, false) // projects.go
	case "getAncestry":
		return a.getAncestry(w, r, c, id)
	}
	return a.policyMethod(w, r, c, method, func() (*admin.Target, error) {
		return a.cfg.Core.ProjectTarget(r.Context(), id)
	})
}

type setPolicyRequest struct {
	Policy     *iam.Policy `json:"policy"`
	UpdateMask string      `json:"updateMask"`
}

// policyMethod serves getIamPolicy, setIamPolicy and testIamPermissions on
// the target target() resolves.
func (a *API) policyMethod(w http.ResponseWriter, r *http.Request, c *caller, method string, target func() (*admin.Target, error)) error {
	switch method {
	case "getIamPolicy", "setIamPolicy", "testIamPermissions":
	default:
		return notFound("no method %q here", method)
	}
	t, err := target()
	if err != nil {
		return err
	}
	ctx := r.Context()
	switch method {
	case "getIamPolicy":
		p, err := a.cfg.Core.GetPolicy(ctx, c, t)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	case "setIamPolicy":
		var req setPolicyRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		p, err := a.cfg.Core.SetPolicy(ctx, c, t, req.Policy, req.UpdateMask)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	}
	var req struct {
		Permissions []string `json:"permissions"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	held, err := a.cfg.Core.TestPermissions(ctx, c, t, req.Permissions)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"permissions": held})
}

// iapPolicyMethod serves the IAP API's IAM methods on a Cloud Run service.
func (a *API) iapPolicyMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	region, ok := strings.CutPrefix(r.PathValue("web"), "cloud_run-")
	if !ok {
		return notFound("IAP resource %q is not a Cloud Run one (iap_web/cloud_run-REGION)", r.PathValue("web"))
	}
	name, method := splitMethod(r.PathValue("name"))
	return a.policyMethod(w, r, c, method, func() (*admin.Target, error) {
		return a.cfg.Core.ServiceTarget(r.Context(), r.PathValue("ns"), region, name)
	})
}
