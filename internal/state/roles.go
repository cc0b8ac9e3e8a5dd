package state

// RolesPrefix holds project custom roles: roles/{project}/{roleId}. Role IDs
// are letters, digits, "_" and "." (never "/"), so the key splits in two.
// The value is the iam.Role, without its etag (the key's revision is that).
const RolesPrefix = "roles/"

// RoleKey is where custom role id of project lives.
func RoleKey(project, id string) string { return RolesPrefix + project + "/" + id }

// ProjectRolesPrefix lists one project's custom roles.
func ProjectRolesPrefix(project string) string { return RolesPrefix + project + "/" }
