package client

import (
	"net/url"
	"strings"
)

// RolesPath is the collection of a project's custom roles (IAM v1).
func RolesPath(project string) string { return ProjectPath(project) + "/roles" }

// RolePath names a role: a project custom role by ID, or, for names starting
// with "roles/" (predefined) or "projects/" (a custom role's full name), that
// role.
func RolePath(project, role string) string {
	switch {
	case strings.HasPrefix(role, "roles/"):
		return "/v1/roles/" + url.PathEscape(strings.TrimPrefix(role, "roles/"))
	case strings.HasPrefix(role, "projects/"):
		return "/v1/" + role
	}
	return RolesPath(project) + "/" + url.PathEscape(role)
}
