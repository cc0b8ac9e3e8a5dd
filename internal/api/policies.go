package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// policyTarget is a resource with an IAM policy: where the policy is stored,
// the resources above it, and the permissions guarding it.
type policyTarget struct {
	key      string // store key of the policy
	resource string // IAM resource name
	parents  []iam.Level
	getPerm  string
	setPerm  string
	scope    iam.Scope
	// roles are the custom roles defined on the resource itself (projects).
	roles *iam.Roles
}

// levels are the target's parents plus its own policy.
func (t *policyTarget) levels(own *iam.Policy) []iam.Level {
	return append(slices.Clip(t.parents), iam.Level{Resource: t.resource, Policy: own, Roles: t.roles})
}

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
		t, err := a.serviceTarget(r, name)
		if err != nil {
			return err
		}
		return a.getPolicy(w, r, c, t)
	case "logs":
		return a.readLogs(w, r, c, name)
	}
	return notFound("no method %q on services", method)
}

func (a *API) servicePolicyMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	t, err := a.serviceTarget(r, name)
	if err != nil {
		return err
	}
	switch method {
	case "getIamPolicy":
		return a.getPolicy(w, r, c, t)
	case "setIamPolicy":
		if err := a.serviceMustExist(r.Context(), c, t, r, name); err != nil {
			return err
		}
		return a.setPolicy(w, r, c, t)
	case "testIamPermissions":
		return a.testPermissions(w, r, c, t)
	}
	return notFound("no method %q on services", method)
}

func (a *API) serviceTarget(r *http.Request, name string) (*policyTarget, error) {
	sc, err := a.resolveScope(r)
	if err != nil {
		return nil, err
	}
	project, region := sc.project.ProjectID, sc.singleRegion(a.cfg.DefaultRegion)
	if err := apis.ValidateServiceName(name); err != nil {
		return nil, invalidArgument("%v", err)
	}
	proj, err := a.projectLevel(r.Context(), project)
	if err != nil {
		return nil, err
	}
	return &policyTarget{
		key:      state.ServicePolicyKey(project, region, name),
		resource: apis.ServiceResource(project, region, name),
		parents:  []iam.Level{proj},
		getPerm:  iam.PermServicesGetIamPolicy,
		setPerm:  iam.PermServicesSetIamPolicy,
		scope:    iam.ScopeService,
	}, nil
}

// serviceMustExist refuses policy writes for services that do not exist, after
// the permission check so callers without access learn nothing.
func (a *API) serviceMustExist(ctx context.Context, c *caller, t *policyTarget, r *http.Request, name string) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	own, _, err := a.readPolicy(ctx, t.key)
	if err != nil {
		return err
	}
	if err := a.check(c, t.setPerm, t.resource, t.levels(own)...); err != nil {
		return err
	}
	_, _, err = a.readService(ctx, sc.project.ProjectID, sc.singleRegion(a.cfg.DefaultRegion), name)
	return err
}

func (a *API) projectGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("project"))
	p, err := a.findProject(r.Context(), id)
	if err != nil {
		return err
	}
	t := projectTarget(p.ProjectID)
	if t.roles, err = a.customRoles(r.Context(), p.ProjectID); err != nil {
		return err
	}
	switch method {
	case "":
		own, _, err := a.readPolicy(r.Context(), t.key)
		if err != nil {
			return err
		}
		if err := a.check(c, iam.PermProjectsGet, t.resource, t.levels(own)...); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	case "getIamPolicy":
		return a.getPolicy(w, r, c, t)
	}
	return notFound("no method %q on projects", method)
}

func (a *API) projectPolicyMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("project"))
	p, err := a.findProject(r.Context(), id)
	if err != nil {
		return err
	}
	t := projectTarget(p.ProjectID)
	if t.roles, err = a.customRoles(r.Context(), p.ProjectID); err != nil {
		return err
	}
	switch method {
	case "getIamPolicy":
		return a.getPolicy(w, r, c, t)
	case "setIamPolicy":
		return a.setPolicy(w, r, c, t)
	case "testIamPermissions":
		return a.testPermissions(w, r, c, t)
	}
	return notFound("no method %q on projects", method)
}

func projectTarget(project string) *policyTarget {
	return &policyTarget{
		key:      state.ProjectPolicyKey(project),
		resource: apis.ProjectResource(project),
		getPerm:  iam.PermProjectsGetIamPolicy,
		setPerm:  iam.PermProjectsSetIamPolicy,
		scope:    iam.ScopeProject,
	}
}

// policyResponse renders a stored policy (nil: none yet) with its etag.
func policyResponse(p *iam.Policy, rev int64) iam.Policy {
	if p == nil {
		return iam.Policy{Etag: iam.EmptyEtag}
	}
	out := *p
	out.Etag = iam.Etag(rev)
	if out.Version == 0 {
		out.Version = iam.Version1
	}
	return out
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request, c *caller, t *policyTarget) error {
	own, rev, err := a.readPolicy(r.Context(), t.key)
	if err != nil {
		return err
	}
	if err := a.check(c, t.getPerm, t.resource, t.levels(own)...); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyResponse(own, rev))
}

type setPolicyRequest struct {
	Policy     *iam.Policy `json:"policy"`
	UpdateMask string      `json:"updateMask"`
}

// setPolicy writes a policy with compare-and-swap on the etag: a stale etag is
// ABORTED and nothing is written; no etag overwrites, as Google does. The
// answer comes once the write is durable and in force at the gateway.
func (a *API) setPolicy(w http.ResponseWriter, r *http.Request, c *caller, t *policyTarget) error {
	ctx := r.Context()
	var req setPolicyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	own, rev, err := a.readPolicy(ctx, t.key)
	if err != nil {
		return err
	}
	if err := a.check(c, t.setPerm, t.resource, t.levels(own)...); err != nil {
		return err
	}
	if req.Policy == nil {
		return invalidArgument("policy is required")
	}
	for _, f := range strings.Split(req.UpdateMask, ",") {
		switch strings.TrimSpace(f) {
		case "", "bindings", "etag", "version", "auditConfigs", "audit_configs":
		default:
			return invalidArgument("updateMask field %q is not supported; use bindings, etag, version", f)
		}
	}
	grantable := a.cfg.Roles.Grantable(t.levels(own)...) // predefined and the project's custom roles
	if err := req.Policy.Validate(grantable, t.scope); err != nil {
		return invalidArgument("%v", err)
	}
	if err := checkRolesGrantable(req.Policy, own, grantable); err != nil { // roles.go
		return err
	}
	if err := a.checkServiceAccountsExist(ctx, req.Policy, own); err != nil {
		return err
	}
	if err := a.checkGuardrails(ctx, t, req.Policy, own); err != nil { // guardrails.go
		return err
	}
	// No etag overwrites whatever is there; an etag must match the stored
	// revision (rev 0, "no policy yet", is store.MustNotExist).
	expected := store.AnyRevision
	if req.Policy.Etag != "" {
		want, err := iam.ParseEtag(req.Policy.Etag)
		if err != nil {
			return invalidArgument("%v", err)
		}
		if want != rev {
			return aborted(errConcurrentPolicy)
		}
		expected = rev
	}
	norm := req.Policy.Normalize()
	norm.Etag = ""
	newRev, err := state.Put(ctx, a.cfg.Store, t.key, &norm, expected)
	if errors.Is(err, store.ErrConflict) {
		return aborted(errConcurrentPolicy)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(ctx, newRev); err != nil {
		return err
	}
	a.cfg.Log.Info("iam policy set", "resource", t.resource, "caller", c.Principal.String(), "bindings", len(norm.Bindings))
	a.audit(ctx, c, audit.KindSetIamPolicy, t.setPerm, t.resource, &audit.Details{BindingDeltas: audit.PolicyDelta(own, &norm)})
	return writeJSON(w, http.StatusOK, policyResponse(&norm, newRev))
}

func (a *API) testPermissions(w http.ResponseWriter, r *http.Request, c *caller, t *policyTarget) error {
	var req struct {
		Permissions []string `json:"permissions"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	own, _, err := a.readPolicy(r.Context(), t.key)
	if err != nil {
		return err
	}
	levels := t.levels(own)
	held := []string{}
	for _, p := range req.Permissions {
		if a.cfg.Roles.CheckAt(c.Principal, p, a.cfg.Now(), levels...).Allowed {
			held = append(held, p)
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"permissions": held})
}

// checkServiceAccountsExist refuses newly bound service accounts of Usher's
// own projects that do not exist, as Google does, so a typo cannot grant
// access to an account created later by someone else. Members already in
// the policy are left alone (their account may have been deleted since).
func (a *API) checkServiceAccountsExist(ctx context.Context, p *iam.Policy, current *iam.Policy) error {
	known := map[string]bool{}
	if current != nil {
		for _, b := range current.Bindings {
			for _, m := range b.Members {
				known[m] = true
			}
		}
	}
	for _, b := range p.Bindings {
		for _, m := range b.Members {
			email, ok := strings.CutPrefix(m, "serviceAccount:")
			if !ok || known[m] {
				continue
			}
			email = strings.ToLower(email)
			project := apis.ServiceAccountProject(email)
			if project == "" {
				if strings.HasSuffix(email, "-compute@developer.gserviceaccount.com") {
					project = a.defaultComputeProject(ctx, email)
				}
				if project == "" {
					continue // not one of Usher's accounts: an external identity
				}
			}
			if _, err := a.cfg.Store.Get(ctx, state.ProjectKey(project)); errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if _, err := a.cfg.Store.Get(ctx, state.ServiceAccountKey(project, email)); errors.Is(err, store.ErrNotFound) {
				return invalidArgument("Service account %s does not exist.", email)
			} else if err != nil {
				return err
			}
			known[m] = true
		}
	}
	return nil
}

// defaultComputeProject finds the project whose default compute account is email.
func (a *API) defaultComputeProject(ctx context.Context, email string) string {
	projects, _, err := state.List[state.Project](ctx, a.cfg.Store, state.ProjectsPrefix)
	if err != nil {
		return ""
	}
	for _, p := range projects {
		if apis.DefaultServiceAccount(p.ProjectID) == email {
			return p.ProjectID
		}
	}
	return ""
}
