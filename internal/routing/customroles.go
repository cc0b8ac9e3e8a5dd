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

// customCatalogue builds project's custom role catalogue (nil: none).
func (st *State) customCatalogue(project string) *iam.Roles {
	roles, ok := st.CustomRoles[project]
	if !ok {
		return nil
	}
	return iam.NewRoles(roles...)
}
