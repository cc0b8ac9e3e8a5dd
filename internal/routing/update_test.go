package routing

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

// model is the full state a sequence of writes leads to, and the table kept
// up to date by Update alone; after every write the table must equal Build
// of the full state.
type model struct {
	services map[ServiceKey]ServiceState
	projects map[string]*iam.Policy
	table    *Table
	rev      int64
}

func (m *model) state(services []ServiceState) State {
	return State{Services: services, ProjectPolicies: m.projects, Roles: iam.Predefined(),
		Domain: "run.localhost", Scheme: "http", Port: "8080", Revision: m.rev}
}

func (m *model) full() State {
	keys := make([]ServiceKey, 0, len(m.services))
	for k := range m.services {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	var all []ServiceState
	for _, k := range keys {
		all = append(all, m.services[k])
	}
	return m.state(all)
}

var (
	projects = []string{"p", "q"}
	regions  = []string{"r1", "r2"}
	names    = []string{"a", "b", "c"}
	members  = []string{"allUsers", "user:u@example.com", "serviceAccount:sa@p.iam.gserviceaccount.com", "group:g@example.com"}
	roles    = []string{"roles/run.invoker", "roles/viewer", "roles/iap.httpsResourceAccessor", "roles/run.admin"}
)

func randomPolicy(r *rand.Rand) *iam.Policy {
	if r.IntN(4) == 0 {
		return nil
	}
	p := &iam.Policy{}
	for range r.IntN(3) {
		p.Bindings = append(p.Bindings, iam.Binding{Role: roles[r.IntN(len(roles))], Members: []string{members[r.IntN(len(members))]}})
	}
	return p
}

func randomService(r *rand.Rand, k ServiceKey) ServiceState {
	ann := map[string]string{}
	if r.IntN(4) == 0 {
		ann[apis.AnnotationInvokerIAMDisabled] = "true"
	}
	if r.IntN(4) == 0 {
		ann[apis.AnnotationCustomAudiences] = `["https://custom"]`
	}
	svc := &apis.Service{Metadata: apis.ObjectMeta{Name: k.Service, Namespace: k.Project, Annotations: ann}}
	revs := map[string]*apis.Revision{}
	for i := range r.IntN(3) + 1 {
		name := fmt.Sprintf("%s-%05d-x", k.Service, i+1)
		if r.IntN(5) > 0 { // sometimes traffic names a revision the node lacks
			revs[name] = &apis.Revision{Metadata: apis.ObjectMeta{Name: name, Namespace: k.Project}}
		}
		tt := apis.TrafficTarget{RevisionName: name, Percent: int64(r.IntN(2) * 50)}
		if r.IntN(3) == 0 {
			tt.Tag = fmt.Sprintf("t%d", r.IntN(3))
		}
		svc.Status.Traffic = append(svc.Status.Traffic, tt)
	}
	return ServiceState{Project: k.Project, Region: k.Region, Service: svc, Revisions: revs, Policy: randomPolicy(r)}
}

// step applies one random write to the model, updating the table the way the
// mirror does: only the services the write touches.
func (m *model) step(r *rand.Rand) {
	m.rev++
	k := ServiceKey{projects[r.IntN(len(projects))], regions[r.IntN(len(regions))], names[r.IntN(len(names))]}
	switch r.IntN(4) {
	case 0, 1: // create or replace a service (traffic, annotations, policy)
		ss := randomService(r, k)
		m.services[k] = ss
		m.table = m.table.Update(m.state([]ServiceState{ss}), nil)
	case 2: // delete a service
		delete(m.services, k)
		m.table = m.table.Update(m.state(nil), []ServiceKey{k})
	case 3: // a project's policy: every service of that project
		m.projects[k.Project] = randomPolicy(r)
		var touched []ServiceState
		for sk, ss := range m.services {
			if sk.Project == k.Project {
				touched = append(touched, ss)
			}
		}
		m.table = m.table.Update(m.state(touched), nil)
	}
}

func equalTables(t *testing.T, got, want *Table) {
	t.Helper()
	if got.Revision() != want.Revision() || got.Len() != want.Len() {
		t.Fatalf("incremental table: revision %d, %d hosts; full build: revision %d, %d hosts", got.Revision(), got.Len(), want.Revision(), want.Len())
	}
	for _, sh := range want.shards {
		if sh == nil {
			continue
		}
		for host, w := range sh.byHost {
			g := got.target(host)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("host %s: incremental %+v, full build %+v", host, g, w)
			}
		}
	}
}

func checkSequence(t *testing.T, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	m := &model{services: map[ServiceKey]ServiceState{}, projects: map[string]*iam.Policy{}}
	m.table = Build(m.full())
	for range steps {
		before := m.table
		beforeLen := before.Len()
		m.step(r)
		equalTables(t, m.table, Build(m.full()))
		if before.Len() != beforeLen {
			t.Fatalf("Update modified the table it started from")
		}
	}
}

// TestUpdateEqualsBuild: after any sequence of create, update, delete and
// policy writes, the incrementally kept table equals a full rebuild.
func TestUpdateEqualsBuild(t *testing.T) {
	for seed := range uint64(200) {
		checkSequence(t, seed, 60)
	}
}

func FuzzUpdateEqualsBuild(f *testing.F) {
	f.Add(uint64(1), uint8(20))
	f.Add(uint64(42), uint8(200))
	f.Fuzz(func(t *testing.T, seed uint64, steps uint8) {
		checkSequence(t, seed, int(steps))
	})
}

// BenchmarkUpdateOneService is the cost of a policy write to one service
// among n: it must not grow with n the way BenchmarkBuild does.
func BenchmarkUpdateOneService(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		st, one := benchState(n)
		table := Build(st)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			one.Services[0].Policy = &iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"user:x@example.com"}}}}
			for b.Loop() {
				table.Update(one, nil)
			}
		})
		b.Run(fmt.Sprintf("rebuild-%d", n), func(b *testing.B) {
			for b.Loop() {
				Build(st)
			}
		})
	}
}

func benchState(n int) (all, one State) {
	st := State{Roles: iam.Predefined(), Domain: "run.localhost", Scheme: "http", ProjectPolicies: map[string]*iam.Policy{}}
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		pol := &iam.Policy{}
		for j := range 10 {
			pol.Bindings = append(pol.Bindings, iam.Binding{Role: "roles/run.invoker", Members: []string{fmt.Sprintf("user:u%d@example.com", j)}})
		}
		st.Services = append(st.Services, ServiceState{Project: "p", Region: "r1", Policy: pol,
			Service: &apis.Service{Metadata: apis.ObjectMeta{Name: name, Namespace: "p"}}})
	}
	one = st
	one.Services = []ServiceState{st.Services[0]}
	return st, one
}
