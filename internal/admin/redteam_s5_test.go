package admin

import (
	"context"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
)

// TestRuntimeSecretNeedsUsableAccount (red team, session 5): an instance
// starting as a service account reads its secrets only while the account
// is usable. A disabled account, or one of a project being deleted, gets
// no token from the metadata server, but its service's new instances
// still got the secret values.
func TestRuntimeSecretNeedsUsableAccount(t *testing.T) {
	f := newDeleteFixture(t)
	ctx := context.Background()
	const other = "team-b"
	f.put(state.ProjectKey(other), state.Project{ProjectID: other, ProjectNumber: apis.ProjectNumber(other), LifecycleState: "ACTIVE"})
	robot := NewServiceAccountRecord(state.Project{ProjectID: delProject}, apis.ServiceAccountEmail("robot-1", delProject), "", "")
	f.put(state.ServiceAccountKey(delProject, robot.Email), robot)
	robotB := NewServiceAccountRecord(state.Project{ProjectID: other}, apis.ServiceAccountEmail("robot-b", other), "", "")
	f.put(state.ServiceAccountKey(other, robotB.Email), robotB)
	if _, err := f.core.CreateSecret(ctx, f.owner, delProject, "db", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.core.AddSecretVersion(ctx, f.owner, delProject, "db", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	f.put(state.SecretPolicyKey(delProject, "db"), iam.Policy{Bindings: []iam.Binding{{Role: "roles/secretmanager.secretAccessor",
		Members: []string{"serviceAccount:" + robot.Email, "serviceAccount:" + robotB.Email}}}})
	for _, sa := range []string{robot.Email, robotB.Email} {
		if _, err := f.core.RuntimeSecretValue(ctx, delProject, sa, "db", "latest"); err != nil {
			t.Fatalf("granted %s: %v", sa, err)
		}
	}
	robot.Disabled = true
	f.put(state.ServiceAccountKey(delProject, robot.Email), robot)
	if _, err := f.core.RuntimeSecretValue(ctx, delProject, robot.Email, "db", "latest"); err == nil {
		t.Errorf("a disabled account's instance read the secret")
	}
	f.put(state.ProjectKey(other), state.Project{ProjectID: other, ProjectNumber: apis.ProjectNumber(other), LifecycleState: "DELETE_REQUESTED"})
	if _, err := f.core.RuntimeSecretValue(ctx, delProject, robotB.Email, "db", "latest"); err == nil {
		t.Errorf("an account of a deleted project read the secret")
	}
}
