package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
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

// listCounter counts a store's List calls.
type listCounter struct {
	store.Store
	lists atomic.Int64
}

func (l *listCounter) List(ctx context.Context, prefix string) ([]store.Entry, int64, error) {
	l.lists.Add(1)
	return l.Store.List(ctx, prefix)
}

// TestUnauthenticatedAccountLookupsBounded (red team, session 5): /token
// and the published signing keys answer callers without credentials by
// looking an account up; a reference that is not an Usher account's email
// (a stranger's email, a unique ID) made them read every project's
// accounts, and anyone with roles/resourcemanager.projectCreator can make
// projects without limit. Such a lookup now costs a bounded number of
// store lists whatever the number of projects.
func TestUnauthenticatedAccountLookupsBounded(t *testing.T) {
	f := newDeleteFixture(t)
	ctx := context.Background()
	for i := range 40 {
		id := fmt.Sprintf("proj-%03d", i)
		f.put(state.ProjectKey(id), state.Project{ProjectID: id, ProjectNumber: apis.ProjectNumber(id), LifecycleState: "ACTIVE"})
	}
	lc := &listCounter{Store: f.st}
	c := New(Config{Store: lc, Roles: iam.Predefined(), Minter: fakeMinter{}, DefaultRegion: delRegion, TokenURL: "http://usher/token"})
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	now := time.Now().Unix()
	for _, ref := range []string{"stranger@example.com", "123456789012345678901", "robot@proj-999.iam.gserviceaccount.com"} {
		lc.lists.Store(0)
		c.AccountSigningKeys(ctx, ref)
		assertion := seg(map[string]string{"alg": "RS256", "kid": "k1"}) + "." + seg(map[string]any{"iss": ref, "aud": "http://usher/token", "iat": now, "exp": now + 600}) + ".c2ln"
		c.ExchangeAssertion(ctx, assertion)
		if n := lc.lists.Load(); n > 4 {
			t.Errorf("looking up %q without credentials listed the store %d times (40 projects)", ref, n)
		}
	}
}
