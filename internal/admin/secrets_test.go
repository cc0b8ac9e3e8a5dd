package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
)

// TestSecrets drives Secret Manager through the core on a real bolt store:
// who may read a value, what the store holds, and forged input.
func TestSecrets(t *testing.T) {
	f := newDeleteFixture(t)
	ctx := context.Background()
	const value = "plaintext-SECRET-4b1d"
	robot := NewServiceAccountRecord(state.Project{ProjectID: delProject}, "robot-1@p.iam.gserviceaccount.com", "", "")
	f.put(state.ServiceAccountKey(delProject, robot.Email), robot)
	asRobot := &Caller{Principal: iam.NewPrincipal(robot.Email), Via: "api"}
	viewer := &Caller{Principal: iam.NewPrincipal("viewer@example.com"), Via: "api"}
	f.put(state.ProjectPolicyKey(delProject), iam.Policy{Bindings: []iam.Binding{
		{Role: "roles/owner", Members: []string{"user:" + delOwner}},
		{Role: "roles/viewer", Members: []string{"user:viewer@example.com"}},
	}})
	wantStatus := func(t *testing.T, what string, err error, code int) {
		t.Helper()
		e, ok := err.(*Error)
		if !ok || e.Code != code {
			t.Errorf("%s = %v, want %d", what, err, code)
		}
	}

	if _, err := f.core.CreateSecret(ctx, f.owner, delProject, "db", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.core.AddSecretVersion(ctx, f.owner, delProject, "db", []byte(value), nil); err != nil {
		t.Fatal(err)
	}

	t.Run("the store holds no plaintext", func(t *testing.T) {
		for k, v := range f.snapshot() {
			if strings.Contains(v, value) {
				t.Errorf("%s holds the value in plaintext: %s", k, v)
			}
		}
	})

	t.Run("who reads the value", func(t *testing.T) {
		_, err := f.core.AccessSecretVersion(ctx, viewer, delProject, "db", "latest")
		wantStatus(t, "roles/viewer accessing", err, http.StatusForbidden)
		if _, err := f.core.GetSecret(ctx, viewer, delProject, "db"); err != nil {
			t.Errorf("roles/viewer describing = %v, want the metadata", err)
		}
		_, err = f.core.RuntimeSecretValue(ctx, delProject, robot.Email, "db", "latest")
		wantStatus(t, "an instance of an account without the grant", err, http.StatusForbidden)

		tg, err := f.core.SecretTarget(ctx, delProject, "db")
		if err != nil {
			t.Fatal(err)
		}
		grant := &iam.Policy{Bindings: []iam.Binding{{Role: "roles/secretmanager.secretAccessor", Members: []string{"serviceAccount:" + robot.Email}}}}
		for _, public := range []string{"allUsers", "allAuthenticatedUsers"} {
			_, err = f.core.SetPolicy(ctx, f.owner, tg, &iam.Policy{Bindings: []iam.Binding{{Role: "roles/secretmanager.secretAccessor", Members: []string{public}}}}, "")
			wantStatus(t, "granting "+public, err, http.StatusBadRequest)
		}
		_, err = f.core.SetPolicy(ctx, viewer, tg, grant, "")
		wantStatus(t, "roles/viewer granting", err, http.StatusForbidden)
		if _, err := f.core.SetPolicy(ctx, f.owner, tg, grant, ""); err != nil {
			t.Fatal(err)
		}
		got, err := f.core.AccessSecretVersion(ctx, asRobot, delProject, "db", "latest")
		if err != nil || string(got.Payload.Data) != value {
			t.Errorf("secretAccessor accessing = %q %v, want the value", got.Payload.Data, err)
		}
		if b, err := f.core.RuntimeSecretValue(ctx, delProject, robot.Email, "db", "1"); err != nil || string(b) != value {
			t.Errorf("an instance of the granted account = %q %v, want the value", b, err)
		}
		// versions.access only.
		_, err = f.core.GetSecret(ctx, asRobot, delProject, "db")
		wantStatus(t, "secretAccessor describing", err, http.StatusForbidden)
		_, err = f.core.AddSecretVersion(ctx, asRobot, delProject, "db", []byte("x"), nil)
		wantStatus(t, "secretAccessor adding", err, http.StatusForbidden)

		// Revoked: the next instance start is refused.
		if _, err := f.core.SetPolicy(ctx, f.owner, tg, &iam.Policy{}, ""); err != nil {
			t.Fatal(err)
		}
		_, err = f.core.RuntimeSecretValue(ctx, delProject, robot.Email, "db", "latest")
		wantStatus(t, "an instance after the grant was revoked", err, http.StatusForbidden)
	})

	t.Run("forged input changes nothing", func(t *testing.T) {
		before := f.snapshot()
		for _, name := range []string{"", "../db", "a/b", "a b", strings.Repeat("x", 256)} {
			_, err := f.core.CreateSecret(ctx, f.owner, delProject, name, nil, nil)
			wantStatus(t, "create "+name, err, http.StatusBadRequest)
			_, err = f.core.AccessSecretVersion(ctx, f.owner, delProject, name, "latest")
			wantStatus(t, "access "+name, err, http.StatusBadRequest)
		}
		_, err := f.core.AddSecretVersion(ctx, f.owner, delProject, "db", make([]byte, MaxSecretPayload+1), nil)
		wantStatus(t, "an oversized payload", err, http.StatusBadRequest)
		wrong := int64(12345)
		_, err = f.core.AddSecretVersion(ctx, f.owner, delProject, "db", []byte("x"), &wrong)
		wantStatus(t, "a wrong dataCrc32c", err, http.StatusBadRequest)
		for _, v := range []string{"0", "-1", "01", "1.0", "latest:access", "2"} {
			_, err = f.core.AccessSecretVersion(ctx, f.owner, delProject, "db", v)
			wantStatus(t, "version "+v, err, http.StatusNotFound)
		}
		if after := f.snapshot(); len(after) != len(before) {
			t.Errorf("refused requests wrote: %d keys before, %d after", len(before), len(after))
		}
	})

	t.Run("a sealed value moved to another secret does not open", func(t *testing.T) {
		if _, err := f.core.CreateSecret(ctx, f.owner, delProject, "other", nil, nil); err != nil {
			t.Fatal(err)
		}
		var v state.SecretVersion
		if _, err := state.Get(ctx, f.st, state.SecretVersionKey(delProject, "db", "1"), &v); err != nil {
			t.Fatal(err)
		}
		f.put(state.SecretVersionKey(delProject, "other", "1"), v)
		got, err := f.core.AccessSecretVersion(ctx, f.owner, delProject, "other", "1")
		if err == nil || strings.Contains(string(got.Payload.Data), value) {
			t.Errorf("access of a moved sealed value = %q %v, want an error", got.Payload.Data, err)
		}
	})

	t.Run("delete takes versions and policy with it", func(t *testing.T) {
		tg, _ := f.core.SecretTarget(ctx, delProject, "db")
		if _, err := f.core.SetPolicy(ctx, f.owner, tg, &iam.Policy{Bindings: []iam.Binding{{Role: "roles/secretmanager.secretAccessor", Members: []string{"serviceAccount:" + robot.Email}}}}, ""); err != nil {
			t.Fatal(err)
		}
		if err := f.core.DeleteSecret(ctx, f.owner, delProject, "db"); err != nil {
			t.Fatal(err)
		}
		for k := range f.snapshot() {
			if strings.Contains(k, "/"+delProject+"/db") {
				t.Errorf("%s left behind", k)
			}
		}
		for _, kind := range []string{"secret.create", "secretVersion.add", "iam.setPolicy", "secret.delete"} {
			if len(f.records(kind)) == 0 {
				t.Errorf("want %s on the project's audit trail", kind)
			}
		}
	})
}
