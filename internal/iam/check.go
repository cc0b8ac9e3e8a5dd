package iam

import (
	"fmt"
	"strings"
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
	return p.Member()
}

// Level is one resource in the hierarchy and its policy, outermost first
// (project, then service). A nil Policy means none is set.
type Level struct {
	Resource string
	Policy   *Policy
}

// Decision is the evaluator's answer, with enough to explain it.
type Decision struct {
	Allowed    bool
	Permission string
	// On allow: the binding that granted it.
	Resource string
	Role     string
	Member   string
}

// Explain says why, in one sentence fit for a log line or a 403 page.
func (d Decision) Explain(p Principal) string {
	if d.Allowed {
		return fmt.Sprintf("%s holds %s through %s granted to %s on %s", p, d.Permission, d.Role, d.Member, d.Resource)
	}
	return fmt.Sprintf("%s does not have %s: no binding on the service or its project grants a role with that permission to this principal", p, d.Permission)
}

// grant remembers which binding matched, for explanations.
type grant struct{ resource, role, member string }

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
}

// Compile collects the members holding perm through unconditional bindings of
// the given levels. Conditional bindings grant nothing here: they are evaluated
// by a condition-aware evaluator or, where none is configured, fail closed.
func (rs *Roles) Compile(perm string, levels ...Level) *Grantees {
	g := &Grantees{
		permission:      perm,
		users:           map[string]*grant{},
		serviceAccounts: map[string]*grant{},
		groups:          map[string]*grant{},
		domains:         map[string]*grant{},
	}
	for _, lvl := range levels {
		if lvl.Policy == nil {
			continue
		}
		for _, b := range lvl.Policy.Bindings {
			if b.Condition != nil {
				continue
			}
			role, ok := rs.Lookup(b.Role)
			if !ok || !role.Has(perm) {
				continue
			}
			for _, ms := range b.Members {
				m, err := ParseMember(ms)
				if err != nil {
					continue // stored policies were validated; never let junk grant
				}
				gr := grant{lvl.Resource, b.Role, ms}
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

// Public reports whether anyone at all, without credentials, holds the permission.
func (g *Grantees) Public() bool { return g.allUsers != nil }

// Decide answers for one principal.
func (g *Grantees) Decide(p Principal) Decision {
	if gr := g.match(p); gr != nil {
		return Decision{Allowed: true, Permission: g.permission, Resource: gr.resource, Role: gr.role, Member: gr.member}
	}
	return Decision{Permission: g.permission}
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

// Check decides whether p holds perm given the hierarchy's policies.
func (rs *Roles) Check(p Principal, perm string, levels ...Level) Decision {
	return rs.Compile(perm, levels...).Decide(p)
}
