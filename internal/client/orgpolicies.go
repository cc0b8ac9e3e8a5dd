package client

import "net/url"

// OrgPoliciesPath is a project's organization policies (Org Policy API v2).
func OrgPoliciesPath(project string) string {
	return "/v2/projects/" + url.PathEscape(project) + "/policies"
}

// OrgPolicyPath is a project's policy for one constraint ID
// ("iam.allowedPolicyMemberDomains").
func OrgPolicyPath(project, constraintID string) string {
	return OrgPoliciesPath(project) + "/" + url.PathEscape(constraintID)
}

// OrgConstraintsPath lists the constraints a project's policies may set.
func OrgConstraintsPath(project string) string {
	return "/v2/projects/" + url.PathEscape(project) + "/constraints"
}
