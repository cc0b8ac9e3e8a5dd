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
	"errors"
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/orgpolicy"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
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

// orgPolicyView renders a stored policy at revision rev.
func orgPolicyView(p *orgpolicy.Policy, rev int64) *orgpolicy.Policy {
	out := *p
	out.Etag = iam.Etag(rev)
	if p.Spec != nil {
		spec := *p.Spec
		spec.Etag = out.Etag
		out.Spec = &spec
	}
	return &out
}

// orgPolicyID reads the {policy} path segment: a supported constraint ID
// (or constraints/ID, escaped), with the method after ":" if any.
func orgPolicyID(r *http.Request) (id, method string, err error) {
	seg, method := splitMethod(r.PathValue("policy"))
	id, ok := orgpolicy.ShortName(seg)
	if !ok {
		return "", "", notFound("Constraint %s is not supported; Usher enforces %s and %s.", orgpolicy.ConstraintName(id), orgpolicy.AllowedPolicyMemberDomains, orgpolicy.RequireInvokerIAM)
	}
	return id, method, nil
}

func (a *API) listOrgConstraints(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermProjectsGet)
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
	p, err := a.authorizeProject(r, c, iam.PermProjectsGet)
	if err != nil {
		return err
	}
	stored, revs, err := state.List[orgpolicy.Policy](r.Context(), a.cfg.Store, state.OrgPoliciesPrefix+p.ProjectID+"/")
	if err != nil {
		return err
	}
	out := []*orgpolicy.Policy{}
	for i := range stored {
		out = append(out, orgPolicyView(&stored[i], revs[i]))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

func (a *API) getOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermProjectsGet)
	if err != nil {
		return err
	}
	id, method, err := orgPolicyID(r)
	if err != nil {
		return err
	}
	resource := apis.ProjectResource(p.ProjectID)
	switch method {
	case "":
	case "getEffectivePolicy":
		eff, err := a.effectiveOrgPolicy(r.Context(), p.ProjectID)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, eff.Policy(resource, id))
	default:
		return notFound("no method %q on policies", method)
	}
	var pol orgpolicy.Policy
	rev, err := state.Get(r.Context(), a.cfg.Store, state.OrgPolicyKey(p.ProjectID, id), &pol)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("Policy %s is not set.", orgpolicy.PolicyName(resource, id))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, orgPolicyView(&pol, rev))
}

// decodeOrgPolicy reads and validates a policy body for project; pathID is
// the constraint the path names ("" on create). It returns the policy to
// store and the etag the body carried.
func (a *API) decodeOrgPolicy(r *http.Request, project state.Project, pathID string) (*orgpolicy.Policy, string, error) {
	var in orgpolicy.Policy
	if err := decodeBody(r, &in); err != nil {
		return nil, "", err
	}
	resource := apis.ProjectResource(project.ProjectID)
	if in.Name == "" && pathID != "" {
		in.Name = orgpolicy.PolicyName(resource, pathID)
	}
	if in.Name == "" {
		return nil, "", invalidArgument("policy.name is required: projects/%s/policies/CONSTRAINT", project.ProjectID)
	}
	res, id, err := orgpolicy.ParseName(in.Name)
	if err != nil {
		return nil, "", invalidArgument("%v", err)
	}
	if res != "" && res != resource && res != apis.ProjectResource(project.ProjectNumber) {
		return nil, "", invalidArgument("policy.name %q does not name project %q in the request", in.Name, project.ProjectID)
	}
	if pathID != "" && id != pathID {
		return nil, "", invalidArgument("policy.name %q does not match the constraint %q in the path", in.Name, pathID)
	}
	etag := in.Etag
	if etag == "" && in.Spec != nil {
		etag = in.Spec.Etag
	}
	norm, err := orgpolicy.Normalize(&in, id)
	if err != nil {
		return nil, "", invalidArgument("%v", err)
	}
	norm.Name = orgpolicy.PolicyName(resource, id)
	norm.Spec.UpdateTime = a.cfg.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	return norm, etag, nil
}

func (a *API) createOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermOrgPolicySet)
	if err != nil {
		return err
	}
	pol, _, err := a.decodeOrgPolicy(r, p, "")
	if err != nil {
		return err
	}
	_, id, _ := orgpolicy.ParseName(pol.Name)
	rev, err := state.Put(r.Context(), a.cfg.Store, state.OrgPolicyKey(p.ProjectID, id), pol, store.MustNotExist)
	if errors.Is(err, store.ErrConflict) {
		return alreadyExists("Policy %s already exists; update it (PATCH) instead.", pol.Name)
	}
	if err != nil {
		return err
	}
	return a.orgPolicySet(w, r, c, pol, rev)
}

// orgPolicySet logs and audits a stored org policy and answers with it.
func (a *API) orgPolicySet(w http.ResponseWriter, r *http.Request, c *caller, pol *orgpolicy.Policy, rev int64) error {
	a.cfg.Log.Info("org policy set", "policy", pol.Name, "caller", c.Principal.String())
	a.audit(r.Context(), c, audit.KindOrgPolicySet, iam.PermOrgPolicySet, pol.Name, nil) // audit.go
	return writeJSON(w, http.StatusOK, orgPolicyView(pol, rev))
}

func (a *API) updateOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermOrgPolicySet)
	if err != nil {
		return err
	}
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
	pol, etag, err := a.decodeOrgPolicy(r, p, id)
	if err != nil {
		return err
	}
	key := state.OrgPolicyKey(p.ProjectID, id)
	e, err := a.cfg.Store.Get(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("Policy %s is not set; create it (POST) first.", pol.Name)
	}
	if err != nil {
		return err
	}
	if err := matchEtag(etag, e.Revision); err != nil {
		return err
	}
	rev, err := state.Put(r.Context(), a.cfg.Store, key, pol, e.Revision)
	if errors.Is(err, store.ErrConflict) {
		return aborted(errConcurrentOrgPolicy)
	}
	if err != nil {
		return err
	}
	return a.orgPolicySet(w, r, c, pol, rev)
}

func (a *API) deleteOrgPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermOrgPolicySet)
	if err != nil {
		return err
	}
	id, method, err := orgPolicyID(r)
	if err != nil {
		return err
	}
	if method != "" {
		return notFound("no method %q on policies", method)
	}
	name := orgpolicy.PolicyName(apis.ProjectResource(p.ProjectID), id)
	key := state.OrgPolicyKey(p.ProjectID, id)
	e, err := a.cfg.Store.Get(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("Policy %s is not set.", name)
	}
	if err != nil {
		return err
	}
	if err := matchEtag(r.URL.Query().Get("etag"), e.Revision); err != nil {
		return err
	}
	_, err = a.cfg.Store.Delete(r.Context(), key, e.Revision)
	if errors.Is(err, store.ErrConflict) {
		return aborted(errConcurrentOrgPolicy)
	}
	if err != nil {
		return err
	}
	a.cfg.Log.Info("org policy deleted", "policy", name, "caller", c.Principal.String())
	a.audit(r.Context(), c, audit.KindOrgPolicyDelete, iam.PermOrgPolicySet, name, nil) // audit.go
	return writeJSON(w, http.StatusOK, map[string]any{})
}

const errConcurrentOrgPolicy = "The policy was changed concurrently. Read it again and retry."

// matchEtag checks an optional etag against the stored revision.
func matchEtag(etag string, rev int64) error {
	if etag == "" {
		return nil
	}
	want, err := iam.ParseEtag(etag)
	if err != nil {
		return invalidArgument("etag: %v", err)
	}
	if want != rev {
		return aborted(errConcurrentOrgPolicy)
	}
	return nil
}
