package api

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
	"net/http"
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

// AccessTuple is what is asked about.
type AccessTuple struct {
	Principal        string `json:"principal"`
	FullResourceName string `json:"fullResourceName"`
	Permission       string `json:"permission"`
}

// TroubleshootResponse is the troubleshooter's answer.
type TroubleshootResponse struct {
	Access      string      `json:"access"`
	AccessTuple AccessTuple `json:"accessTuple"`
	// Explanation says why in sentences, the decision's first.
	Explanation       []string          `json:"explanation"`
	ExplainedPolicies []ExplainedPolicy `json:"explainedPolicies"`
	// RolesGranting are the roles that include the permission.
	RolesGranting      []string `json:"rolesGranting"`
	InvokerIAMDisabled bool     `json:"invokerIamDisabled,omitempty"`
	// Guardrails are org policies that bear on the answer (what a fix
	// would run into).
	Guardrails []string `json:"guardrails,omitempty"`
}

// ExplainedPolicy is one policy of the hierarchy, judged.
type ExplainedPolicy struct {
	FullResourceName string `json:"fullResourceName"`
	// Access is what this policy alone grants; UNKNOWN_INFO_DENIED when the
	// caller may not read it (Policy and BindingExplanations are then empty).
	Access              string               `json:"access"`
	Policy              *iam.Policy          `json:"policy,omitempty"`
	BindingExplanations []BindingExplanation `json:"bindingExplanations,omitempty"`
}

// BindingExplanation is one binding, judged.
type BindingExplanation struct {
	Access         string                `json:"access"`
	Role           string                `json:"role"`
	RolePermission string                `json:"rolePermission"`
	Memberships    map[string]Membership `json:"memberships"`
	Condition      *iam.Expr             `json:"condition,omitempty"`
	// ConditionExplanation says what the condition did when it mattered.
	ConditionExplanation string `json:"conditionExplanation,omitempty"`
}

// Membership says whether one member of a binding is the principal.
type Membership struct {
	Membership string `json:"membership"`
}

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

func (a *API) troubleshoot(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	var req struct {
		AccessTuple *AccessTuple `json:"accessTuple"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.AccessTuple == nil {
		return invalidArgument("accessTuple is required")
	}
	tuple := *req.AccessTuple
	if tuple.Permission == "" {
		tuple.Permission = iam.PermRoutesInvoke
	}
	projectRef, region, name, ok := parseServiceResource(tuple.FullResourceName)
	if !ok {
		return invalidArgument("accessTuple.fullResourceName %q must name a Cloud Run service: //run.googleapis.com/projects/PROJECT/locations/REGION/services/SERVICE", tuple.FullResourceName)
	}
	principal, err := parsePrincipal(tuple.Principal)
	if err != nil {
		return invalidArgument("accessTuple.%v", err)
	}
	p, err := a.findProject(ctx, projectRef)
	if err != nil {
		return err
	}
	project := p.ProjectID
	levels, err := a.serviceLevels(ctx, project, region, name)
	if err != nil {
		return err
	}
	resource := apis.ServiceResource(project, region, name)
	if err := a.check(c, iam.PermServicesGetIamPolicy, resource, levels...); err != nil {
		return err
	}
	svc, _, err := a.readService(ctx, project, region, name)
	if err != nil {
		return err
	}
	projectVisible := a.check(c, iam.PermProjectsGetIamPolicy, levels[0].Resource, levels[0]) == nil
	tuple.FullResourceName = runResourcePrefix + resource
	out := a.explain(principal, tuple.Permission, levels, projectVisible, a.cfg.Now())
	out.AccessTuple = tuple
	if tuple.Permission == iam.PermRoutesInvoke && svc.InvokerIAMDisabled() {
		// The gateway makes such a service public whatever its policy says.
		out.InvokerIAMDisabled = true
		out.Access = accessGranted
		out.Explanation = append([]string{fmt.Sprintf("The invoker IAM check of %s is disabled (%s): anyone may invoke it, with or without credentials, whatever its policy says.",
			resource, apis.AnnotationInvokerIAMDisabled)}, out.Explanation...)
	}
	out.Guardrails = a.troubleshootGuardrails(ctx, project, principal, out.Access)
	return writeJSON(w, http.StatusOK, out)
}

// explain judges perm for principal over levels (project first, then the
// service), as for a request made at now. Project bindings are hidden
// unless projectVisible.
func (a *API) explain(principal iam.Principal, perm string, levels []iam.Level, projectVisible bool, now time.Time) TroubleshootResponse {
	rs := a.cfg.Roles
	catalogue := rs.Grantable(levels...) // predefined plus the custom roles in scope
	out := TroubleshootResponse{RolesGranting: catalogue.Granting(perm)}
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
		ep := ExplainedPolicy{FullResourceName: fullResourceName(lvl.Resource), Access: accessNotGranted}
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
				be := a.explainBinding(principal, perm, catalogue, levels, i, b, now)
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
		out.Explanation = append(out.Explanation, a.whereMissing(principal, perm, levels, projectVisible, out.RolesGranting)...)
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
func (a *API) explainBinding(principal iam.Principal, perm string, catalogue *iam.Roles, levels []iam.Level, i int, b iam.Binding, now time.Time) BindingExplanation {
	rs := a.cfg.Roles
	resource := levels[i].Resource
	be := BindingExplanation{Access: accessNotGranted, Role: b.Role, RolePermission: rolePermNotInc,
		Memberships: map[string]Membership{}, Condition: b.Condition}
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
		be.Memberships[m] = Membership{Membership: ms}
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
func (a *API) whereMissing(principal iam.Principal, perm string, levels []iam.Level, projectVisible bool, granting []string) []string {
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
func (a *API) troubleshootGuardrails(ctx context.Context, project string, principal iam.Principal, access string) []string {
	eff, err := a.effectiveOrgPolicy(ctx, project)
	if err != nil {
		return []string{"The org policies in force could not be read: " + err.Error()}
	}
	var out []string
	if eff.DomainsRestricted && principal.Kind != iam.Anonymous {
		m, err := iam.ParseMember(principal.Member())
		if err == nil {
			usher, _ := a.usherServiceAccount(ctx, m)
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
