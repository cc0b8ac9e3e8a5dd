// Package iam is Usher's authorization model, the way Google Cloud IAM defines it:
// policies of bindings from roles to members, roles as sets of permissions, and
// one evaluator that answers whether a principal holds a permission on a
// resource given the policies in force along its hierarchy (project, then service).
//
// It is pure: no I/O, no clocks, no globals that change. The admin API, the
// console and the gateway all decide through it, so a grant means the same
// thing everywhere.
package iam

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Policy is an IAM policy in Google's JSON shape.
type Policy struct {
	Version  int       `json:"version,omitempty"`
	Bindings []Binding `json:"bindings,omitempty"`
	Etag     string    `json:"etag,omitempty"`
}

// Binding grants a role to members, optionally under a condition.
type Binding struct {
	Role      string   `json:"role"`
	Members   []string `json:"members"`
	Condition *Expr    `json:"condition,omitempty"`
}

// Expr is a CEL condition on a binding (policy version 3).
type Expr struct {
	Expression  string `json:"expression"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	Location    string `json:"location,omitempty"`
}

// Policy versions. Conditions need version 3.
const (
	Version1 = 1
	Version3 = 3
)

// EmptyEtag is what Google answers for a resource that never had a policy.
const EmptyEtag = "ACAB"

// Etag renders a store revision as a policy etag: base64 of 8 big-endian bytes,
// padded, as Google's etags are (gcloud chokes on bad padding).
func Etag(revision int64) string {
	if revision <= 0 {
		return EmptyEtag
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(revision))
	return base64.StdEncoding.EncodeToString(b[:])
}

// ParseEtag decodes an etag written by Etag, accepting standard or URL-safe
// base64 with or without padding, since gcloud re-encodes etags URL-safe.
// It returns the revision (0 for EmptyEtag).
func ParseEtag(etag string) (int64, error) {
	raw := strings.TrimRight(etag, "=")
	var (
		b   []byte
		err error
	)
	if strings.ContainsAny(raw, "-_") {
		b, err = base64.RawURLEncoding.DecodeString(raw)
	} else {
		b, err = base64.RawStdEncoding.DecodeString(raw)
	}
	if err != nil {
		return 0, fmt.Errorf("etag %q is not valid base64", etag)
	}
	if etag == EmptyEtag || string(b) == "\x00\x20\x01" {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("etag %q is not an etag this server issued", etag)
	}
	rev := int64(binary.BigEndian.Uint64(b))
	if rev <= 0 {
		return 0, fmt.Errorf("etag %q is not an etag this server issued", etag)
	}
	return rev, nil
}

// Validate checks a policy as setIamPolicy receives it: known roles, well-formed
// members, conditions only with version 3. It returns the first problem as an
// error whose message is fit for an INVALID_ARGUMENT answer.
func (p *Policy) Validate(roles *Roles, scope Scope) error {
	switch p.Version {
	case 0, Version1, Version3:
	default:
		return fmt.Errorf("policy version %d is not supported; use 1 or 3", p.Version)
	}
	for i, b := range p.Bindings {
		if b.Role == "" {
			return fmt.Errorf("bindings[%d]: role is required", i)
		}
		if _, ok := roles.Lookup(b.Role); !ok {
			return fmt.Errorf("bindings[%d]: role %s does not exist or is not supported for this resource", i, b.Role)
		}
		if len(b.Members) == 0 {
			return fmt.Errorf("bindings[%d]: binding for role %s has no members", i, b.Role)
		}
		for _, m := range b.Members {
			mem, err := ParseMember(m)
			if err != nil {
				return fmt.Errorf("bindings[%d]: %w", i, err)
			}
			if scope == ScopeSecret && mem.IsPublic() {
				return fmt.Errorf("bindings[%d]: %s cannot be granted roles on a secret: a secret's value would be anyone's", i, m)
			}
			if scope == ScopeProject && mem.IsPublic() {
				return fmt.Errorf("bindings[%d]: %s cannot be granted roles on a project; grant it on the service instead", i, m)
			}
		}
		if b.Condition != nil {
			if p.Version != Version3 {
				return fmt.Errorf("bindings[%d]: conditional role bindings require policy version 3", i)
			}
			if strings.TrimSpace(b.Condition.Expression) == "" {
				return fmt.Errorf("bindings[%d]: condition expression is empty", i)
			}
			if b.Condition.Title == "" {
				return fmt.Errorf("bindings[%d]: condition title is required", i)
			}
			if err := validateCondition(b); err != nil {
				return fmt.Errorf("bindings[%d] (role %s): %w", i, b.Role, err)
			}
		}
	}
	return nil
}

// Scope is the kind of resource a policy is attached to.
type Scope int

const (
	ScopeService Scope = iota
	ScopeProject
	// ScopeSecret is a Secret Manager secret: no public members.
	ScopeSecret
)

// Normalize returns a canonical copy: bindings with the same role and condition
// merged, members deduplicated and sorted, empty bindings dropped, bindings
// sorted by role. Version is raised to 3 when a condition is present and 1
// otherwise, as Google reports it.
func (p Policy) Normalize() Policy {
	type key struct{ role, cond string }
	merged := map[key]*Binding{}
	var order []key
	for _, b := range p.Bindings {
		k := key{b.Role, conditionKey(b.Condition)}
		mb, ok := merged[k]
		if !ok {
			mb = &Binding{Role: b.Role, Condition: b.Condition}
			merged[k] = mb
			order = append(order, k)
		}
		mb.Members = append(mb.Members, b.Members...)
	}
	out := Policy{Version: Version1, Etag: p.Etag}
	for _, k := range order {
		b := merged[k]
		slices.Sort(b.Members)
		b.Members = slices.Compact(b.Members)
		if len(b.Members) == 0 {
			continue
		}
		if b.Condition != nil {
			out.Version = Version3
		}
		out.Bindings = append(out.Bindings, *b)
	}
	slices.SortStableFunc(out.Bindings, func(a, b Binding) int {
		if c := strings.Compare(a.Role, b.Role); c != 0 {
			return c
		}
		return strings.Compare(conditionKey(a.Condition), conditionKey(b.Condition))
	})
	return out
}

func conditionKey(c *Expr) string {
	if c == nil {
		return ""
	}
	return c.Title + "\x00" + c.Description + "\x00" + c.Expression
}

// AddBinding adds member to role (unconditional unless cond is set) and reports
// whether the policy changed.
func (p *Policy) AddBinding(role, member string, cond *Expr) bool {
	ck := conditionKey(cond)
	for i := range p.Bindings {
		b := &p.Bindings[i]
		if b.Role != role || conditionKey(b.Condition) != ck {
			continue
		}
		if slices.Contains(b.Members, member) {
			return false
		}
		b.Members = append(b.Members, member)
		return true
	}
	p.Bindings = append(p.Bindings, Binding{Role: role, Members: []string{member}, Condition: cond})
	return true
}

// RemoveBinding removes member from role's binding (matching the condition when
// cond is set; any condition when allConditions) and reports whether it changed.
func (p *Policy) RemoveBinding(role, member string, cond *Expr, allConditions bool) bool {
	ck := conditionKey(cond)
	changed := false
	kept := p.Bindings[:0]
	for _, b := range p.Bindings {
		if b.Role == role && (allConditions || conditionKey(b.Condition) == ck) {
			if i := slices.Index(b.Members, member); i >= 0 {
				b.Members = slices.Delete(slices.Clone(b.Members), i, i+1)
				changed = true
			}
		}
		if len(b.Members) > 0 {
			kept = append(kept, b)
		}
	}
	p.Bindings = kept
	return changed
}
