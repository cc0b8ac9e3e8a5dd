package admin

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Limits of IAM requests, Google's: a policy holds at most MaxPolicyMembers
// principals across its bindings, and testIamPermissions asks about at most
// MaxTestPermissions permissions.
const (
	MaxPolicyMembers   = 1500
	MaxTestPermissions = 100
)

// Target is a resource with an IAM policy: where the policy is stored, the
// resources above it, and the permissions guarding it.
type Target struct {
	key      string // store key of the policy
	Resource string // IAM resource name
	parents  []iam.Level
	getPerm  string
	setPerm  string
	scope    iam.Scope
	// roles are the custom roles defined on the resource itself (projects).
	roles *iam.Roles
	// exists, if set, refuses writes to the policy of a resource that is
	// gone (checked after the permission, so callers without it learn
	// nothing).
	exists func(ctx context.Context) error
}

// levels are the target's parents plus its own policy.
func (t *Target) levels(own *iam.Policy) []iam.Level {
	return append(slices.Clip(t.parents), iam.Level{Resource: t.Resource, Policy: own, Roles: t.roles})
}

// ServiceTarget is a service's policy. The service need not exist to read
// the policy or test permissions (gcloud tests before a first deploy).
func (c *Core) ServiceTarget(ctx context.Context, project, region, name string) (*Target, error) {
	p, region, err := c.serviceScope(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	proj, err := c.projectLevel(ctx, p.ProjectID)
	if err != nil {
		return nil, err
	}
	return &Target{
		key:      state.ServicePolicyKey(p.ProjectID, region, name),
		Resource: apis.ServiceResource(p.ProjectID, region, name),
		parents:  []iam.Level{proj},
		getPerm:  iam.PermServicesGetIamPolicy,
		setPerm:  iam.PermServicesSetIamPolicy,
		scope:    iam.ScopeService,
		exists: func(ctx context.Context) error {
			_, _, err := c.readService(ctx, p.ProjectID, region, name)
			return err
		},
	}, nil
}

// ProjectTarget is a project's policy.
func (c *Core) ProjectTarget(ctx context.Context, project string) (*Target, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, err
	}
	roles, err := c.customRoles(ctx, p.ProjectID)
	if err != nil {
		return nil, err
	}
	return &Target{
		key:      state.ProjectPolicyKey(p.ProjectID),
		Resource: apis.ProjectResource(p.ProjectID),
		getPerm:  iam.PermProjectsGetIamPolicy,
		setPerm:  iam.PermProjectsSetIamPolicy,
		scope:    iam.ScopeProject,
		roles:    roles,
	}, nil
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

// GetPolicy reads a target's policy for holders of its getIamPolicy.
func (c *Core) GetPolicy(ctx context.Context, caller *Caller, t *Target) (iam.Policy, error) {
	own, rev, err := c.readPolicy(ctx, t.key)
	if err != nil {
		return iam.Policy{}, err
	}
	if err := c.authorize(caller, t.getPerm, t.Resource, t.levels(own)...); err != nil {
		return iam.Policy{}, err
	}
	return policyResponse(own, rev), nil
}

// SetPolicy writes p as the target's policy, compare-and-swap on p.Etag:
// a stale etag is ABORTED and nothing is written; no etag overwrites, as
// Google does. It answers once the write is durable, in force at the
// gateway and audited.
func (c *Core) SetPolicy(ctx context.Context, caller *Caller, t *Target, p *iam.Policy, updateMask string) (iam.Policy, error) {
	own, rev, err := c.readPolicy(ctx, t.key)
	if err != nil {
		return iam.Policy{}, err
	}
	if err := c.authorize(caller, t.setPerm, t.Resource, t.levels(own)...); err != nil {
		return iam.Policy{}, err
	}
	if t.exists != nil {
		if err := t.exists(ctx); err != nil {
			return iam.Policy{}, err
		}
	}
	if p == nil {
		return iam.Policy{}, InvalidArgument("policy is required")
	}
	for _, f := range strings.Split(updateMask, ",") {
		switch strings.TrimSpace(f) {
		case "", "bindings", "etag", "version", "auditConfigs", "audit_configs":
		default:
			return iam.Policy{}, InvalidArgument("updateMask field %q is not supported; use bindings, etag, version", f)
		}
	}
	if err := checkPolicySize(p); err != nil {
		return iam.Policy{}, err
	}
	grantable := c.cfg.Roles.Grantable(t.levels(own)...) // predefined and the project's custom roles
	if err := p.Validate(grantable, t.scope); err != nil {
		return iam.Policy{}, InvalidArgument("%v", err)
	}
	if err := checkRolesGrantable(p, own, grantable); err != nil {
		return iam.Policy{}, err
	}
	if err := c.checkServiceAccountsExist(ctx, p, own); err != nil {
		return iam.Policy{}, err
	}
	if err := c.checkGuardrails(ctx, t, p, own); err != nil { // guardrails.go
		return iam.Policy{}, err
	}
	expected, err := etagRevision(p.Etag, rev, func() error { return Aborted(ErrConcurrentPolicy) })
	if err != nil {
		return iam.Policy{}, err
	}
	canonicalMembers(p)
	norm := p.Normalize()
	norm.Etag = ""
	newRev, err := c.commit(ctx, caller, change{
		writes: []write{{key: t.key, value: &norm, expected: expected, conflict: func() error { return Aborted(ErrConcurrentPolicy) }}},
		record: audit.Record{Kind: audit.KindSetIamPolicy, Permission: t.setPerm, Resource: t.Resource, Details: &audit.Details{BindingDeltas: audit.PolicyDelta(own, &norm)}},
	})
	if err != nil {
		return iam.Policy{}, err
	}
	return policyResponse(&norm, newRev), nil
}

// checkPolicySize refuses a policy over Google's limits before any work
// that grows with it.
func checkPolicySize(p *iam.Policy) error {
	members := 0
	for _, b := range p.Bindings {
		members += len(b.Members)
	}
	if members > MaxPolicyMembers {
		return InvalidArgument("The policy has %d principals across its bindings; a policy may hold at most %d. Grant a group instead of many individual principals.", members, MaxPolicyMembers)
	}
	if len(p.Bindings) > MaxPolicyMembers {
		return InvalidArgument("The policy has %d bindings; a policy may hold at most %d.", len(p.Bindings), MaxPolicyMembers)
	}
	return nil
}

// TestPermissions returns which of perms caller holds on the target
// (Google's testIamPermissions; never refused, at most MaxTestPermissions).
func (c *Core) TestPermissions(ctx context.Context, caller *Caller, t *Target, perms []string) ([]string, error) {
	if len(perms) > MaxTestPermissions {
		return nil, InvalidArgument("testIamPermissions asks about %d permissions; at most %d may be tested in one call.", len(perms), MaxTestPermissions)
	}
	own, _, err := c.readPolicy(ctx, t.key)
	if err != nil {
		return nil, err
	}
	levels := t.levels(own)
	held := []string{}
	for _, p := range perms {
		if c.holds(caller, p, levels...) {
			held = append(held, p)
		}
	}
	return held, nil
}

// checkRolesGrantable refuses newly bound custom roles that are deleted, so a
// binding cannot be added to a role that grants nothing; bindings already in
// the policy are left alone (their role may have been deleted since).
func checkRolesGrantable(p, current *iam.Policy, roles *iam.Roles) error {
	bound := map[string]bool{}
	if current != nil {
		for _, b := range current.Bindings {
			bound[b.Role] = true
		}
	}
	for _, b := range p.Bindings {
		if bound[b.Role] {
			continue
		}
		if role, ok := roles.Lookup(b.Role); ok && role.Deleted {
			return InvalidArgument("Role %s is deleted; undelete it before granting it.", b.Role)
		}
	}
	return nil
}

// checkServiceAccountsExist refuses newly bound service accounts of Usher's
// own projects that do not exist, as Google does, so a typo cannot grant
// access to an account created later by someone else. Members already in
// the policy are left alone (their account may have been deleted since).
func (c *Core) checkServiceAccountsExist(ctx context.Context, p *iam.Policy, current *iam.Policy) error {
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
			project, err := c.accountProject(ctx, email)
			if err != nil {
				return err
			}
			if project == "" {
				if claimableAccount(email) {
					// No project of Usher's holds it yet, but one could be
					// created (projects create) to hold it: whoever did
					// would inherit this grant.
					return InvalidArgument("Service account %s does not exist.", email)
				}
				continue // a Google service agent (gcp-sa-*), which no project of Usher's can hold
			}
			if _, err := c.cfg.Store.Get(ctx, state.ServiceAccountKey(project, email)); errors.Is(err, store.ErrNotFound) {
				return InvalidArgument("Service account %s does not exist.", email)
			} else if err != nil {
				return err
			}
			known[m] = true
		}
	}
	return nil
}

// claimableAccount reports whether email has the form of a service account
// of a project Usher could create: NAME@PROJECT.iam.gserviceaccount.com
// (PROJECT not reserved for Google's service agents) or a default
// NUMBER-compute@developer.gserviceaccount.com.
func claimableAccount(email string) bool {
	if p := apis.ServiceAccountProject(email); p != "" {
		return !strings.HasPrefix(p, ReservedProjectPrefix)
	}
	return strings.HasSuffix(email, "-compute@developer.gserviceaccount.com")
}

// canonicalMembers spells every member as IAM does (emails lower-case), so
// a member's case can never make it escape a rewrite or a match.
func canonicalMembers(p *iam.Policy) {
	for i := range p.Bindings {
		for j, m := range p.Bindings[i].Members {
			if mem, err := iam.ParseMember(m); err == nil {
				p.Bindings[i].Members[j] = mem.String()
			}
		}
	}
}
