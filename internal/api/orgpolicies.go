package api

// Organization policies of a project in the shape of Google's Org Policy API
// v2 (orgpolicy.googleapis.com), on the API hosts:
//
//	GET    /v2/projects/{p}/constraints                                 the supported constraints
//	GET    /v2/projects/{p}/policies                                    the project's policies
//	POST   /v2/projects/{p}/policies                                    create (409 ALREADY_EXISTS if set)
//	GET    /v2/projects/{p}/policies/{constraint}                       one policy (404 if unset)
//	GET    /v2/projects/{p}/policies/{constraint}:getEffectivePolicy    with the server's file applied
//	PATCH  /v2/projects/{p}/policies/{constraint}                       replace (404 if unset)
//	DELETE /v2/projects/{p}/policies/{constraint}[?etag=E]              lift it
//
// {constraint} is the constraint ID (iam.allowedPolicyMemberDomains). Writes
// need orgpolicy.policy.set on the project (roles/owner); reads need
// resourcemanager.projects.get (Usher's stand-in for orgpolicy.policy.get,
// so anyone who sees the project sees its guardrails). An etag given on
// PATCH or DELETE must be current, else 409 ABORTED. Policies are stored at
// state.OrgPolicyKey and enforced by guardrails.go.

import (
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/orgpolicy"
)

func (a *API) routesOrgPolicies() {
	m := a.mux
	const p = "/v2/projects/{project}"
	m.Handle("GET "+p+"/constraints", a.authed(a.listOrgConstraints))
	m.Handle("GET "+p+"/policies", a.authed(a.listOrgPolicies))
	m.Handle("POST "+p+"/policies", a.authed(a.createOrgPolicy))
	m.Handle("GET "+p+"/policies/{policy}", a.authed(a.getOrgPolicy))
	m.Handle("PATCH "+p+"/policies/{policy}", a.authed(a.updateOrgPolicy))
	m.Handle("DELETE "+p+"/policies/{policy}", a.authed(a.deleteOrgPolicy))
}

// orgPolicyID reads the {policy} path segment: a supported constraint ID
// (or constraints/ID, escaped), with the method after ":" if any.
func orgPolicyID(r *http.Request) (id, method string, err error) {
	seg, method := splitMethod(r.PathValue("policy"))
	id, ok := orgpolicy.ShortName(seg)
	if !ok {
		return "", "", notFound("Constraint %s is not supported; Usher enforces %s.", orgpolicy.ConstraintName(id), orgpolicy.Supported())
	}
	return id, method, nil
}

func (a *API) listOrgConstraints(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.cfg.Core.AuthorizeProject(r.Context(), c, r.PathValue("project"), iam.PermProjectsGet)
	if err != nil {
		return err
	}
	var out []orgpolicy.Constraint
	for _, k := range orgpolicy.Constraints() {
		id, _ := orgpolicy.ShortName(k.Name)
		k.Name = apis.ProjectResource(p.ProjectID) + "/constraints/" + id
		out = append(out, k)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"constraints": out})
}

func (a *API) listOrgPolicies(w http.ResponseWriter, r *http.Request, c *caller) error {
	out, err := a.cfg.Core.ListOrgPolicies(r.Context(), c, r.PathValue("project"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

func (a *API) getOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method, err := orgPolicyID(r)
	if err != nil {
		return err
	}
	var out any
	switch method {
	case "":
		out, err = a.cfg.Core.GetOrgPolicy(r.Context(), c, r.PathValue("project"), id)
	case "getEffectivePolicy":
		out, err = a.cfg.Core.GetEffectiveOrgPolicy(r.Context(), c, r.PathValue("project"), id)
	default:
		return notFound("no method %q on policies", method)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// decodeOrgPolicy reads and validates a policy body for the project the
// path names; pathID is the constraint the path names ("" on create). It
// returns the constraint, the policy to store and the etag the body carried.
func (a *API) decodeOrgPolicy(r *http.Request, pathID string) (string, *orgpolicy.Policy, string, error) {
	project, err := a.cfg.Core.Project(r.Context(), r.PathValue("project"))
	if err != nil {
		return "", nil, "", err
	}
	var in orgpolicy.Policy
	if err := decodeBody(r, &in); err != nil {
		return "", nil, "", err
	}
	resource := apis.ProjectResource(project.ProjectID)
	if in.Name == "" && pathID != "" {
		in.Name = orgpolicy.PolicyName(resource, pathID)
	}
	if in.Name == "" {
		return "", nil, "", invalidArgument("policy.name is required: projects/%s/policies/CONSTRAINT", project.ProjectID)
	}
	res, id, err := orgpolicy.ParseName(in.Name)
	if err != nil {
		return "", nil, "", invalidArgument("%v", err)
	}
	if res != "" && res != resource && res != apis.ProjectResource(project.ProjectNumber) {
		return "", nil, "", invalidArgument("policy.name %q does not name project %q in the request", in.Name, project.ProjectID)
	}
	if pathID != "" && id != pathID {
		return "", nil, "", invalidArgument("policy.name %q does not match the constraint %q in the path", in.Name, pathID)
	}
	etag := in.Etag
	if etag == "" && in.Spec != nil {
		etag = in.Spec.Etag
	}
	norm, err := orgpolicy.Normalize(&in, id)
	if err != nil {
		return "", nil, "", invalidArgument("%v", err)
	}
	norm.Name = orgpolicy.PolicyName(resource, id)
	norm.Spec.UpdateTime = a.cfg.Core.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	return id, norm, etag, nil
}

func (a *API) createOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, pol, _, err := a.decodeOrgPolicy(r, "")
	if err != nil {
		return err
	}
	out, err := a.cfg.Core.SetOrgPolicy(r.Context(), c, r.PathValue("project"), id, pol, "", true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) updateOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method, err := orgPolicyID(r)
	if err != nil {
		return err
	}
	if method != "" {
		return notFound("no method %q on policies", method)
	}
	for _, f := range strings.Split(r.URL.Query().Get("updateMask"), ",") {
		switch strings.TrimSpace(f) {
		case "", "*", "spec", "policy.spec":
		default:
			return invalidArgument("updateMask field %q is not supported; use spec", f)
		}
	}
	_, pol, etag, err := a.decodeOrgPolicy(r, id)
	if err != nil {
		return err
	}
	out, err := a.cfg.Core.SetOrgPolicy(r.Context(), c, r.PathValue("project"), id, pol, etag, false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) deleteOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method, err := orgPolicyID(r)
	if err != nil {
		return err
	}
	if method != "" {
		return notFound("no method %q on policies", method)
	}
	if err := a.cfg.Core.DeleteOrgPolicy(r.Context(), c, r.PathValue("project"), id, r.URL.Query().Get("etag")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{})
}
