package state

// OrgPoliciesPrefix holds organization policies (guardrails, package
// orgpolicy): orgpolicies/PROJECT/CONSTRAINT_ID, one per constraint, e.g.
// orgpolicies/local-project/iam.allowedPolicyMemberDomains.
const OrgPoliciesPrefix = "orgpolicies/"

func OrgPolicyKey(project, constraintID string) string {
	return OrgPoliciesPrefix + project + "/" + constraintID
}
