package routing

import (
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

// TestBuildCustomRoles: a project's custom roles grant in its own policies
// and its services' policies, never in another project's.
func TestBuildCustomRoles(t *testing.T) {
	bind := func(role string) *iam.Policy {
		return &iam.Policy{Bindings: []iam.Binding{{Role: role, Members: []string{"user:alice@example.com"}}}}
	}
	st := State{
		Roles:  iam.Predefined(),
		Domain: "run.localhost", Scheme: "http", Port: "8080", Revision: 3,
		ProjectPolicies: map[string]*iam.Policy{"p": bind("projects/p/roles/projectWide")},
		Services: []ServiceState{
			{Project: "p", Region: "r", Service: service("own", nil), Policy: bind("projects/p/roles/invokeOnly")},
			{Project: "q", Region: "r", Service: service("foreign", nil), Policy: bind("projects/p/roles/invokeOnly")},
		},
	}
	st.AddCustomRole("p", &iam.Role{Name: "projects/p/roles/invokeOnly", Permissions: []string{iam.PermRoutesInvoke}})
	st.AddCustomRole("p", &iam.Role{Name: "projects/p/roles/projectWide", Permissions: []string{iam.PermServicesGet}})
	table := Build(st)
	alice := iam.NewPrincipal("alice@example.com")
	for _, tt := range []struct {
		project, name string
		want          bool
	}{
		{"p", "own", true},
		{"q", "foreign", false},
	} {
		tgt := table.Lookup(apis.ServiceHost(tt.name, tt.project, "r", "run.localhost"))
		if tgt == nil {
			t.Fatalf("no target for %s", tt.name)
		}
		if got := tgt.Invokers.DecideAt(alice, time.Now()).Allowed; got != tt.want {
			t.Errorf("%s/%s: allowed = %v, want %v", tt.project, tt.name, got, tt.want)
		}
	}
}
