package cli

import (
	"errors"

	"github.com/usher-run/usher/internal/iam"
)

// errConditionRequired is gcloud's refusal to add an unconditional binding to
// a policy with conditional ones without saying so (--condition=None).
var errConditionRequired = errors.New("Adding a binding without specifying a condition to a policy containing conditions is prohibited in non-interactive mode. Run the command again with `--condition=None`")

// hasConditions reports whether any binding of p is conditional.
func hasConditions(p *iam.Policy) bool {
	for _, b := range p.Bindings {
		if b.Condition != nil {
			return true
		}
	}
	return false
}
