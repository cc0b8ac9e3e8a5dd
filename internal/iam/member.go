package iam

import (
	"fmt"
	"net/mail"
	"strings"
)

// MemberKind is the type part of a member string ("user:", "allUsers", …).
type MemberKind int

const (
	KindAllUsers MemberKind = iota + 1
	KindAllAuthenticatedUsers
	KindUser
	KindServiceAccount
	KindGroup
	KindDomain
	// KindDeleted is a principal that was deleted after being bound
	// ("deleted:user:x@y?uid=…"); it is kept for display and never matches.
	KindDeleted
)

// Member is one parsed policy member.
type Member struct {
	Kind MemberKind
	// Value is the email or domain, lower-cased; empty for allUsers and
	// allAuthenticatedUsers.
	Value string
}

const memberFormHelp = `members must be "allUsers", "allAuthenticatedUsers", "user:EMAIL", "serviceAccount:EMAIL", "group:EMAIL" or "domain:DOMAIN"`

// ParseMember parses a member exactly as Google spells them; anything else is an
// error naming the accepted forms.
func ParseMember(s string) (Member, error) {
	switch s {
	case "allUsers":
		return Member{Kind: KindAllUsers}, nil
	case "allAuthenticatedUsers":
		return Member{Kind: KindAllAuthenticatedUsers}, nil
	}
	for _, special := range []string{"allUsers", "allAuthenticatedUsers"} {
		if strings.EqualFold(s, special) {
			return Member{}, fmt.Errorf("invalid member %q: did you mean %q? (member types are case-sensitive)", s, special)
		}
	}
	kind, value, ok := strings.Cut(s, ":")
	if !ok && validateEmail(s) == nil {
		return Member{}, fmt.Errorf("invalid member %q: did you mean \"user:%s\" or \"serviceAccount:%s\"? %s", s, s, s, memberFormHelp)
	}
	if !ok {
		if near := closest(s, 3, "allUsers", "allAuthenticatedUsers"); near != "" {
			return Member{}, fmt.Errorf("invalid member %q: did you mean %q? %s", s, near, memberFormHelp)
		}
	}
	if !ok || value == "" {
		return Member{}, fmt.Errorf("invalid member %q: %s", s, memberFormHelp)
	}
	switch kind {
	case "user", "group":
		if err := validateEmail(value); err != nil {
			return Member{}, fmt.Errorf("invalid member %q: %w", s, err)
		}
		k := KindUser
		if kind == "group" {
			k = KindGroup
		}
		return Member{Kind: k, Value: strings.ToLower(value)}, nil
	case "serviceAccount":
		if err := validateEmail(value); err != nil {
			return Member{}, fmt.Errorf("invalid member %q: %w", s, err)
		}
		return Member{Kind: KindServiceAccount, Value: strings.ToLower(value)}, nil
	case "domain":
		if err := validateDomain(value); err != nil {
			return Member{}, fmt.Errorf("invalid member %q: %w", s, err)
		}
		return Member{Kind: KindDomain, Value: strings.ToLower(value)}, nil
	case "deleted":
		inner, _, _ := strings.Cut(value, "?")
		if _, err := ParseMember(inner); err != nil {
			return Member{}, fmt.Errorf("invalid member %q: %w", s, err)
		}
		return Member{Kind: KindDeleted, Value: value}, nil
	}
	if near := closest(kind, 3, "user", "serviceAccount", "group", "domain"); near != "" {
		return Member{}, fmt.Errorf("invalid member %q: unknown member type %q: did you mean %q? %s", s, kind, near+":"+value, memberFormHelp)
	}
	return Member{}, fmt.Errorf("invalid member %q: unknown member type %q; %s", s, kind, memberFormHelp)
}

// IsPublic reports whether the member stands for callers Usher does not know
// individually; such members cannot be bound at project level.
func (m Member) IsPublic() bool {
	return m.Kind == KindAllUsers || m.Kind == KindAllAuthenticatedUsers
}

func (m Member) String() string {
	switch m.Kind {
	case KindAllUsers:
		return "allUsers"
	case KindAllAuthenticatedUsers:
		return "allAuthenticatedUsers"
	case KindUser:
		return "user:" + m.Value
	case KindServiceAccount:
		return "serviceAccount:" + m.Value
	case KindGroup:
		return "group:" + m.Value
	case KindDomain:
		return "domain:" + m.Value
	case KindDeleted:
		return "deleted:" + m.Value
	}
	return "unknown"
}

func validateEmail(s string) error {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || strings.Contains(domain, "@") {
		return fmt.Errorf("%q is not an email address", s)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		return fmt.Errorf("%q is not an email address", s)
	}
	if strings.ContainsAny(s, " \t\r\n<>\"(),;:\\[]") {
		return fmt.Errorf("%q is not an email address", s)
	}
	return validateDomain(domain)
}

func validateDomain(d string) error {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return fmt.Errorf("%q is not a domain name", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a domain name", d)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a domain name", d)
			}
		}
	}
	return nil
}
