package routing

import "github.com/usher-run/usher/internal/iam"

// AddCustomRole records custom role r of project (a store key
// roles/{project}/{id}); Build makes it grantable in that project's policies.
func (st *State) AddCustomRole(project string, r *iam.Role) {
	if st.CustomRoles == nil {
		st.CustomRoles = map[string][]*iam.Role{}
	}
	st.CustomRoles[project] = append(st.CustomRoles[project], r)
}

// customCatalogues builds each project's custom role catalogue once per table.
func (st *State) customCatalogues() map[string]*iam.Roles {
	out := make(map[string]*iam.Roles, len(st.CustomRoles))
	for project, roles := range st.CustomRoles {
		out[project] = iam.NewRoles(roles...)
	}
	return out
}
