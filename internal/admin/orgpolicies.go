package admin

// Organization policies of a project (guardrails, enforced by guardrails.go).
// Writes need orgpolicy.policy.set on the project (roles/owner); reads need
// resourcemanager.projects.get (Usher's stand-in for orgpolicy.policy.get,
// so anyone who sees the project sees its guardrails). An etag given on
// update or delete must be current, else ABORTED.

import (
	"context"
	"errors"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/orgpolicy"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

const errConcurrentOrgPolicy = "The policy was changed concurrently. Read it again and retry."

// OrgPolicyView renders a stored policy at revision rev.
func OrgPolicyView(p *orgpolicy.Policy, rev int64) *orgpolicy.Policy {
	out := *p
	out.Etag = iam.Etag(rev)
	if p.Spec != nil {
		spec := *p.Spec
		spec.Etag = out.Etag
		out.Spec = &spec
	}
	return &out
}

// ListOrgPolicies lists a project's own org policies.
func (c *Core) ListOrgPolicies(ctx context.Context, caller *Caller, project string) ([]*orgpolicy.Policy, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermProjectsGet)
	if err != nil {
		return nil, err
	}
	stored, revs, err := state.List[orgpolicy.Policy](ctx, c.cfg.Store, state.OrgPoliciesPrefix+p.ProjectID+"/")
	if err != nil {
		return nil, err
	}
	out := []*orgpolicy.Policy{}
	for i := range stored {
		out = append(out, OrgPolicyView(&stored[i], revs[i]))
	}
	return out, nil
}

// GetOrgPolicy reads the project's policy for constraint id.
func (c *Core) GetOrgPolicy(ctx context.Context, caller *Caller, project, id string) (*orgpolicy.Policy, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermProjectsGet)
	if err != nil {
		return nil, err
	}
	var pol orgpolicy.Policy
	rev, err := state.Get(ctx, c.cfg.Store, state.OrgPolicyKey(p.ProjectID, id), &pol)
	if errors.Is(err, store.ErrNotFound) {
		return nil, NotFound("Policy %s is not set.", orgpolicy.PolicyName(apis.ProjectResource(p.ProjectID), id))
	}
	if err != nil {
		return nil, err
	}
	return OrgPolicyView(&pol, rev), nil
}

// GetEffectiveOrgPolicy is the policy in force for constraint id, the
// server's file applied.
func (c *Core) GetEffectiveOrgPolicy(ctx context.Context, caller *Caller, project, id string) (any, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermProjectsGet)
	if err != nil {
		return nil, err
	}
	eff, err := c.EffectiveOrgPolicy(ctx, p.ProjectID)
	if err != nil {
		return nil, err
	}
	return eff.Policy(apis.ProjectResource(p.ProjectID), id), nil
}

// SetOrgPolicy stores pol (already normalized for constraint id): create
// when create is set (ALREADY_EXISTS if set), else replace (NOT_FOUND if
// unset; etag, if given, must be current).
func (c *Core) SetOrgPolicy(ctx context.Context, caller *Caller, project, id string, pol *orgpolicy.Policy, etag string, create bool) (*orgpolicy.Policy, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermOrgPolicySet)
	if err != nil {
		return nil, err
	}
	key := state.OrgPolicyKey(p.ProjectID, id)
	expected := int64(store.MustNotExist)
	conflict := func() error { return AlreadyExists("Policy %s already exists; update it (PATCH) instead.", pol.Name) }
	if !create {
		e, err := c.cfg.Store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, NotFound("Policy %s is not set; create it (POST) first.", pol.Name)
		}
		if err != nil {
			return nil, err
		}
		stale := func() error { return Aborted(errConcurrentOrgPolicy) }
		if _, err := etagRevision(etag, e.Revision, stale); err != nil {
			return nil, err
		}
		expected, conflict = e.Revision, stale
	}
	rev, err := c.commit(ctx, caller, change{
		writes: []write{{key: key, value: pol, expected: expected, conflict: conflict}},
		record: audit.Record{Kind: audit.KindOrgPolicySet, Permission: iam.PermOrgPolicySet, Resource: pol.Name},
	})
	if err != nil {
		return nil, err
	}
	return OrgPolicyView(pol, rev), nil
}

// DeleteOrgPolicy lifts the project's policy for constraint id.
func (c *Core) DeleteOrgPolicy(ctx context.Context, caller *Caller, project, id, etag string) error {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermOrgPolicySet)
	if err != nil {
		return err
	}
	name := orgpolicy.PolicyName(apis.ProjectResource(p.ProjectID), id)
	key := state.OrgPolicyKey(p.ProjectID, id)
	e, err := c.cfg.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return NotFound("Policy %s is not set.", name)
	}
	if err != nil {
		return err
	}
	stale := func() error { return Aborted(errConcurrentOrgPolicy) }
	if _, err := etagRevision(etag, e.Revision, stale); err != nil {
		return err
	}
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: key, expected: e.Revision, conflict: stale}},
		record: audit.Record{Kind: audit.KindOrgPolicyDelete, Permission: iam.PermOrgPolicySet, Resource: name},
	})
	return err
}
