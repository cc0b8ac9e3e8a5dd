package iam

import (
	"fmt"
	"strings"
	"time"
)

// PrincipalKind says who is calling.
type PrincipalKind int

const (
	// Anonymous callers presented no credentials; only allUsers matches them.
	Anonymous PrincipalKind = iota
	User
	ServiceAccount
)

// Principal is a verified caller.
type Principal struct {
	Kind PrincipalKind
	// Email is lower-case.
	Email string
	// Groups are group emails asserted by a trusted issuer, lower-case.
	Groups []string
	// Subject names, for logs only, an external user whose issuer did not
	// verify an email (Email is then empty).
	Subject string
}

// NewExternalPrincipal is a user authenticated by a trusted external issuer.
// email is "" when the issuer did not verify one: such a principal matches
// allAuthenticatedUsers and its groups only. It is never a service account.
func NewExternalPrincipal(email, subject string, groups []string) Principal {
	return Principal{Kind: User, Email: strings.ToLower(email), Groups: groups, Subject: subject}
}

// NewPrincipal classifies a verified email as a user or a service account.
func NewPrincipal(email string) Principal {
	email = strings.ToLower(email)
	if IsServiceAccountEmail(email) {
		return Principal{Kind: ServiceAccount, Email: email}
	}
	return Principal{Kind: User, Email: email}
}

// IsServiceAccountEmail reports whether email names a service account.
func IsServiceAccountEmail(email string) bool {
	return strings.HasSuffix(email, ".gserviceaccount.com")
}

// Member is the policy member string naming this principal.
func (p Principal) Member() string {
	switch p.Kind {
	case User:
		return "user:" + p.Email
	case ServiceAccount:
		return "serviceAccount:" + p.Email
	}
	return "allUsers"
}

func (p Principal) String() string {
	if p.Kind == Anonymous {
		return "anonymous caller"
	}
	if p.Email == "" && p.Subject != "" {
		return "external subject " + p.Subject
	}
	return p.Member()
}

// Level is one resource in the hierarchy and its policy, outermost first
// (project, then service). A nil Policy means none is set.
type Level struct {
	Resource string
	Policy   *Policy
	// Roles are the custom roles defined on this resource (a project's),
	// which bindings here and on resources below it may grant. Only roles
	// named Resource+"/roles/ID" count.
	Roles *Roles
}

// Decision is the evaluator's answer, with enough to explain it.
type Decision struct {
	Allowed    bool
	Permission string
	// On allow: the binding that granted it.
	Resource string
	Role     string
	Member   string
	// Condition is the title of the granting binding's condition ("" for an
	// unconditional binding).
	Condition string
	// conditional is set on deny when a conditional binding named the
	// principal but its condition did not hold.
	conditional bool
}

// Explain says why, in one sentence fit for a log line or a 403 page.
func (d Decision) Explain(p Principal) string {
	if d.Allowed && d.Condition != "" {
		return fmt.Sprintf("%s holds %s through %s granted to %s on %s under condition %q", p, d.Permission, d.Role, d.Member, d.Resource, d.Condition)
	}
	if d.Allowed {
		return fmt.Sprintf("%s holds %s through %s granted to %s on %s", p, d.Permission, d.Role, d.Member, d.Resource)
	}
	if d.conditional {
		return fmt.Sprintf("%s does not have %s: the only bindings granting it to this principal are conditional, and no condition held for this request", p, d.Permission)
	}
	return fmt.Sprintf("%s does not have %s: no binding on the service or its project grants a role with that permission to this principal", p, d.Permission)
}

// grant remembers which binding matched, for explanations.
type grant struct{ resource, role, member, condition string }

// conditionalGrant is a member of a conditional binding: it grants only when
// the condition holds for the request.
type conditionalGrant struct {
	member Member
	cond   *condition
	grant  grant
}

// Grantees is every member holding one permission across a hierarchy, compiled
// so that deciding for a principal costs a few map lookups and no allocation.
// It is immutable once built.
type Grantees struct {
	permission       string
	allUsers         *grant
	allAuthenticated *grant
	users            map[string]*grant
	serviceAccounts  map[string]*grant
	groups           map[string]*grant
	domains          map[string]*grant
	// conditional grants, in policy order; empty for most resources, which
	// keeps their decisions free of condition evaluation.
	conditional []conditionalGrant
	// resource is what conditions see as resource.* (the innermost level).
	resource *resourceAttrs
}

// Compile collects the members holding perm through the bindings of the given
// levels. Unconditional bindings go into maps; conditional ones keep their
// compiled expression for DecideAt. A role is looked up among rs (predefined)
// and the custom roles of the levels in scope (Level.Roles).
func (rs *Roles) Compile(perm string, levels ...Level) *Grantees {
	g := &Grantees{
		permission:      perm,
		users:           map[string]*grant{},
		serviceAccounts: map[string]*grant{},
		groups:          map[string]*grant{},
		domains:         map[string]*grant{},
	}
	if len(levels) > 0 {
		g.resource = attributesOf(levels[len(levels)-1].Resource)
	}
	for i, lvl := range levels {
		if lvl.Policy == nil {
			continue
		}
		for _, b := range lvl.Policy.Bindings {
			role, ok := rs.lookupAt(b.Role, levels, i)
			if !ok || !role.Has(perm) {
				continue
			}
			var cond *condition
			if b.Condition != nil {
				if cond = rs.conditions.get(b.Condition.Expression); cond == nil {
					continue // does not compile: grants nothing
				}
			}
			for _, ms := range b.Members {
				m, err := ParseMember(ms)
				if err != nil {
					continue // stored policies were validated; never let junk grant
				}
				gr := grant{lvl.Resource, b.Role, ms, ""}
				if cond != nil {
					gr.condition = b.Condition.Title
					if m.Kind != KindDeleted {
						g.conditional = append(g.conditional, conditionalGrant{member: m, cond: cond, grant: gr})
					}
					continue
				}
				switch m.Kind {
				case KindAllUsers:
					if g.allUsers == nil {
						g.allUsers = &gr
					}
				case KindAllAuthenticatedUsers:
					if g.allAuthenticated == nil {
						g.allAuthenticated = &gr
					}
				case KindUser:
					setOnce(g.users, m.Value, gr)
				case KindServiceAccount:
					setOnce(g.serviceAccounts, m.Value, gr)
				case KindGroup:
					setOnce(g.groups, m.Value, gr)
				case KindDomain:
					setOnce(g.domains, m.Value, gr)
				}
			}
		}
	}
	return g
}

func setOnce(m map[string]*grant, k string, g grant) {
	if _, ok := m[k]; !ok {
		m[k] = &g
	}
}

// Public reports whether anyone at all, without credentials, holds the
// permission through an unconditional binding.
func (g *Grantees) Public() bool { return g.allUsers != nil }

// ConditionallyPublic reports whether a conditional binding grants the
// permission to allUsers: whether anonymous requests need DecideAt.
func (g *Grantees) ConditionallyPublic() bool {
	for i := range g.conditional {
		if g.conditional[i].member.Kind == KindAllUsers {
			return true
		}
	}
	return false
}

// HasConditions reports whether any grant depends on a condition.
func (g *Grantees) HasConditions() bool { return len(g.conditional) > 0 }

// DecideAt answers for one principal making a request at now: unconditional
// grants first (a few map lookups, no allocation), then conditional bindings
// naming the principal, whose conditions are evaluated with request.time =
// now. A condition that errors grants nothing.
func (g *Grantees) DecideAt(p Principal, now time.Time) Decision {
	if gr := g.match(p); gr != nil {
		return g.allow(gr)
	}
	if len(g.conditional) == 0 {
		return Decision{Permission: g.permission}
	}
	named := false
	for i := range g.conditional {
		cg := &g.conditional[i]
		if !cg.member.admits(p) {
			continue
		}
		named = true
		if cg.cond.Holds(g.resource, now) {
			return g.allow(&cg.grant)
		}
	}
	return Decision{Permission: g.permission, conditional: named}
}

// DecideIndividuallyAt is DecideAt with the grants to allUsers and
// allAuthenticatedUsers left out: whether p holds the permission through a
// binding that names it (its user or service account, its email's domain,
// one of its groups), as it would if every binding open to anyone were
// removed. It tells a caller the owner granted apart from one that merely
// has some account (the gateway's anonymous rate limits). Like DecideAt it
// allocates nothing outside condition evaluation.
func (g *Grantees) DecideIndividuallyAt(p Principal, now time.Time) Decision {
	if gr := g.matchNamed(p); gr != nil {
		return g.allow(gr)
	}
	named := false
	for i := range g.conditional {
		cg := &g.conditional[i]
		if cg.member.IsPublic() || !cg.member.admits(p) {
			continue
		}
		named = true
		if cg.cond.Holds(g.resource, now) {
			return g.allow(&cg.grant)
		}
	}
	return Decision{Permission: g.permission, conditional: named}
}

// Decide answers for one principal without request context: conditional
// bindings grant nothing (they fail closed). Request paths use DecideAt.
func (g *Grantees) Decide(p Principal) Decision {
	if gr := g.match(p); gr != nil {
		return g.allow(gr)
	}
	return Decision{Permission: g.permission}
}

func (g *Grantees) allow(gr *grant) Decision {
	return Decision{Allowed: true, Permission: g.permission, Resource: gr.resource, Role: gr.role, Member: gr.member, Condition: gr.condition}
}

// admits reports whether the member names principal p, with the same rules
// as the compiled maps (match).
func (m Member) admits(p Principal) bool {
	switch m.Kind {
	case KindAllUsers:
		return true
	case KindAllAuthenticatedUsers:
		return p.Kind != Anonymous
	case KindUser:
		return p.Kind == User && p.Email == m.Value
	case KindServiceAccount:
		return p.Kind == ServiceAccount && p.Email == m.Value
	case KindDomain:
		_, domain, ok := strings.Cut(p.Email, "@")
		return p.Kind == User && ok && domain == m.Value
	case KindGroup:
		if p.Kind == Anonymous {
			return false
		}
		for _, grp := range p.Groups {
			if grp == m.Value {
				return true
			}
		}
	}
	return false
}

func (g *Grantees) match(p Principal) *grant {
	if g.allUsers != nil {
		return g.allUsers
	}
	if p.Kind == Anonymous {
		return nil
	}
	if g.allAuthenticated != nil {
		return g.allAuthenticated
	}
	return g.matchNamed(p)
}

// matchNamed is match without allUsers and allAuthenticatedUsers: the
// unconditional grant naming p itself, its domain or a group of its.
func (g *Grantees) matchNamed(p Principal) *grant {
	if p.Kind == Anonymous {
		return nil
	}
	switch p.Kind {
	case User:
		if gr, ok := g.users[p.Email]; ok {
			return gr
		}
		if _, domain, ok := strings.Cut(p.Email, "@"); ok {
			if gr, ok := g.domains[domain]; ok {
				return gr
			}
		}
	case ServiceAccount:
		if gr, ok := g.serviceAccounts[p.Email]; ok {
			return gr
		}
	}
	for _, grp := range p.Groups {
		if gr, ok := g.groups[grp]; ok {
			return gr
		}
	}
	return nil
}

// Check decides whether p holds perm given the hierarchy's policies, without
// request context: conditional bindings grant nothing. Use CheckAt.
func (rs *Roles) Check(p Principal, perm string, levels ...Level) Decision {
	return rs.Compile(perm, levels...).Decide(p)
}

// CheckAt decides whether p, making a request at now, holds perm on the
// innermost of levels (which conditions see as resource.name). It is the
// evaluator the gateway uses, compiled for one decision.
func (rs *Roles) CheckAt(p Principal, perm string, now time.Time, levels ...Level) Decision {
	return rs.Compile(perm, levels...).DecideAt(p, now)
}
