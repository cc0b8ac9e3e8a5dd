package iam

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Permissions guarding custom roles (IAM v1 projects.roles).
const (
	PermRolesCreate   = "iam.roles.create"
	PermRolesGet      = "iam.roles.get"
	PermRolesList     = "iam.roles.list"
	PermRolesUpdate   = "iam.roles.update"
	PermRolesDelete   = "iam.roles.delete"
	PermRolesUndelete = "iam.roles.undelete"
)

// Launch stages of a role, as IAM v1 spells them. A new custom role is ALPHA
// unless told otherwise; a DISABLED one grants nothing.
const (
	StageAlpha      = "ALPHA"
	StageBeta       = "BETA"
	StageGA         = "GA"
	StageDeprecated = "DEPRECATED"
	StageDisabled   = "DISABLED"
	StageEAP        = "EAP"
)

var stages = []string{StageAlpha, StageBeta, StageGA, StageDeprecated, StageDisabled, StageEAP}

// ownerOnly are permissions Usher checks that no predefined role below
// roles/owner includes; KnownPermissions adds them to the ones roles list.
var ownerOnly = []string{PermProjectsSetIamPolicy, PermOrgPolicySet}

// KnownPermissions returns every permission Usher checks, sorted: the ones a
// custom role may include (a permission nothing checks would grant nothing,
// so IAM refuses it rather than let a role look broader than it is).
func KnownPermissions() []string {
	known := slices.Clone(ownerOnly)
	for _, r := range Predefined().List() {
		known = append(known, r.Permissions...)
	}
	slices.Sort(known)
	return slices.Compact(known)
}

// Custom role limits. IDs follow IAM's rule; the rest bound what is stored.
const (
	maxRoleTitle       = 100
	maxRoleDescription = 300
	maxRolePermissions = 3000
)

var roleIDRE = regexp.MustCompile(`^[a-zA-Z0-9_.]{3,64}$`)

// CustomRoleName is the name of project custom role id: projects/P/roles/ID.
func CustomRoleName(project, id string) string {
	return "projects/" + project + "/roles/" + id
}

// ParseCustomRoleName splits projects/P/roles/ID; ok is false for any other
// name (predefined roles, organization roles).
func ParseCustomRoleName(name string) (project, id string, ok bool) {
	rest, found := strings.CutPrefix(name, "projects/")
	if !found {
		return "", "", false
	}
	project, id, found = strings.Cut(rest, "/roles/")
	if !found || project == "" || strings.Contains(project, "/") || !roleIDRE.MatchString(id) {
		return "", "", false
	}
	return project, id, true
}

// ValidateRoleID checks a custom role ID as IAM does.
func ValidateRoleID(id string) error {
	if !roleIDRE.MatchString(id) {
		return fmt.Errorf("role ID %q is not valid: use 3 to 64 letters, digits, underscores and periods", id)
	}
	return nil
}

// ValidateCustomRole checks the settable fields of a custom role: title and
// description bounds, a known stage, and permissions Usher checks. Messages
// are fit for an INVALID_ARGUMENT answer.
func ValidateCustomRole(r *Role) error {
	if len(r.Title) > maxRoleTitle {
		return fmt.Errorf("role title is longer than %d characters", maxRoleTitle)
	}
	if len(r.Description) > maxRoleDescription {
		return fmt.Errorf("role description is longer than %d characters", maxRoleDescription)
	}
	if r.Stage != "" && !slices.Contains(stages, r.Stage) {
		return fmt.Errorf("role stage %q is not valid; use one of %s", r.Stage, strings.Join(stages, ", "))
	}
	if len(r.Permissions) > maxRolePermissions {
		return fmt.Errorf("a role may include at most %d permissions", maxRolePermissions)
	}
	known := KnownPermissions()
	for _, p := range r.Permissions {
		if _, found := slices.BinarySearch(known, p); !found {
			return fmt.Errorf("Permission %s is not valid: it is not a permission Usher checks (run, iam, resourcemanager, serviceusage and logging permissions of the APIs Usher serves)", p)
		}
	}
	return nil
}

// customRoleOf finds name among the custom roles defined on levels[0..i]: a
// custom role applies to the resource defining it and everything below, and
// its name must say so (projects/P/roles/ID is defined on projects/P only).
func customRoleOf(name string, levels []Level, i int) (*Role, bool) {
	for j := i; j >= 0; j-- {
		lvl := levels[j]
		if lvl.Roles == nil || !strings.HasPrefix(name, lvl.Resource+"/roles/") {
			continue
		}
		if r, ok := lvl.Roles.Lookup(name); ok {
			return r, true
		}
	}
	return nil, false
}

// lookupAt resolves a role bound at levels[i]: predefined first (a custom
// role can never shadow one), then the custom roles in scope there.
func (rs *Roles) lookupAt(name string, levels []Level, i int) (*Role, bool) {
	if r, ok := rs.Lookup(name); ok {
		return r, true
	}
	return customRoleOf(name, levels, i)
}

// Grantable is the catalogue a policy set on the innermost of levels may
// bind: rs plus the custom roles defined on levels that apply there. It is rs
// itself when no level defines custom roles.
func (rs *Roles) Grantable(levels ...Level) *Roles {
	var custom []*Role
	for _, lvl := range levels {
		if lvl.Roles == nil {
			continue
		}
		for _, r := range lvl.Roles.List() {
			if strings.HasPrefix(r.Name, lvl.Resource+"/roles/") {
				custom = append(custom, r)
			}
		}
	}
	if len(custom) == 0 {
		return rs
	}
	out := &Roles{byName: make(map[string]*Role, len(rs.byName)+len(custom)), conditions: rs.conditions}
	for _, r := range append(rs.List(), custom...) {
		if _, dup := out.byName[r.Name]; dup {
			continue // predefined roles win
		}
		out.byName[r.Name] = r
		out.names = append(out.names, r.Name)
	}
	slices.Sort(out.names)
	return out
}
