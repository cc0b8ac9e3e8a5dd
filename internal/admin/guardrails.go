package admin

// Organization guardrails (package orgpolicy): the checks every IAM policy
// write and every service create or replace passes before anything is
// written. The policies in force are read on each write, nothing cached:
// the project's from the store, the server's from its file
// (Config.OrgPolicyFile). Only changes are checked, so what is already
// stored stays valid and unchanged: a member already bound to a role keeps
// it, and a service whose invoker check is already off may be updated.

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/orgpolicy"
	"github.com/usher-run/usher/internal/state"
)

// guardrailViolation is the FAILED_PRECONDITION a guardrail answers.
func guardrailViolation(format string, args ...any) *Error {
	return FailedPrecondition(format, args...)
}

// orgPolicySources are the policies in force for project: the server
// file's (for every project, or for this one) and the project's own.
// Errors fail closed: the caller refuses the write.
func (c *Core) orgPolicySources(ctx context.Context, project string) ([]orgpolicy.Source, error) {
	var out []orgpolicy.Source
	if path := c.cfg.OrgPolicyFile; path != "" {
		fps, err := orgpolicy.LoadFile(path)
		if err != nil {
			return nil, &Error{Code: http.StatusInternalServerError, Status: "INTERNAL",
				Message: "The server's org policy file cannot be read; IAM and service changes are refused until it is fixed.", Err: err}
		}
		for _, fp := range fps {
			if fp.Project == "" || fp.Project == project {
				out = append(out, orgpolicy.Source{Policy: fp.Policy, Origin: "the server's org policy file, which only its operator can change"})
			}
		}
	}
	stored, _, err := state.List[orgpolicy.Policy](ctx, c.cfg.Store, state.OrgPoliciesPrefix+project+"/")
	if err != nil {
		return nil, err
	}
	for i := range stored {
		out = append(out, orgpolicy.Source{Policy: &stored[i], Origin: apis.ProjectResource(project)})
	}
	return out, nil
}

func (c *Core) EffectiveOrgPolicy(ctx context.Context, project string) (orgpolicy.Effective, error) {
	sources, err := c.orgPolicySources(ctx, project)
	if err != nil {
		return orgpolicy.Effective{}, err
	}
	return orgpolicy.Evaluate(sources), nil
}

// targetProject is the project a policy target belongs to: every IAM
// resource Usher serves is projects/PROJECT[/…].
func targetProject(t *Target) (string, error) {
	rest, ok := strings.CutPrefix(t.Resource, "projects/")
	project, _, _ := strings.Cut(rest, "/")
	if !ok || project == "" {
		return "", fmt.Errorf("guardrails: no project in resource %q", t.Resource)
	}
	return project, nil
}

// grantKey identifies one grant: a member bound to a role under a condition.
func grantKey(b iam.Binding, member string) string {
	cond := ""
	if b.Condition != nil {
		cond = b.Condition.Expression
	}
	return b.Role + "\x00" + cond + "\x00" + member
}

// checkGuardrails refuses a policy write that grants, anew, a member the
// org policy does not allow (constraints/iam.allowedPolicyMemberDomains).
// Grants already in current are left alone, so existing policies stay
// valid: a write that keeps them succeeds.
func (c *Core) checkGuardrails(ctx context.Context, t *Target, p *iam.Policy, current *iam.Policy) error {
	project, err := targetProject(t)
	if err != nil {
		return err
	}
	eff, err := c.EffectiveOrgPolicy(ctx, project)
	if err != nil {
		return err
	}
	if !eff.DomainsRestricted {
		return nil
	}
	known := map[string]bool{}
	if current != nil {
		for _, b := range current.Bindings {
			for _, m := range b.Members {
				known[grantKey(b, m)] = true
			}
		}
	}
	var refused []string
	seen := map[string]bool{}
	for _, b := range p.Bindings {
		for _, m := range b.Members {
			if known[grantKey(b, m)] || seen[m] {
				continue
			}
			mem, err := iam.ParseMember(m)
			if err != nil {
				return InvalidArgument("%v", err) // Validate ran first; never here
			}
			usher, err := c.usherServiceAccount(ctx, mem)
			if err != nil {
				return err
			}
			if !eff.MemberAllowed(mem, func(string) bool { return usher }) {
				refused = append(refused, m)
				seen[m] = true
			}
		}
	}
	if len(refused) == 0 {
		return nil
	}
	verb := "is"
	if len(refused) > 1 {
		verb = "are"
	}
	allowed := "none: only service accounts of Usher's projects"
	if len(eff.Domains) > 0 {
		allowed = strings.Join(eff.Domains, ", ")
	}
	c.cfg.Log.Info("iam policy refused by guardrail", "resource", t.Resource, "constraint", orgpolicy.AllowedPolicyMemberDomains, "members", refused)
	return guardrailViolation("One or more users named in the policy do not belong to a permitted customer, as enforced by %s: %s %s not allowed (allowed domains: %s; set by %s). Grant members of an allowed domain instead, or change the org policy (usher org-policies describe iam.allowedPolicyMemberDomains --effective).",
		orgpolicy.AllowedPolicyMemberDomains, strings.Join(refused, ", "), verb, allowed, strings.Join(eff.DomainsOrigin, " and "))
}

// usherServiceAccount reports whether m is a service account of one of
// Usher's own projects (NAME@PROJECT.iam.gserviceaccount.com or the
// project's default PROJECTNUMBER-compute@developer.gserviceaccount.com),
// which the domain restriction always allows.
func (c *Core) usherServiceAccount(ctx context.Context, m iam.Member) (bool, error) {
	if m.Kind != iam.KindServiceAccount {
		return false, nil
	}
	project, err := c.accountProject(ctx, m.Value)
	return project != "", err
}

// checkInvokerGuardrail refuses turning a service's invoker IAM check off
// (create, or replace of a service whose check is on) when
// constraints/run.managed.requireInvokerIam is enforced. A service whose
// check is already off may be replaced keeping it off.
func (c *Core) checkInvokerGuardrail(ctx context.Context, project string, s, old *apis.Service) error {
	if !s.InvokerIAMDisabled() || (old != nil && old.InvokerIAMDisabled()) {
		return nil
	}
	eff, err := c.EffectiveOrgPolicy(ctx, project)
	if err != nil {
		return err
	}
	if !eff.RequireInvokerIAM {
		return nil
	}
	c.cfg.Log.Info("service refused by guardrail", "project", project, "service", s.Metadata.Name, "constraint", orgpolicy.RequireInvokerIAM)
	return guardrailViolation("The invoker IAM check of service '%s' cannot be disabled, as enforced by %s (set by %s): the service would be public without an IAM binding. Keep the check on (--invoker-iam-check) and grant roles/run.invoker to those who need it, or change the org policy (usher org-policies describe run.managed.requireInvokerIam --effective).",
		s.Metadata.Name, orgpolicy.RequireInvokerIAM, strings.Join(eff.InvokerOrigin, " and "))
}
