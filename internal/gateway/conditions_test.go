package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/routing"
)

// fakeClock is the gateway's injected clock.
type fakeClock struct{ now atomic.Pointer[time.Time] }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) set(t time.Time) { c.now.Store(&t) }
func (c *fakeClock) Now() time.Time  { return *c.now.Load() }

// TestGatewayConditionalBindingExpires: a binding granted until a time
// (request.time < timestamp(…)) admits its member before that time and
// refuses it after, with the gateway's injected clock and the same table.
func TestGatewayConditionalBindingExpires(t *testing.T) {
	f := newGatewayFixture(t, true)
	expiry := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock(expiry.Add(-time.Minute))
	gw := gateway.New(gateway.Config{Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience, Now: clock.Now})

	cond := &iam.Expr{Title: "until-june", Expression: `request.time < timestamp("2030-06-01T12:00:00Z")`}
	grant := func(member string) *iam.Policy {
		return &iam.Policy{Version: iam.Version3, Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{member}, Condition: cond}}}
	}
	gw.SetTable(gatewayFixtureTable(
		gatewayFixtureService("expiring", nil, grant("serviceAccount:"+gwFixSA)),
		gatewayFixtureService("public-until", nil, grant("allUsers")),
	))
	tok := f.mint(t, gwFixSA, gatewayFixtureURL("expiring"))
	auth := map[string]string{"Authorization": "Bearer " + tok}
	other := map[string]string{"Authorization": "Bearer " + f.mint(t, gwFixUser, gatewayFixtureURL("expiring"))}

	steps := []struct {
		name       string
		now        time.Time
		service    string
		header     map[string]string
		wantStatus int
	}{
		{"before expiry the member invokes", expiry.Add(-time.Minute), "expiring", auth, 200},
		{"before expiry others are refused", expiry.Add(-time.Minute), "expiring", other, 403},
		{"before expiry no credentials is 401", expiry.Add(-time.Minute), "expiring", nil, 401},
		{"conditional allUsers before expiry needs no token", expiry.Add(-time.Minute), "public-until", nil, 200},
		{"at expiry the member is refused", expiry, "expiring", auth, 403},
		{"after expiry the member is refused", expiry.Add(time.Hour), "expiring", auth, 403},
		{"conditional allUsers after expiry is 401", expiry.Add(time.Hour), "public-until", nil, 401},
		{"the clock going back admits again", expiry.Add(-time.Second), "expiring", auth, 200},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.set(st.now)
			before := f.backendHits.Load()
			w := gatewayFixtureDo(gw, gatewayFixtureHost(st.service), st.header)
			if w.Code != st.wantStatus {
				t.Fatalf("status at %v: got %d (%s), want %d", st.now, w.Code, w.Body.String(), st.wantStatus)
			}
			reached := f.backendHits.Load() > before
			if reached != (st.wantStatus == 200) {
				t.Errorf("request reached the instance: got %v, want %v", reached, st.wantStatus == 200)
			}
		})
	}
}

// TestGatewayCustomRole: a project custom role including run.routes.invoke
// admits the members it is bound to; once deleted it grants nothing.
func TestGatewayCustomRole(t *testing.T) {
	f := newGatewayFixture(t, true)
	gw := f.newGateway()
	role := &iam.Role{Name: iam.CustomRoleName(gwFixProject, "invokeOnly"), Title: "Invoke only", Permissions: []string{iam.PermRoutesInvoke}}
	build := func(r *iam.Role) *routing.Table {
		st := routing.State{
			Services:        []routing.ServiceState{gatewayFixtureService("custom-role", nil, gatewayFixturePolicy(role.Name, "serviceAccount:"+gwFixSA))},
			ProjectPolicies: map[string]*iam.Policy{},
			Roles:           iam.Predefined(),
			Domain:          gwFixDomain, Scheme: "http", Port: gwFixPort, Revision: 1,
		}
		st.AddCustomRole(gwFixProject, r)
		return routing.Build(st)
	}
	auth := map[string]string{"Authorization": "Bearer " + f.mint(t, gwFixSA, gatewayFixtureURL("custom-role"))}

	gw.SetTable(build(role))
	if w := gatewayFixtureDo(gw, gatewayFixtureHost("custom-role"), auth); w.Code != 200 {
		t.Fatalf("custom role with run.routes.invoke: got %d, want 200", w.Code)
	}
	deleted := *role
	deleted.Deleted = true
	gw.SetTable(build(&deleted))
	if w := gatewayFixtureDo(gw, gatewayFixtureHost("custom-role"), auth); w.Code != 403 {
		t.Fatalf("deleted custom role: got %d, want 403", w.Code)
	}
	viewer := *role
	viewer.Permissions = []string{iam.PermServicesGet}
	gw.SetTable(build(&viewer))
	if w := gatewayFixtureDo(gw, gatewayFixtureHost("custom-role"), auth); w.Code != 403 {
		t.Fatalf("custom role without run.routes.invoke: got %d, want 403", w.Code)
	}
}
