// Package orgpolicy is Usher's organization guardrails: policies in the shape
// of Google's Organization Policy API (orgpolicy.googleapis.com v2 Policy)
// for three of Google's constraints, and their evaluation. It does no I/O;
// package api stores policies, reads them on every IAM or service write and
// refuses what they forbid.
//
// Constraints:
//
//   - constraints/iam.allowedPolicyMemberDomains (list; Google's
//     domain-restricted sharing). A rule `values: {allowedValues: [DOMAIN…]}`
//     restricts IAM members to those domains: allUsers and
//     allAuthenticatedUsers are refused, and user:, group:, serviceAccount:
//     and domain: members must be in an allowed domain (exact match of the
//     email's domain, no subdomains). Google's values are Workspace customer
//     IDs; Usher has no directory, so its values are domains (an "is:" prefix
//     is accepted). Service accounts of Usher's own projects are always
//     allowed. `denyAll: true` allows only those; `allowAll: true` lifts the
//     restriction.
//   - constraints/run.managed.requireInvokerIam (boolean). A rule
//     `enforce: true` refuses turning the invoker IAM check off
//     (run.googleapis.com/invoker-iam-disabled, v2 invokerIamDisabled).
//   - constraints/iam.disableServiceAccountKeyCreation (boolean). A rule
//     `enforce: true` refuses creating service-account keys (key files are
//     long-lived credentials); existing keys keep working until deleted.
//
// A policy names its resource and constraint:
// projects/P/policies/iam.allowedPolicyMemberDomains. Policies come from two
// places, and every one in force applies (see Evaluate): the project's own,
// set through the API, and the server's (`usher serve --org-policy-file`),
// which project owners cannot lift. Only changes are checked: members already
// bound, and services whose check is already off, stay as they are.
package orgpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/usher-run/usher/internal/iam"
)

// The constraints Usher enforces, named as Google names them.
const (
	AllowedPolicyMemberDomains = "constraints/iam.allowedPolicyMemberDomains"
	RequireInvokerIAM          = "constraints/run.managed.requireInvokerIam"
	DisableKeyCreation         = "constraints/iam.disableServiceAccountKeyCreation"
)

// Supported lists the constraints Usher enforces, for messages.
func Supported() string {
	var names []string
	for _, c := range Constraints() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// Constraint is Google's v2 Constraint resource, for listing.
type Constraint struct {
	Name              string             `json:"name"`
	DisplayName       string             `json:"displayName"`
	Description       string             `json:"description"`
	ConstraintDefault string             `json:"constraintDefault"`
	ListConstraint    *ListConstraint    `json:"listConstraint,omitempty"`
	BooleanConstraint *BooleanConstraint `json:"booleanConstraint,omitempty"`
}

// ListConstraint marks a constraint whose rules carry values.
type ListConstraint struct {
	SupportsIn    bool `json:"supportsIn"`
	SupportsUnder bool `json:"supportsUnder"`
}

// BooleanConstraint marks a constraint whose rules carry enforce.
type BooleanConstraint struct{}

// Constraints lists what Usher supports, by constraint name.
func Constraints() []Constraint {
	return []Constraint{
		{
			Name:              AllowedPolicyMemberDomains,
			DisplayName:       "Domain restricted sharing",
			Description:       "The domains whose users, groups and service accounts may be added to IAM policies (Usher uses domains where Google uses customer IDs). When set, allUsers and allAuthenticatedUsers cannot be bound. Service accounts of Usher's own projects are always allowed.",
			ConstraintDefault: "ALLOW",
			ListConstraint:    &ListConstraint{},
		},
		{
			Name:              RequireInvokerIAM,
			DisplayName:       "Require invoker IAM for Cloud Run services",
			Description:       "When enforced, the invoker IAM check of a Cloud Run service cannot be disabled (run.googleapis.com/invoker-iam-disabled, v2 invokerIamDisabled).",
			ConstraintDefault: "ALLOW",
			BooleanConstraint: &BooleanConstraint{},
		},
		{
			Name:              DisableKeyCreation,
			DisplayName:       "Disable service account key creation",
			Description:       "When enforced, service-account keys cannot be created (gcloud iam service-accounts keys create); existing keys keep working until deleted.",
			ConstraintDefault: "ALLOW",
			BooleanConstraint: &BooleanConstraint{},
		},
	}
}

// Policy is Google's v2 Policy: one constraint's rules on one resource.
type Policy struct {
	// Name is RESOURCE/policies/CONSTRAINT_ID, e.g.
	// projects/my-project/policies/iam.allowedPolicyMemberDomains.
	Name string      `json:"name"`
	Spec *PolicySpec `json:"spec,omitempty"`
	// DryRunSpec is not supported and refused when set.
	DryRunSpec *PolicySpec `json:"dryRunSpec,omitempty"`
	Etag       string      `json:"etag,omitempty"`
}

// PolicySpec holds the rules.
type PolicySpec struct {
	Etag       string `json:"etag,omitempty"`
	UpdateTime string `json:"updateTime,omitempty"`
	Rules      []Rule `json:"rules,omitempty"`
	// InheritFromParent is accepted: a project's policy always combines
	// with the server's.
	InheritFromParent bool `json:"inheritFromParent,omitempty"`
	// Reset restores the constraint's default (no restriction) at this
	// resource; the server's policies still apply.
	Reset bool `json:"reset,omitempty"`
}

// Rule is one rule of a spec. Usher takes one rule per policy.
type Rule struct {
	Values    *StringValues `json:"values,omitempty"`
	AllowAll  bool          `json:"allowAll,omitempty"`
	DenyAll   bool          `json:"denyAll,omitempty"`
	Enforce   *bool         `json:"enforce,omitempty"`
	Condition *iam.Expr     `json:"condition,omitempty"`
}

// StringValues are a list rule's values.
type StringValues struct {
	AllowedValues []string `json:"allowedValues,omitempty"`
	DeniedValues  []string `json:"deniedValues,omitempty"`
}

// ShortName turns "constraints/X", "X" or ".../policies/X" into "X", the
// constraint ID used in policy names and paths; ok is false for
// constraints Usher does not support.
func ShortName(s string) (id string, ok bool) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "/policies/"); i >= 0 {
		s = s[i+len("/policies/"):]
	}
	s = strings.TrimPrefix(s, "constraints/")
	for _, c := range Constraints() {
		if "constraints/"+s == c.Name {
			return s, true
		}
	}
	return s, false
}

// ConstraintName is "constraints/"+id.
func ConstraintName(id string) string { return "constraints/" + id }

// PolicyName is RESOURCE/policies/ID (resource e.g. "projects/P").
func PolicyName(resource, id string) string { return resource + "/policies/" + id }

// ParseName splits RESOURCE/policies/ID into the resource ("projects/P",
// "organizations/O", or "" for a bare constraint name) and the supported
// constraint ID.
func ParseName(name string) (resource, id string, err error) {
	resource, rest, found := strings.Cut(name, "/policies/")
	if !found {
		resource, rest = "", name
	}
	id, ok := ShortName(rest)
	if rest == "" || strings.Contains(id, "/") {
		return "", "", fmt.Errorf("policy name %q must be RESOURCE/policies/CONSTRAINT, e.g. projects/PROJECT/policies/iam.allowedPolicyMemberDomains", name)
	}
	if !ok {
		return "", "", fmt.Errorf("constraint %q is not supported; Usher enforces %s", ConstraintName(id), strings.Join(supportedNames(), " and "))
	}
	if found {
		kind, ident, _ := strings.Cut(resource, "/")
		if (kind != "projects" && kind != "organizations") || ident == "" || strings.Contains(ident, "/") {
			return "", "", fmt.Errorf("policy name %q: the resource must be projects/PROJECT (or organizations/ORG in the server's file)", name)
		}
	}
	return resource, id, nil
}

func supportedNames() []string {
	var out []string
	for _, c := range Constraints() {
		out = append(out, c.Name)
	}
	return out
}

func isList(id string) bool { return ConstraintName(id) == AllowedPolicyMemberDomains }

// Normalize validates p's spec for constraint id and returns a copy in
// canonical form (domains lower-cased, sorted, without "is:"), without
// etags, update time or dry-run spec. The name is left to the caller.
func Normalize(p *Policy, id string) (*Policy, error) {
	if p.DryRunSpec != nil {
		return nil, errors.New("dryRunSpec is not supported: Usher enforces policies or nothing")
	}
	out := &Policy{Name: p.Name, Spec: &PolicySpec{}}
	if p.Spec == nil {
		return nil, fmt.Errorf("policy %s has no spec: give spec.rules (or spec.reset: true)", p.Name)
	}
	out.Spec.InheritFromParent = p.Spec.InheritFromParent
	if p.Spec.Reset {
		if len(p.Spec.Rules) > 0 {
			return nil, errors.New("spec.reset cannot be combined with spec.rules")
		}
		out.Spec.Reset = true
		return out, nil
	}
	if len(p.Spec.Rules) != 1 {
		return nil, fmt.Errorf("policy %s must have exactly one rule in spec.rules, got %d", p.Name, len(p.Spec.Rules))
	}
	r := p.Spec.Rules[0]
	if r.Condition != nil {
		return nil, errors.New("conditional rules (spec.rules[0].condition) are not supported")
	}
	if isList(id) {
		if r.Enforce != nil {
			return nil, fmt.Errorf("%s is a list constraint: use values.allowedValues, allowAll or denyAll, not enforce", ConstraintName(id))
		}
		set := 0
		for _, b := range []bool{r.Values != nil, r.AllowAll, r.DenyAll} {
			if b {
				set++
			}
		}
		if set != 1 {
			return nil, errors.New("spec.rules[0] must have exactly one of values, allowAll and denyAll")
		}
		nr := Rule{AllowAll: r.AllowAll, DenyAll: r.DenyAll}
		if r.Values != nil {
			if len(r.Values.DeniedValues) > 0 {
				return nil, fmt.Errorf("%s supports allowedValues only, not deniedValues", ConstraintName(id))
			}
			if len(r.Values.AllowedValues) == 0 {
				return nil, errors.New("spec.rules[0].values.allowedValues is empty: list the allowed domains (or use denyAll: true)")
			}
			var domains []string
			for _, v := range r.Values.AllowedValues {
				d, err := parseDomain(v)
				if err != nil {
					return nil, err
				}
				domains = append(domains, d)
			}
			slices.Sort(domains)
			nr.Values = &StringValues{AllowedValues: slices.Compact(domains)}
		}
		out.Spec.Rules = []Rule{nr}
		return out, nil
	}
	if r.Values != nil || r.AllowAll || r.DenyAll || r.Enforce == nil {
		return nil, fmt.Errorf("%s is a boolean constraint: its rule is enforce: true or enforce: false", ConstraintName(id))
	}
	enforce := *r.Enforce
	out.Spec.Rules = []Rule{{Enforce: &enforce}}
	return out, nil
}

// parseDomain reads one allowed value: a domain, optionally "is:DOMAIN".
func parseDomain(v string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "is:")))
	if strings.HasPrefix(d, "under:") {
		return "", fmt.Errorf("allowed value %q: \"under:\" is not supported; list domains", v)
	}
	d = strings.TrimPrefix(d, "@")
	if _, err := iam.ParseMember("domain:" + d); err != nil {
		return "", fmt.Errorf("allowed value %q is not a domain name (Usher's values are domains such as example.com)", v)
	}
	return d, nil
}

// Source is a policy in force and where it was set, for messages.
type Source struct {
	Policy *Policy
	// Origin says who set it: "projects/P" or "the server's org policy
	// file PATH".
	Origin string
}

// Effective is what the policies in force for one project allow.
type Effective struct {
	// DomainsRestricted: members must be in Domains (or be service accounts
	// of Usher's own projects); allUsers and allAuthenticatedUsers are
	// refused.
	DomainsRestricted bool
	Domains           []string // sorted; may be empty (denyAll)
	DomainsOrigin     []string
	// RequireInvokerIAM: the invoker IAM check cannot be turned off.
	RequireInvokerIAM bool
	InvokerOrigin     []string
	// DisableKeyCreation: service-account keys cannot be created.
	DisableKeyCreation bool
	KeyOrigin          []string
}

// Evaluate combines every policy in force: each restricting policy applies,
// so allowed domains are the intersection of the lists, and the invoker
// check is required when any policy enforces it. A policy cannot lift
// another's restriction (allowAll, reset and enforce: false only mean "no
// restriction from this policy").
func Evaluate(sources []Source) Effective {
	var e Effective
	for _, s := range sources {
		p := s.Policy
		if p == nil || p.Spec == nil || p.Spec.Reset || len(p.Spec.Rules) == 0 {
			continue
		}
		_, id, err := ParseName(p.Name)
		if err != nil {
			continue // Normalize-d policies always parse
		}
		r := p.Spec.Rules[0]
		switch ConstraintName(id) {
		case AllowedPolicyMemberDomains:
			var allowed []string
			switch {
			case r.DenyAll:
			case r.Values != nil:
				allowed = r.Values.AllowedValues
			default:
				continue
			}
			if e.DomainsRestricted {
				e.Domains = slices.DeleteFunc(e.Domains, func(d string) bool { return !slices.Contains(allowed, d) })
			} else {
				e.DomainsRestricted = true
				e.Domains = slices.Sorted(slices.Values(slices.Clone(allowed)))
			}
			e.DomainsOrigin = append(e.DomainsOrigin, s.Origin)
		case RequireInvokerIAM:
			if r.Enforce != nil && *r.Enforce {
				e.RequireInvokerIAM = true
				e.InvokerOrigin = append(e.InvokerOrigin, s.Origin)
			}
		case DisableKeyCreation:
			if r.Enforce != nil && *r.Enforce {
				e.DisableKeyCreation = true
				e.KeyOrigin = append(e.KeyOrigin, s.Origin)
			}
		}
	}
	return e
}

// MemberAllowed reports whether the domain restriction allows binding m.
// usherAccount reports whether a service account email belongs to one of
// Usher's own projects.
func (e Effective) MemberAllowed(m iam.Member, usherAccount func(email string) bool) bool {
	if !e.DomainsRestricted {
		return true
	}
	var domain string
	switch m.Kind {
	case iam.KindAllUsers, iam.KindAllAuthenticatedUsers:
		return false
	case iam.KindDeleted:
		return true // never matches anyone: grants nothing
	case iam.KindDomain:
		domain = m.Value
	case iam.KindServiceAccount:
		if usherAccount != nil && usherAccount(m.Value) {
			return true
		}
		fallthrough
	default:
		_, d, ok := strings.Cut(m.Value, "@")
		if !ok {
			return false
		}
		domain = d
	}
	return slices.Contains(e.Domains, strings.ToLower(domain))
}

// Policy renders the effective policy of constraint id for resource as
// a Policy (getEffectivePolicy).
func (e Effective) Policy(resource, id string) *Policy {
	p := &Policy{Name: PolicyName(resource, id), Spec: &PolicySpec{}}
	switch ConstraintName(id) {
	case AllowedPolicyMemberDomains:
		switch {
		case !e.DomainsRestricted:
			p.Spec.Rules = []Rule{{AllowAll: true}}
		case len(e.Domains) == 0:
			p.Spec.Rules = []Rule{{DenyAll: true}}
		default:
			p.Spec.Rules = []Rule{{Values: &StringValues{AllowedValues: slices.Clone(e.Domains)}}}
		}
	case RequireInvokerIAM:
		enforce := e.RequireInvokerIAM
		p.Spec.Rules = []Rule{{Enforce: &enforce}}
	case DisableKeyCreation:
		enforce := e.DisableKeyCreation
		p.Spec.Rules = []Rule{{Enforce: &enforce}}
	}
	return p
}

// Parse reads one policy, or several (a list, or {"policies": [...]}), as
// YAML or JSON — what `gcloud org-policies set-policy` and Usher's server
// file take.
func Parse(b []byte) ([]*Policy, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := json.Unmarshal(j, &raw); err != nil {
		return nil, err
	}
	var out []*Policy
	decode := func(v any) error {
		b, _ := json.Marshal(v)
		var p Policy
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		out = append(out, &p)
		return nil
	}
	switch v := raw.(type) {
	case []any:
		for _, item := range v {
			if err := decode(item); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		if list, ok := v["policies"].([]any); ok && len(v) == 1 {
			for _, item := range list {
				if err := decode(item); err != nil {
					return nil, err
				}
			}
		} else if err := decode(v); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("expected a policy (name, spec) or a list of policies")
	}
	if len(out) == 0 {
		return nil, errors.New("no policies")
	}
	return out, nil
}

// FilePolicy is a policy of the server's file and the projects it covers.
type FilePolicy struct {
	Policy *Policy
	// Project is the one project it covers, or "" for all (organizations/…
	// or a bare constraint name).
	Project string
}

// LoadFile reads and validates the server's org policy file: policies named
// organizations/ORG/policies/C or C (every project) or projects/P/policies/C
// (project P only).
func LoadFile(path string) ([]FilePolicy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("org policy file: %w", err)
	}
	ps, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("org policy file %s: %w", path, err)
	}
	var out []FilePolicy
	for _, p := range ps {
		resource, id, err := ParseName(p.Name)
		if err != nil {
			return nil, fmt.Errorf("org policy file %s: %w", path, err)
		}
		n, err := Normalize(p, id)
		if err != nil {
			return nil, fmt.Errorf("org policy file %s: %s: %w", path, p.Name, err)
		}
		fp := FilePolicy{Policy: n}
		if project, ok := strings.CutPrefix(resource, "projects/"); ok {
			fp.Project = project
		} else if resource == "" {
			resource = "organizations/-"
		}
		n.Name = PolicyName(resource, id)
		out = append(out, fp)
	}
	return out, nil
}
