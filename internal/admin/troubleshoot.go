package admin

// The policy troubleshooter: why does (or doesn't) a principal hold a
// permission on a service? In the shape of Google's Policy Troubleshooter
// API v1:
//
//	POST /v1/iam:troubleshoot
//	{"accessTuple": {"principal": "user:x@y" | "x@y",
//	                 "fullResourceName": "//run.googleapis.com/projects/P/locations/R/services/S",
//	                 "permission": "run.routes.invoke"}}
//
// answers {access, accessTuple, explanation[], explainedPolicies[],
// rolesGranting[], invokerIamDisabled, guardrails[]}: access is GRANTED,
// NOT_GRANTED or UNKNOWN_INFO_DENIED; explainedPolicies are the service's
// policy then its project's, each binding with whether its role includes
// the permission, whether each member is the principal, and whether it
// grants (conditions included); rolesGranting are the roles that would.
// The resource may also be written projects/P/locations/R/services/S; the
// permission defaults to run.routes.invoke.
//
// Every answer comes from package iam's one evaluator (Roles.Check, as the
// gateway's compiled Grantees decide): the whole decision over the
// service's hierarchy, and each binding and each member checked alone.
// There is no second evaluator to drift from the gateway.
//
// The caller needs run.services.getIamPolicy on the service (it learns no
// more than reading the policy tells). The project's bindings are shown only
// to a caller with resourcemanager.projects.getIamPolicy on the project;
// otherwise they are hidden, and an answer that would depend on them is
// UNKNOWN_INFO_DENIED, as Google's troubleshooter answers.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/orgpolicy"
)

// Access states, as Google's troubleshooter names them.
const (
	accessGranted      = "GRANTED"
	accessNotGranted   = "NOT_GRANTED"
	accessUnknownInfo  = "UNKNOWN_INFO_DENIED"
	rolePermIncluded   = "ROLE_PERMISSION_INCLUDED"
	rolePermNotInc     = "ROLE_PERMISSION_NOT_INCLUDED"
	rolePermUnknown    = "ROLE_PERMISSION_UNKNOWN_INFO_DENIED"
	membershipIncluded = "MEMBERSHIP_INCLUDED"
	membershipNotInc   = "MEMBERSHIP_NOT_INCLUDED"
	membershipUnknown  = "MEMBERSHIP_UNKNOWN_UNSUPPORTED"
)

const runResourcePrefix = "//run.googleapis.com/"

// parseServiceResource reads [//run.googleapis.com/]projects/P/locations/R/services/S.
func parseServiceResource(name string) (project, region, service string, ok bool) {
	name = strings.TrimPrefix(name, runResourcePrefix)
	parts := strings.Split(name, "/")
	if len(parts) != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "services" ||
		parts[1] == "" || parts[3] == "" || parts[5] == "" {
		return "", "", "", false
	}
	return parts[1], parts[3], parts[5], true
}

// parsePrincipal reads a member or a bare email as the principal a token
// would carry; "allUsers" and "anonymous" stand for a caller without one.
func parsePrincipal(s string) (iam.Principal, error) {
	switch s {
	case "allUsers", "anonymous":
		return iam.Principal{Kind: iam.Anonymous}, nil
	}
	email := s
	if kind, rest, ok := strings.Cut(s, ":"); ok {
		switch kind {
		case "user", "serviceAccount":
			email = rest
		default:
			return iam.Principal{}, fmt.Errorf("principal %q must be a user or service account (user:EMAIL, serviceAccount:EMAIL or EMAIL), or allUsers", s)
		}
	}
	m, err := iam.ParseMember("user:" + email)
	if err != nil {
		return iam.Principal{}, fmt.Errorf("principal %q: %v", s, err)
	}
	p := iam.NewPrincipal(m.Value)
	if strings.HasPrefix(s, "serviceAccount:") && p.Kind != iam.ServiceAccount {
		p.Kind = iam.ServiceAccount
	}
	return p, nil
}

// Troubleshoot explains whether tuple's principal holds its permission on
// its service.
func (c *Core) Troubleshoot(ctx context.Context, caller *Caller, tuple apis.AccessTuple) (*apis.TroubleshootResponse, error) {
	if tuple.Permission == "" {
		tuple.Permission = iam.PermRoutesInvoke
	}
	projectRef, region, name, ok := parseServiceResource(tuple.FullResourceName)
	if !ok {
		return nil, InvalidArgument("accessTuple.fullResourceName %q must name a Cloud Run service: //run.googleapis.com/projects/PROJECT/locations/REGION/services/SERVICE", tuple.FullResourceName)
	}
	principal, err := parsePrincipal(tuple.Principal)
	if err != nil {
		return nil, InvalidArgument("accessTuple.%v", err)
	}
	p, err := c.Project(ctx, projectRef)
	if err != nil {
		return nil, err
	}
	project := p.ProjectID
	levels, err := c.serviceLevels(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	resource := apis.ServiceResource(project, region, name)
	if err := c.authorize(caller, iam.PermServicesGetIamPolicy, resource, levels...); err != nil {
		return nil, err
	}
	svc, _, err := c.readService(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	projectVisible := c.holds(caller, iam.PermProjectsGetIamPolicy, levels[0])
	tuple.FullResourceName = runResourcePrefix + resource
	out := c.explain(principal, tuple.Permission, levels, projectVisible, c.cfg.Now())
	out.AccessTuple = tuple
	if tuple.Permission == iam.PermRoutesInvoke && svc.InvokerIAMDisabled() {
		// The gateway makes such a service public whatever its policy says.
		out.InvokerIAMDisabled = true
		out.Access = accessGranted
		out.Explanation = append([]string{fmt.Sprintf("The invoker IAM check of %s is disabled (%s): anyone may invoke it, with or without credentials, whatever its policy says.",
			resource, apis.AnnotationInvokerIAMDisabled)}, out.Explanation...)
	}
	out.Guardrails = c.troubleshootGuardrails(ctx, project, principal, out.Access)
	return &out, nil
}

// explain judges perm for principal over levels (project first, then the
// service), as for a request made at now. Project bindings are hidden
// unless projectVisible.
func (c *Core) explain(principal iam.Principal, perm string, levels []iam.Level, projectVisible bool, now time.Time) apis.TroubleshootResponse {
	rs := c.cfg.Roles
	catalogue := rs.Grantable(levels...) // predefined plus the custom roles in scope
	out := apis.TroubleshootResponse{RolesGranting: catalogue.Granting(perm)}
	if out.RolesGranting == nil {
		out.RolesGranting = []string{}
	}
	last := len(levels) - 1
	whole := rs.CheckAt(principal, perm, now, levels...)
	serviceOnly := rs.CheckAt(principal, perm, now, onlyPolicy(levels, last, levels[last].Policy)...)
	switch {
	case whole.Allowed && (projectVisible || serviceOnly.Allowed):
		d := whole
		if !projectVisible {
			d = serviceOnly
		}
		out.Access = accessGranted
		out.Explanation = append(out.Explanation, d.Explain(principal)+".")
	case projectVisible:
		out.Access = accessNotGranted
		out.Explanation = append(out.Explanation, whole.Explain(principal)+".")
	default:
		out.Access = accessUnknownInfo
		out.Explanation = append(out.Explanation, fmt.Sprintf("%s is not granted %s by the service's own policy; the project's policy may grant it, but you may not read it (resourcemanager.projects.getIamPolicy).", principal, perm))
	}

	// The service first, then its project, as Google lists them.
	for i := last; i >= 0; i-- {
		lvl := levels[i]
		ep := apis.ExplainedPolicy{FullResourceName: fullResourceName(lvl.Resource), Access: accessNotGranted}
		if i == 0 && !projectVisible {
			ep.Access = accessUnknownInfo
			out.ExplainedPolicies = append(out.ExplainedPolicies, ep)
			continue
		}
		if lvl.Policy != nil {
			pol := *lvl.Policy
			pol.Etag = ""
			ep.Policy = &pol
			for _, b := range lvl.Policy.Bindings {
				be := c.explainBinding(principal, perm, catalogue, levels, i, b, now)
				if be.Access == accessGranted {
					ep.Access = accessGranted
				}
				ep.BindingExplanations = append(ep.BindingExplanations, be)
				if be.ConditionExplanation != "" {
					out.Explanation = append(out.Explanation, be.ConditionExplanation)
				}
			}
		}
		out.ExplainedPolicies = append(out.ExplainedPolicies, ep)
	}

	if out.Access != accessGranted {
		out.Explanation = append(out.Explanation, c.whereMissing(principal, perm, levels, projectVisible, out.RolesGranting)...)
	}
	return out
}

// onlyPolicy is levels with every policy removed but levels[i]'s, which is
// pol: the same hierarchy (custom roles, the resource conditions see) with
// one binding, or one member, to judge alone.
func onlyPolicy(levels []iam.Level, i int, pol *iam.Policy) []iam.Level {
	out := make([]iam.Level, len(levels))
	for j, lvl := range levels {
		lvl.Policy = nil
		if j == i {
			lvl.Policy = pol
		}
		out[j] = lvl
	}
	return out
}

// explainBinding judges one binding, levels[i]'s, by asking the evaluator
// about it alone, and each member by asking about a one-member binding of a
// role that includes perm.
func (c *Core) explainBinding(principal iam.Principal, perm string, catalogue *iam.Roles, levels []iam.Level, i int, b iam.Binding, now time.Time) apis.BindingExplanation {
	rs := c.cfg.Roles
	resource := levels[i].Resource
	be := apis.BindingExplanation{Access: accessNotGranted, Role: b.Role, RolePermission: rolePermNotInc,
		Memberships: map[string]apis.Membership{}, Condition: b.Condition}
	role, known := catalogue.Lookup(b.Role)
	switch {
	case !known:
		be.RolePermission = rolePermUnknown
	case role.Has(perm):
		be.RolePermission = rolePermIncluded
	}
	probe := b.Role
	if be.RolePermission != rolePermIncluded {
		if granting := catalogue.Granting(perm); len(granting) > 0 {
			probe = granting[0]
		}
	}
	memberMatched := false
	for _, m := range b.Members {
		ms := membershipNotInc
		if pm, err := iam.ParseMember(m); err == nil && pm.Kind == iam.KindGroup {
			// Groups come from the caller's token, which the troubleshooter
			// does not have.
			ms = membershipUnknown
		} else if rs.CheckAt(principal, perm, now, onlyPolicy(levels, i, &iam.Policy{
			Bindings: []iam.Binding{{Role: probe, Members: []string{m}}}})...).Allowed {
			ms = membershipIncluded
			memberMatched = true
		}
		be.Memberships[m] = apis.Membership{Membership: ms}
	}
	granted := rs.CheckAt(principal, perm, now, onlyPolicy(levels, i, &iam.Policy{Bindings: []iam.Binding{b}})...).Allowed
	if granted {
		be.Access = accessGranted
	}
	if b.Condition != nil && memberMatched && be.RolePermission == rolePermIncluded {
		when := now.UTC().Format(time.RFC3339)
		if granted {
			be.ConditionExplanation = fmt.Sprintf("The binding of %s to %s on %s grants %s because its condition %q holds for a request at %s.",
				b.Role, principal, resource, perm, conditionLabel(b.Condition), when)
		} else {
			be.ConditionExplanation = fmt.Sprintf("The binding of %s to %s on %s would grant %s but for its condition %q, which does not hold for a request at %s (a condition that cannot be evaluated grants nothing).",
				b.Role, principal, resource, perm, conditionLabel(b.Condition), when)
		}
	}
	return be
}

func conditionLabel(c *iam.Expr) string {
	if c.Title != "" {
		return c.Title
	}
	return c.Expression
}

// whereMissing says, per resource, which bindings of the roles that would
// grant perm exist and that principal is not among their members.
func (c *Core) whereMissing(principal iam.Principal, perm string, levels []iam.Level, projectVisible bool, granting []string) []string {
	if len(granting) == 0 {
		return []string{fmt.Sprintf("No role Usher knows includes %s.", perm)}
	}
	out := []string{fmt.Sprintf("Roles that include %s: %s.", perm, strings.Join(granting, ", "))}
	for i := len(levels) - 1; i >= 0; i-- {
		lvl := levels[i]
		if i == 0 && !projectVisible {
			continue
		}
		var held []string
		if lvl.Policy != nil {
			for _, b := range lvl.Policy.Bindings {
				if slices.Contains(granting, b.Role) {
					s := b.Role + " → " + strings.Join(b.Members, ", ")
					if b.Condition != nil {
						s += " (if " + conditionLabel(b.Condition) + ")"
					}
					held = append(held, s)
				}
			}
		}
		if len(held) == 0 {
			out = append(out, fmt.Sprintf("On %s none of them is granted to anyone.", lvl.Resource))
			continue
		}
		out = append(out, fmt.Sprintf("On %s they are granted as %s; %s is not among those members.", lvl.Resource, strings.Join(held, "; "), principal))
	}
	role := "roles/run.invoker"
	if !slices.Contains(granting, role) {
		role = granting[0]
	}
	if _, region, service := splitResource(levels[len(levels)-1].Resource); principal.Kind != iam.Anonymous && service != "" {
		out = append(out, fmt.Sprintf("To grant it: usher run services add-iam-policy-binding %s --region=%s --member=%s --role=%s", service, region, principal.Member(), role))
	}
	return out
}

// troubleshootGuardrails names the org policies that bear on the answer:
// what would refuse the grant that is missing, or keeps the invoker check on.
func (c *Core) troubleshootGuardrails(ctx context.Context, project string, principal iam.Principal, access string) []string {
	eff, err := c.EffectiveOrgPolicy(ctx, project)
	if err != nil {
		return []string{"The org policies in force could not be read: " + err.Error()}
	}
	var out []string
	if eff.DomainsRestricted && principal.Kind != iam.Anonymous {
		m, err := iam.ParseMember(principal.Member())
		if err == nil {
			usher, _ := c.usherServiceAccount(ctx, m)
			if !eff.MemberAllowed(m, func(string) bool { return usher }) {
				out = append(out, fmt.Sprintf("%s: %s may not be granted roles in this project (allowed domains: %s; set by %s).",
					orgpolicy.AllowedPolicyMemberDomains, principal.Member(), strings.Join(eff.Domains, ", "), strings.Join(eff.DomainsOrigin, " and ")))
			} else if access != accessGranted {
				out = append(out, fmt.Sprintf("%s is in force (allowed domains: %s); %s may be granted.", orgpolicy.AllowedPolicyMemberDomains, strings.Join(eff.Domains, ", "), principal.Member()))
			}
		}
	}
	if eff.RequireInvokerIAM {
		out = append(out, fmt.Sprintf("%s is enforced (set by %s): the invoker IAM check cannot be turned off.", orgpolicy.RequireInvokerIAM, strings.Join(eff.InvokerOrigin, " and ")))
	}
	return out
}

// fullResourceName is Google's full name of an IAM resource name.
func fullResourceName(resource string) string {
	if strings.Contains(resource, "/services/") {
		return runResourcePrefix + resource
	}
	return "//cloudresourcemanager.googleapis.com/" + resource
}
