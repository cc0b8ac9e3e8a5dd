package apis

import "github.com/usher-run/usher/internal/iam"

// The policy troubleshooter's request and answer, in the shape of Google's
// Policy Troubleshooter API v1.

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
