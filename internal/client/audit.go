package client

import "net/url"

// AuditLogsPath is a project's audit trail (GET, with query filters).
func AuditLogsPath(project string) string { return ProjectPath(project) + "/auditLogs" }

// TroubleshootPath is the policy troubleshooter (POST an accessTuple).
const TroubleshootPath = "/v1/iam:troubleshoot"

// ServiceFullResourceName is a service's full resource name, as the
// troubleshooter takes it.
func ServiceFullResourceName(project, region, name string) string {
	return "//run.googleapis.com/projects/" + url.PathEscape(project) + "/locations/" + url.PathEscape(region) + "/services/" + url.PathEscape(name)
}
