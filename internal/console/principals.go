package console

import (
	"fmt"
	"slices"
	"strings"

	"github.com/usher-run/usher/internal/iam"
)

// maxPrincipals bounds one Grant Access submission.
const maxPrincipals = 50

// parsePrincipals splits the New principals field (commas or new lines) and
// validates each entry with the API's own member rules. It returns the
// members in canonical spelling, without duplicates, and one message per
// entry that is wrong.
func parsePrincipals(raw string) (members []string, problems []string) {
	fields := strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
	for _, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		m, err := iam.ParseMember(f)
		switch {
		case err != nil:
			// The accepted forms are listed under the field already.
			msg, _, _ := strings.Cut(err.Error(), " members must be")
			problems = append(problems, strings.TrimRight(msg, "; "))
			continue
		case m.Kind == iam.KindDeleted:
			problems = append(problems, fmt.Sprintf("%q is a deleted principal; it can be removed but not granted a role", f))
			continue
		}
		if s := m.String(); !slices.Contains(members, s) {
			members = append(members, s)
		}
	}
	if len(members)+len(problems) > maxPrincipals {
		problems = append(problems, fmt.Sprintf("at most %d principals at a time", maxPrincipals))
	}
	if len(members) == 0 && len(problems) == 0 {
		problems = append(problems, "Enter at least one principal, such as user:alice@example.com or allUsers.")
	}
	return members, problems
}

// publicMembers returns the members that stand for people Usher does not
// know individually (allUsers, allAuthenticatedUsers).
func publicMembers(members []string) []string {
	var out []string
	for _, m := range members {
		if pm, err := iam.ParseMember(m); err == nil && pm.IsPublic() {
			out = append(out, m)
		}
	}
	return out
}

// principalKind labels a member's type for the Permissions table.
func principalKind(member string) (display, kind string) {
	m, err := iam.ParseMember(member)
	if err != nil {
		return member, "Unrecognized"
	}
	switch m.Kind {
	case iam.KindAllUsers:
		return member, "Public: anyone on the internet"
	case iam.KindAllAuthenticatedUsers:
		return member, "Public: any signed-in account"
	case iam.KindUser:
		return m.Value, "User"
	case iam.KindServiceAccount:
		return m.Value, "Service account"
	case iam.KindGroup:
		return m.Value, "Group"
	case iam.KindDomain:
		return m.Value, "Domain"
	case iam.KindDeleted:
		return member, "Deleted principal"
	}
	return member, "Unrecognized"
}
