package iam

import (
	"slices"
	"strings"
)

// Permissions Usher checks. Names are Google's.
const (
	PermRoutesInvoke         = "run.routes.invoke"
	PermServicesCreate       = "run.services.create"
	PermServicesGet          = "run.services.get"
	PermServicesList         = "run.services.list"
	PermServicesUpdate       = "run.services.update"
	PermServicesDelete       = "run.services.delete"
	PermServicesGetIamPolicy = "run.services.getIamPolicy"
	PermServicesSetIamPolicy = "run.services.setIamPolicy"
	PermRevisionsGet         = "run.revisions.get"
	PermRevisionsList        = "run.revisions.list"
	PermRevisionsDelete      = "run.revisions.delete"
	PermProjectsGet          = "resourcemanager.projects.get"
	PermProjectsGetIamPolicy = "resourcemanager.projects.getIamPolicy"
	PermProjectsSetIamPolicy = "resourcemanager.projects.setIamPolicy"
	// PermProjectsCreate is checked on the server's root project, which
	// stands in for an organization.
	PermProjectsCreate         = "resourcemanager.projects.create"
	PermProjectsUpdate         = "resourcemanager.projects.update"
	PermProjectsDelete         = "resourcemanager.projects.delete"
	PermProjectsUndelete       = "resourcemanager.projects.undelete"
	PermSACreate               = "iam.serviceAccounts.create"
	PermSAGet                  = "iam.serviceAccounts.get"
	PermSAList                 = "iam.serviceAccounts.list"
	PermSADelete               = "iam.serviceAccounts.delete"
	PermSAGetIamPolicy         = "iam.serviceAccounts.getIamPolicy"
	PermSASetIamPolicy         = "iam.serviceAccounts.setIamPolicy"
	PermSAActAs                = "iam.serviceAccounts.actAs"
	PermSAGetOpenIDToken       = "iam.serviceAccounts.getOpenIdToken"
	PermSAGetAccessToken       = "iam.serviceAccounts.getAccessToken"
	PermSAImplicitDelegation   = "iam.serviceAccounts.implicitDelegation"
	PermServiceUsageGet        = "serviceusage.services.get"
	PermServiceUsageList       = "serviceusage.services.list"
	PermServiceUsageEnable     = "serviceusage.services.enable"
	PermServiceUsageDisable    = "serviceusage.services.disable"
	PermRunLocationsList       = "run.locations.list"
	PermRunOperationsGet       = "run.operations.get"
	PermRunConfigurationsGet   = "run.configurations.get"
	PermRunConfigurationsList  = "run.configurations.list"
	PermRunRoutesGet           = "run.routes.get"
	PermRunRoutesList          = "run.routes.list"
	PermRunJobsRun             = "run.jobs.run"
	PermJobsCreate             = "run.jobs.create"
	PermJobsGet                = "run.jobs.get"
	PermJobsList               = "run.jobs.list"
	PermJobsUpdate             = "run.jobs.update"
	PermJobsDelete             = "run.jobs.delete"
	PermJobsRunWithOverrides   = "run.jobs.runWithOverrides"
	PermJobsGetIamPolicy       = "run.jobs.getIamPolicy"
	PermJobsSetIamPolicy       = "run.jobs.setIamPolicy"
	PermExecutionsGet          = "run.executions.get"
	PermExecutionsList         = "run.executions.list"
	PermExecutionsCancel       = "run.executions.cancel"
	PermExecutionsDelete       = "run.executions.delete"
	PermTasksGet               = "run.tasks.get"
	PermTasksList              = "run.tasks.list"
	PermRunInstancesInvoke     = "run.instances.invoke"
	PermRunServicesListEffTags = "run.services.listEffectiveTags"
	PermLogEntriesList         = "logging.logEntries.list"
	PermOrgPolicySet           = "orgpolicy.policy.set" // roles/owner only (guardrails)
	PermSADisable              = "iam.serviceAccounts.disable"
	PermSAEnable               = "iam.serviceAccounts.enable"
	PermSAUndelete             = "iam.serviceAccounts.undelete"
	PermSAUpdate               = "iam.serviceAccounts.update"
	PermSASignBlob             = "iam.serviceAccounts.signBlob"
	PermSASignJwt              = "iam.serviceAccounts.signJwt"
	PermSAKeysCreate           = "iam.serviceAccountKeys.create"
	PermSAKeysList             = "iam.serviceAccountKeys.list"
	PermSAKeysDelete           = "iam.serviceAccountKeys.delete"
	// Secret Manager's (admin/secrets.go).
	PermSecretsCreate       = "secretmanager.secrets.create"
	PermSecretsGet          = "secretmanager.secrets.get"
	PermSecretsList         = "secretmanager.secrets.list"
	PermSecretsUpdate       = "secretmanager.secrets.update"
	PermSecretsDelete       = "secretmanager.secrets.delete"
	PermSecretsGetIamPolicy = "secretmanager.secrets.getIamPolicy"
	PermSecretsSetIamPolicy = "secretmanager.secrets.setIamPolicy"
	PermVersionsAdd         = "secretmanager.versions.add"
	PermVersionsAccess      = "secretmanager.versions.access"
	PermVersionsGet         = "secretmanager.versions.get"
	PermVersionsList        = "secretmanager.versions.list"
	// PermHostExecutablesRun is Usher's own: deploying a file:// image runs
	// an executable of Usher's host (roles/run.admin and roles/owner).
	PermHostExecutablesRun = "usher.hostExecutables.run"
	// PermIAPAccess lets a person through the identity-aware proxy of a
	// service with IAP on (roles/iap.httpsResourceAccessor).
	PermIAPAccess = "iap.webServiceVersions.accessViaIAP"
)

// Role is a named set of permissions.
type Role struct {
	Name        string   `json:"name"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	Permissions []string `json:"includedPermissions"`
	// Stage is a custom role's launch stage (custom.go); a DISABLED role
	// grants nothing.
	Stage string `json:"stage,omitempty"`
	// Deleted marks a soft-deleted custom role: its bindings stay in
	// policies but grant nothing until it is undeleted.
	Deleted bool `json:"deleted,omitempty"`
	// all marks roles/owner: every permission, including ones added later.
	all bool
}

// Has reports whether the role includes perm and is in force.
func (r *Role) Has(perm string) bool {
	if r.Deleted || r.Stage == StageDisabled {
		return false
	}
	return r.all || slices.Contains(r.Permissions, perm)
}

// Roles is the catalogue of roles a policy may grant. It is immutable once built.
type Roles struct {
	byName map[string]*Role
	names  []string
	// conditions caches compiled condition expressions (condition.go).
	conditions *conditionCache
}

// Lookup returns the role by its full name ("roles/run.invoker").
func (rs *Roles) Lookup(name string) (*Role, bool) {
	r, ok := rs.byName[name]
	return r, ok
}

// List returns every role, sorted by name.
func (rs *Roles) List() []*Role {
	out := make([]*Role, 0, len(rs.names))
	for _, n := range rs.names {
		out = append(out, rs.byName[n])
	}
	return out
}

// Granting returns the names of roles that include perm, sorted.
func (rs *Roles) Granting(perm string) []string {
	var out []string
	for _, n := range rs.names {
		if rs.byName[n].Has(perm) {
			out = append(out, n)
		}
	}
	return out
}

// NewRoles builds a catalogue from roles; later roles with the same name win.
func NewRoles(roles ...*Role) *Roles {
	rs := &Roles{byName: map[string]*Role{}, conditions: &conditionCache{}}
	for _, r := range roles {
		if _, dup := rs.byName[r.Name]; !dup {
			rs.names = append(rs.names, r.Name)
		}
		rs.byName[r.Name] = r
	}
	slices.Sort(rs.names)
	return rs
}

// Predefined returns Google's predefined roles that matter to Cloud Run, with
// the permissions Usher checks. Lists follow Google's published role reference,
// restricted to permissions of APIs Usher serves.
func Predefined() *Roles {
	runRead := []string{
		PermServicesGet, PermServicesList, PermRevisionsGet, PermRevisionsList,
		PermRunConfigurationsGet, PermRunConfigurationsList, PermRunRoutesGet,
		PermRunRoutesList, PermRunLocationsList, PermRunOperationsGet,
		PermServicesGetIamPolicy, PermRunServicesListEffTags,
		PermJobsGet, PermJobsList, PermJobsGetIamPolicy, PermExecutionsGet, PermExecutionsList,
		PermTasksGet, PermTasksList,
	}
	runWrite := []string{
		PermServicesCreate, PermServicesUpdate, PermServicesDelete, PermRevisionsDelete,
		PermJobsCreate, PermJobsUpdate, PermJobsDelete, PermJobsRunWithOverrides,
		PermExecutionsCancel, PermExecutionsDelete,
	}
	projectRead := []string{PermProjectsGet, PermServiceUsageGet, PermServiceUsageList}
	saRead := []string{PermSAGet, PermSAList}
	rolesRead := []string{PermRolesGet, PermRolesList}
	invoke := []string{PermRoutesInvoke, PermRunJobsRun, PermRunInstancesInvoke}
	secretRead := []string{PermSecretsGet, PermSecretsList, PermVersionsGet, PermVersionsList}
	// secretWrite is what roles/editor holds of Secret Manager, as
	// Google's does: everything but setIamPolicy, reading values included.
	secretWrite := []string{PermSecretsCreate, PermSecretsUpdate, PermSecretsDelete, PermVersionsAdd, PermVersionsAccess}

	cat := func(lists ...[]string) []string {
		var out []string
		for _, l := range lists {
			out = append(out, l...)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return NewRoles(
		&Role{Name: "roles/owner", Title: "Owner", Description: "Full access to all resources.", all: true},
		&Role{Name: "roles/editor", Title: "Editor", Description: "Edit access to all resources; cannot change IAM policies.",
			Permissions: cat(runRead, runWrite, projectRead, saRead, rolesRead, invoke, secretRead, secretWrite, []string{PermSecretsGetIamPolicy, PermProjectsGetIamPolicy, PermSACreate, PermSADelete, PermSAUpdate, PermSAActAs, PermLogEntriesList, PermServiceUsageEnable, PermServiceUsageDisable})},
		&Role{Name: "roles/viewer", Title: "Viewer", Description: "Read access to all resources; cannot invoke.",
			Permissions: cat(runRead, projectRead, saRead, rolesRead, secretRead, []string{PermSecretsGetIamPolicy, PermProjectsGetIamPolicy, PermLogEntriesList})},
		&Role{Name: "roles/run.admin", Title: "Cloud Run Admin", Description: "Full control over all Cloud Run resources.",
			Permissions: cat(runRead, runWrite, invoke, []string{PermServicesSetIamPolicy, PermJobsSetIamPolicy, PermProjectsGet, PermServiceUsageGet, PermServiceUsageList, PermHostExecutablesRun})},
		&Role{Name: "roles/run.developer", Title: "Cloud Run Developer", Description: "Read and write access to all Cloud Run resources, without IAM policy changes.",
			Permissions: cat(runRead, runWrite, invoke, []string{PermProjectsGet, PermServiceUsageGet, PermServiceUsageList})},
		&Role{Name: "roles/run.viewer", Title: "Cloud Run Viewer", Description: "Can view the state of all Cloud Run resources, including IAM policies.",
			Permissions: cat(runRead, []string{PermProjectsGet, PermLogEntriesList})},
		&Role{Name: "roles/run.invoker", Title: "Cloud Run Invoker", Description: "Invoke Cloud Run services and execute jobs.",
			Permissions: cat(invoke)},
		&Role{Name: "roles/run.jobsExecutor", Title: "Cloud Run Jobs Executor", Description: "Execute Cloud Run jobs and cancel their executions.",
			Permissions: cat([]string{PermJobsGet, PermRunJobsRun, PermExecutionsGet, PermExecutionsList, PermExecutionsCancel, PermTasksGet, PermTasksList})},
		&Role{Name: "roles/run.jobsExecutorWithOverrides", Title: "Cloud Run Jobs Executor With Overrides", Description: "Execute Cloud Run jobs with overrides and cancel their executions.",
			Permissions: cat([]string{PermJobsGet, PermRunJobsRun, PermJobsRunWithOverrides, PermExecutionsGet, PermExecutionsList, PermExecutionsCancel, PermTasksGet, PermTasksList})},
		&Role{Name: "roles/run.servicesInvoker", Title: "Cloud Run Service Invoker", Description: "Invoke Cloud Run services.",
			Permissions: []string{PermRoutesInvoke}},
		&Role{Name: "roles/iam.serviceAccountTokenCreator", Title: "Service Account Token Creator", Description: "Impersonate service accounts (create OAuth2 access tokens, ID tokens).",
			Permissions: cat(saRead, []string{PermSAGetAccessToken, PermSAGetOpenIDToken, PermSAImplicitDelegation, PermSASignBlob, PermSASignJwt})},
		&Role{Name: "roles/iam.serviceAccountUser", Title: "Service Account User", Description: "Run operations as the service account.",
			Permissions: cat(saRead, []string{PermSAActAs})},
		&Role{Name: "roles/iam.serviceAccountAdmin", Title: "Service Account Admin", Description: "Create and manage service accounts.",
			Permissions: cat(saRead, []string{PermSACreate, PermSADelete, PermSAUpdate, PermSAGetIamPolicy, PermSASetIamPolicy, PermSADisable, PermSAEnable, PermSAUndelete})},
		&Role{Name: "roles/iam.serviceAccountKeyAdmin", Title: "Service Account Key Admin", Description: "Create and manage (and rotate) service account keys.",
			Permissions: cat(saRead, []string{PermSAKeysCreate, PermSAKeysList, PermSAKeysDelete})},
		&Role{Name: "roles/iam.roleAdmin", Title: "Role Administrator", Description: "Access to all custom roles in the project.",
			Permissions: cat(rolesRead, []string{PermRolesCreate, PermRolesUpdate, PermRolesDelete, PermRolesUndelete, PermProjectsGet, PermProjectsGetIamPolicy})},
		&Role{Name: "roles/iap.httpsResourceAccessor", Title: "IAP-secured Web App User", Description: "Access HTTPS resources which use Identity-Aware Proxy.",
			Permissions: []string{PermIAPAccess}},
		&Role{Name: "roles/logging.viewer", Title: "Logs Viewer", Description: "Access to view logs (services' output and requests, admin activity).",
			Permissions: []string{PermLogEntriesList}},
		&Role{Name: "roles/secretmanager.admin", Title: "Secret Manager Admin", Description: "Full access to administer Secret Manager resources.",
			Permissions: cat(secretRead, secretWrite, []string{PermSecretsGetIamPolicy, PermSecretsSetIamPolicy, PermProjectsGet})},
		&Role{Name: "roles/secretmanager.secretAccessor", Title: "Secret Manager Secret Accessor", Description: "Allows accessing the payload of secrets.",
			Permissions: []string{PermVersionsAccess}},
		&Role{Name: "roles/secretmanager.secretVersionAdder", Title: "Secret Manager Secret Version Adder", Description: "Allows adding versions to existing secrets.",
			Permissions: []string{PermVersionsAdd}},
		&Role{Name: "roles/secretmanager.viewer", Title: "Secret Manager Viewer", Description: "Allows viewing metadata of all Secret Manager resources.",
			Permissions: cat(secretRead, []string{PermProjectsGet})},
		&Role{Name: "roles/resourcemanager.projectCreator", Title: "Project Creator", Description: "Create new projects (granted on the server's root project).",
			Permissions: []string{PermProjectsCreate}},
		&Role{Name: "roles/resourcemanager.projectDeleter", Title: "Project Deleter", Description: "Delete projects.",
			Permissions: []string{PermProjectsDelete}},
		&Role{Name: "roles/browser", Title: "Browser", Description: "Read access to browse the hierarchy for a project.",
			Permissions: []string{PermProjectsGet}},
		&Role{Name: "roles/iam.roleViewer", Title: "Role Viewer", Description: "Read access to all custom roles in the project.",
			Permissions: cat(rolesRead, []string{PermProjectsGet, PermProjectsGetIamPolicy})},
	)
}

// IsRoleName reports whether s looks like a role name at all.
func IsRoleName(s string) bool {
	return strings.HasPrefix(s, "roles/") || strings.HasPrefix(s, "projects/") || strings.HasPrefix(s, "organizations/")
}
