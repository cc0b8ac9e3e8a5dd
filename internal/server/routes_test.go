package server

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/state"
)

// TestRouteKeeperEqualsRebuild: after any sequence of service, revision,
// service-policy, project-policy and custom-role writes (and deletes), the
// table kept change by change equals one built from the whole state.
func TestRouteKeeperEqualsRebuild(t *testing.T) {
	roles := iam.Predefined()
	for seed := range uint64(100) {
		r := rand.New(rand.NewPCG(seed, 13))
		objects := map[string]mirror.Object{}
		k := &routeKeeper{roles: roles, domain: "run.localhost", scheme: "http", port: "8080"}
		k.apply(objects, nil, 0)
		for rev := int64(1); rev <= 80; rev++ {
			key := randomWrite(r, objects, rev)
			got, _ := k.apply(objects, []string{key}, rev)
			want := routing.Build(routingState(objects, rev, roles, "run.localhost", "http", "8080"))
			equalTables(t, fmt.Sprintf("seed %d rev %d key %s", seed, rev, key), got, want)
		}
	}
}

func equalTables(t *testing.T, what string, got, want *routing.Table) {
	t.Helper()
	if got.Len() != want.Len() || got.Revision() != want.Revision() {
		t.Fatalf("%s: kept table %d hosts at %d, rebuilt %d hosts at %d", what, got.Len(), got.Revision(), want.Len(), want.Revision())
	}
	want.Each(func(host string, w *routing.Target) {
		if g := got.Lookup(host); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: host %s kept %+v, rebuilt %+v", what, host, g, w)
		}
	})
}

// randomWrite puts or deletes one random object the routing table depends
// on and returns its key.
func randomWrite(r *rand.Rand, objects map[string]mirror.Object, rev int64) string {
	p := []string{"p", "q"}[r.IntN(2)]
	region := []string{"r1", "r2"}[r.IntN(2)]
	name := []string{"a", "b", "c"}[r.IntN(3)]
	members := []string{"allUsers", "user:u@example.com", "group:g@example.com"}
	policy := func() *iam.Policy {
		pol := &iam.Policy{}
		for range r.IntN(3) {
			pol.Bindings = append(pol.Bindings, iam.Binding{Role: []string{"roles/run.invoker", "roles/viewer", "projects/" + p + "/roles/inv"}[r.IntN(3)], Members: []string{members[r.IntN(len(members))]}})
		}
		return pol
	}
	var key string
	var value any
	switch r.IntN(5) {
	case 0:
		key = state.ServiceKey(p, region, name)
		svc := &apis.Service{Metadata: apis.ObjectMeta{Name: name, Namespace: p, Labels: map[string]string{apis.LabelLocation: region}}}
		for i := range r.IntN(3) {
			tt := apis.TrafficTarget{RevisionName: fmt.Sprintf("%s-%05d-x", name, i+1), Percent: int64(r.IntN(2) * 50)}
			if r.IntN(3) == 0 {
				tt.Tag = fmt.Sprint("t", i)
			}
			svc.Status.Traffic = append(svc.Status.Traffic, tt)
		}
		value = svc
	case 1:
		rn := fmt.Sprintf("%s-%05d-x", name, r.IntN(3)+1)
		key = state.RevisionKey(p, region, rn)
		value = &apis.Revision{Metadata: apis.ObjectMeta{Name: rn, Namespace: p, Labels: map[string]string{apis.LabelLocation: region}}}
	case 2:
		key, value = state.ServicePolicyKey(p, region, name), policy()
	case 3:
		key, value = state.ProjectPoliciesPrefix+p, policy()
	case 4:
		key = state.RoleKey(p, "inv")
		value = &iam.Role{Name: "projects/" + p + "/roles/inv", Permissions: []string{iam.PermRoutesInvoke}}
	}
	if r.IntN(4) == 0 {
		delete(objects, key)
	} else {
		objects[key] = mirror.Object{Key: key, Revision: rev, Value: value}
	}
	return key
}

// BenchmarkPolicyWrite is the gateway-side cost of one service's policy
// write among n services with 10 bindings each (what the mirror's Changed
// runs), against rebuilding the whole table as before issue 13.
func BenchmarkPolicyWrite(b *testing.B) {
	roles := iam.Predefined()
	for _, n := range []int{1, 1000, 10000} {
		objects := map[string]mirror.Object{}
		for i := range n {
			name := fmt.Sprintf("s%d", i)
			rn := name + "-00001-x"
			objects[state.ServiceKey("p", "r1", name)] = mirror.Object{Value: &apis.Service{
				Metadata: apis.ObjectMeta{Name: name, Namespace: "p", Labels: map[string]string{apis.LabelLocation: "r1"}},
				Status:   apis.ServiceStatus{LatestReadyRevisionName: rn}}}
			objects[state.RevisionKey("p", "r1", rn)] = mirror.Object{Value: &apis.Revision{
				Metadata: apis.ObjectMeta{Name: rn, Namespace: "p", Labels: map[string]string{apis.LabelLocation: "r1"}}}}
			pol := &iam.Policy{}
			for j := range 10 {
				pol.Bindings = append(pol.Bindings, iam.Binding{Role: "roles/run.invoker", Members: []string{fmt.Sprintf("user:u%d@example.com", j)}})
			}
			objects[state.ServicePolicyKey("p", "r1", name)] = mirror.Object{Value: pol}
		}
		k := &routeKeeper{roles: roles, domain: "run.localhost", scheme: "http"}
		k.apply(objects, nil, 1)
		key := state.ServicePolicyKey("p", "r1", "s0")
		b.Run(fmt.Sprintf("incremental-%d", n), func(b *testing.B) {
			rev := int64(1)
			for b.Loop() {
				rev++
				k.apply(objects, []string{key}, rev)
			}
		})
		b.Run(fmt.Sprintf("rebuild-%d", n), func(b *testing.B) {
			for b.Loop() {
				routing.Build(routingState(objects, 2, roles, "run.localhost", "http", ""))
			}
		})
	}
}
