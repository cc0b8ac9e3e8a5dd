package admin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

// These tests are about what a delete leaves in the store when a write
// fails or races: the admin core runs on a real bolt store (with a real
// mirror and audit trail), through failingStore, which makes one chosen
// write fail as a crash would (nothing of it written, the operation cut
// short), or runs a concurrent change just before one.

const (
	delProject = "p"
	delRegion  = "us-central1"
	delOwner   = "owner@example.com"
)

var errInjected = errors.New("injected: the store went away")

// failingStore is a real store whose failAt-th write (Put, Delete or Txn,
// counting from 1; 0: none) fails without writing anything, and which runs
// before(n) ahead of the n-th write (a concurrent change, written to the
// real store directly).
type failingStore struct {
	store.Store
	mu     sync.Mutex
	writes int
	failAt int
	before func(n int)
}

func (f *failingStore) next() error {
	f.mu.Lock()
	f.writes++
	n, fail, before := f.writes, f.failAt, f.before
	f.mu.Unlock()
	if before != nil {
		before(n)
	}
	if n == fail {
		return errInjected
	}
	return nil
}

func (f *failingStore) Put(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	if err := f.next(); err != nil {
		return 0, err
	}
	return f.Store.Put(ctx, key, value, expected)
}

func (f *failingStore) Delete(ctx context.Context, key string, expected int64) (int64, error) {
	if err := f.next(); err != nil {
		return 0, err
	}
	return f.Store.Delete(ctx, key, expected)
}

func (f *failingStore) Txn(ctx context.Context, ops []store.Op) ([]int64, error) {
	if err := f.next(); err != nil {
		return nil, err
	}
	return f.Store.Txn(ctx, ops)
}

// deleteFixture is a core whose writes go through a failingStore, and the
// real store underneath for the test's own reads and writes.
type deleteFixture struct {
	t     *testing.T
	core  *Core
	st    store.Store
	fail  *failingStore
	owner *Caller
}

func newDeleteFixture(t *testing.T) *deleteFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &deleteFixture{t: t, st: st, fail: &failingStore{Store: st}, owner: &Caller{Principal: iam.NewPrincipal(delOwner), Via: "api"}}
	f.put(state.ProjectKey(delProject), state.Project{ProjectID: delProject, ProjectNumber: apis.ProjectNumber(delProject), LifecycleState: "ACTIVE"})
	f.put(state.ProjectPolicyKey(delProject), iam.Policy{Bindings: []iam.Binding{{Role: "roles/owner", Members: []string{"user:" + delOwner}}}})
	mir := mirror.New(st, mirror.Config{Decode: func(string, []byte) (any, bool, error) { return nil, false, nil }})
	if err := mir.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go mir.Run(ctx)
	f.core = New(Config{
		Store: f.fail, Roles: iam.Predefined(), Minter: fakeMinter{}, Sync: mir, DefaultRegion: delRegion,
		Audit:      audit.New(audit.Config{Store: st}),
		ServiceURL: func(p, r, n string) string { return apis.ServiceURL("http", n, p, r, "run.localhost", "8080") },
	})
	return f
}

func (f *deleteFixture) put(key string, v any) {
	f.t.Helper()
	if _, err := state.Put(context.Background(), f.st, key, v, store.AnyRevision); err != nil {
		f.t.Fatal(err)
	}
}

// snapshot is every key and value of the store but the audit trail's
// (checked on its own).
func (f *deleteFixture) snapshot() map[string]string {
	f.t.Helper()
	entries, _, err := f.st.List(context.Background(), "")
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Key, state.AuditPrefix) && !strings.HasPrefix(e.Key, state.AccessPrefix) {
			out[e.Key] = string(e.Value)
		}
	}
	return out
}

// records are the audit trail's records of kind.
func (f *deleteFixture) records(kind string) []audit.Record {
	f.t.Helper()
	page, err := f.core.ReadAuditLog(context.Background(), f.owner, delProject, audit.Query{Kind: kind, PageSize: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []audit.Record
	for _, r := range page.Records {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// policiesNaming lists the policies with a member equal to member (in any
// case, as IAM matches emails).
func (f *deleteFixture) policiesNaming(member string) []string {
	f.t.Helper()
	var out []string
	for key, value := range f.snapshot() {
		if !strings.HasPrefix(key, "policies/") && !strings.HasPrefix(key, state.JobPoliciesPrefix) {
			continue
		}
		if strings.Contains(strings.ToLower(value), `"`+strings.ToLower(member)+`"`) {
			out = append(out, key)
		}
	}
	return out
}

// seedAccount creates robot@ with a grant in every kind of policy (and
// extra service policies naming it) and returns it.
func (f *deleteFixture) seedAccount(extraServices int) apis.ServiceAccount {
	f.t.Helper()
	p := state.Project{ProjectID: delProject}
	sa := NewServiceAccountRecord(p, "robot-1@p.iam.gserviceaccount.com", "", "")
	other := NewServiceAccountRecord(p, "other-1@p.iam.gserviceaccount.com", "", "")
	f.put(state.ServiceAccountKey(delProject, sa.Email), sa)
	f.put(state.ServiceAccountKey(delProject, other.Email), other)
	member := "serviceAccount:" + sa.Email
	f.put(state.ProjectPolicyKey(delProject), iam.Policy{Bindings: []iam.Binding{
		{Role: "roles/owner", Members: []string{"user:" + delOwner}},
		{Role: "roles/run.admin", Members: []string{member}},
	}})
	f.put(state.ServicePolicyKey(delProject, delRegion, "web"), iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"user:alice@example.com", strings.ToUpper(member[:1]) + member[1:]}}}})
	f.put(state.JobPolicyKey(delProject, delRegion, "batch"), iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{member}}}})
	f.put(state.ServiceAccountPolicyKey(delProject, other.Email), iam.Policy{Bindings: []iam.Binding{{Role: "roles/iam.serviceAccountUser", Members: []string{member}}}})
	f.put(state.ServiceAccountPolicyKey(delProject, sa.Email), iam.Policy{Bindings: []iam.Binding{{Role: "roles/iam.serviceAccountTokenCreator", Members: []string{"user:alice@example.com"}}}})
	for i := range extraServices {
		f.put(state.ServicePolicyKey(delProject, delRegion, fmt.Sprintf("svc-%03d", i)), iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{member}}}})
	}
	return sa
}

// wantAccountDeleted checks what a completed delete leaves: no account, a
// tombstone, no policy naming the email as a live member and every one
// that did naming it as deleted; then that an account re-created with the
// same email inherits none of it.
func (f *deleteFixture) wantAccountDeleted(sa apis.ServiceAccount, grants int) {
	f.t.Helper()
	ctx := context.Background()
	if _, err := f.st.Get(ctx, state.ServiceAccountKey(delProject, sa.Email)); !errors.Is(err, store.ErrNotFound) {
		f.t.Fatalf("account after its delete: %v, want ErrNotFound", err)
	}
	if _, err := f.st.Get(ctx, state.DeletedServiceAccountKey(delProject, sa.UniqueID)); err != nil {
		f.t.Fatalf("tombstone after the delete: %v", err)
	}
	if got := f.policiesNaming("serviceAccount:" + sa.Email); len(got) != 0 {
		f.t.Fatalf("policies still naming the deleted account: %v", got)
	}
	if got := f.policiesNaming(DeletedMember(sa.Email, sa.UniqueID)); len(got) != grants {
		f.t.Fatalf("%d policies name %s, want %d: %v", len(got), DeletedMember(sa.Email, sa.UniqueID), grants, got)
	}
	if n := len(f.records(audit.KindServiceAccountDelete)); n != 1 {
		f.t.Fatalf("%d delete records, want 1", n)
	}
	again, err := f.core.CreateServiceAccount(ctx, f.owner, delProject, "robot-1", "", "")
	if err != nil {
		f.t.Fatalf("re-creating the account: %v", err)
	}
	if again.UniqueID == sa.UniqueID {
		f.t.Fatal("the re-created account has the old unique ID")
	}
	if got := f.policiesNaming("serviceAccount:" + sa.Email); len(got) != 0 {
		f.t.Fatalf("the re-created account is named by %v", got)
	}
	newcomer := &Caller{Principal: iam.NewPrincipal(sa.Email), Via: "api"}
	if err := f.core.authorizeService(ctx, newcomer, iam.PermRoutesInvoke, delProject, delRegion, "web"); err == nil {
		f.t.Fatal("the re-created account may invoke the old account's service")
	}
	if _, err := f.core.AuthorizeProject(ctx, newcomer, delProject, iam.PermServicesDelete); err == nil {
		f.t.Fatal("the re-created account holds the old account's project role")
	}
	// Deleting it again, to leave the fixture as the delete did.
	if err := f.core.DeleteServiceAccount(ctx, f.owner, delProject, again.Email); err != nil {
		f.t.Fatal(err)
	}
}

// TestDeleteServiceAccountAllOrNothing fails each write of a delete in turn
// (as a crash there would): every failed delete changed nothing (the
// account exists with every binding), and the one that goes through leaves
// nothing a re-created account of the same email could use.
func TestDeleteServiceAccountAllOrNothing(t *testing.T) {
	for n := 1; ; n++ {
		f := newDeleteFixture(t)
		sa := f.seedAccount(0)
		before := f.snapshot()
		f.fail.failAt = n
		err := f.core.DeleteServiceAccount(context.Background(), f.owner, delProject, sa.Email)
		f.fail.failAt = 0
		if err != nil {
			if !errors.Is(err, errInjected) {
				t.Fatalf("write %d failing: DeleteServiceAccount = %v, want the injected error", n, err)
			}
			if after := f.snapshot(); !sameState(before, after) {
				t.Fatalf("write %d failed, yet the delete changed the store:\n%s", n, stateDiff(before, after))
			}
			if got := f.policiesNaming("serviceAccount:" + sa.Email); len(got) != 4 {
				t.Fatalf("write %d failed: the account's bindings are in %v, want 4 policies", n, got)
			}
			if r := f.records(audit.KindServiceAccountDelete); len(r) != 0 {
				t.Fatalf("write %d failed, yet the trail records a delete: %+v", n, r)
			}
			continue
		}
		if n == 1 {
			t.Fatal("the delete succeeded with its first write failing")
		}
		f.wantAccountDeleted(sa, 4)
		return
	}
}

// TestDeleteServiceAccountRetriesLostRace: a policy naming the account is
// changed between the delete's read and its transaction; the delete reads
// again and wins, keeping the concurrent change.
func TestDeleteServiceAccountRetriesLostRace(t *testing.T) {
	f := newDeleteFixture(t)
	sa := f.seedAccount(0)
	key := state.ServicePolicyKey(delProject, delRegion, "web")
	f.fail.before = func(n int) {
		if n == 1 {
			f.put(key, iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"user:bob@example.com", "serviceAccount:" + sa.Email}}}})
		}
	}
	if err := f.core.DeleteServiceAccount(context.Background(), f.owner, delProject, sa.Email); err != nil {
		t.Fatalf("DeleteServiceAccount with a concurrent policy change = %v, want nil (retried)", err)
	}
	f.fail.before = nil
	if v := f.snapshot()[key]; !strings.Contains(v, "user:bob@example.com") || !strings.Contains(v, DeletedMember(sa.Email, sa.UniqueID)) {
		t.Fatalf("web's policy = %s, want bob's concurrent grant kept and the account's member rewritten", v)
	}
	f.wantAccountDeleted(sa, 4)
}

// TestDeleteServiceAccountInSteps: an account named in more policies than
// one transaction holds is deleted in steps, members first. Failing each
// step in turn: a failed delete leaves the account existing, each policy
// naming it either as before or as deleted (less authority, never more),
// and running the delete again finishes it.
func TestDeleteServiceAccountInSteps(t *testing.T) {
	const extra = 2*MaxTxnOps + 10
	grants := 4 + extra
	for n := 1; ; n++ {
		f := newDeleteFixture(t)
		sa := f.seedAccount(extra)
		f.fail.failAt = n
		err := f.core.DeleteServiceAccount(context.Background(), f.owner, delProject, sa.Email)
		f.fail.failAt = 0
		if err == nil {
			if n < 3 {
				t.Fatalf("the delete succeeded with write %d failing; want at least 3 writes (2 steps and the deletion)", n)
			}
			f.wantAccountDeleted(sa, grants)
			if steps := f.records(KindServiceAccountDeleteStep); len(steps) < 2 {
				t.Fatalf("%d step records, want at least 2", len(steps))
			}
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d failing: DeleteServiceAccount = %v, want the injected error", n, err)
		}
		if _, err := f.st.Get(context.Background(), state.ServiceAccountKey(delProject, sa.Email)); err != nil {
			t.Fatalf("write %d failed: the account is gone (%v) before its members were all rewritten", n, err)
		}
		live, dead := f.policiesNaming("serviceAccount:"+sa.Email), f.policiesNaming(DeletedMember(sa.Email, sa.UniqueID))
		if len(live)+len(dead) != grants {
			t.Fatalf("write %d failed: %d policies name the account and %d name it deleted, want %d in all", n, len(live), len(dead), grants)
		}
		if err := f.core.DeleteServiceAccount(context.Background(), f.owner, delProject, sa.Email); err != nil {
			t.Fatalf("deleting again after write %d failed: %v", n, err)
		}
		f.wantAccountDeleted(sa, grants)
	}
}

// TestUndeleteServiceAccountRestoresGrants: undelete puts back the
// account, its own policy and its members, in steps when they do not fit.
func TestUndeleteServiceAccountRestoresGrants(t *testing.T) {
	for _, extra := range []int{0, MaxTxnOps + 5} {
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			f := newDeleteFixture(t)
			sa := f.seedAccount(extra)
			before := f.snapshot()
			ctx := context.Background()
			if err := f.core.DeleteServiceAccount(ctx, f.owner, delProject, sa.Email); err != nil {
				t.Fatal(err)
			}
			if _, err := f.core.UndeleteServiceAccount(ctx, f.owner, delProject, sa.UniqueID); err != nil {
				t.Fatal(err)
			}
			if got := f.policiesNaming(DeletedMember(sa.Email, sa.UniqueID)); len(got) != 0 {
				t.Fatalf("policies still naming the undeleted account as deleted: %v", got)
			}
			if got := f.policiesNaming("serviceAccount:" + sa.Email); len(got) != 4+extra {
				t.Fatalf("%d policies name the undeleted account, want %d", len(got), 4+extra)
			}
			if _, ok := f.snapshot()[state.ServiceAccountPolicyKey(delProject, sa.Email)]; !ok {
				t.Fatal("the account's own policy was not restored")
			}
			if len(f.snapshot()) != len(before) {
				t.Fatalf("undelete left %d keys, want %d as before the delete:\n%s", len(f.snapshot()), len(before), stateDiff(before, f.snapshot()))
			}
		})
	}
}

// seedService stores service web with revisions revisions (the last
// serving), and web-api, whose revisions share web's key prefix.
func (f *deleteFixture) seedService(revisions int) {
	f.t.Helper()
	ctx := context.Background()
	svc := func(name, latest string) apis.Service {
		s := apis.Service{APIVersion: apis.ServingAPIVersion, Kind: apis.KindService,
			Metadata: apis.ObjectMeta{Name: name, Namespace: delProject, Generation: int64(revisions), Labels: map[string]string{apis.LabelLocation: delRegion}}}
		s.Status.LatestCreatedRevisionName, s.Status.LatestReadyRevisionName = latest, latest
		s.Status.Traffic = []apis.TrafficTarget{{RevisionName: latest, Percent: 100}}
		return s
	}
	revName := func(service string, i int) string { return fmt.Sprintf("%s-%05d-abc", service, i) }
	f.put(state.ServiceKey(delProject, delRegion, "web"), svc("web", revName("web", revisions)))
	f.put(state.ServiceKey(delProject, delRegion, "web-api"), svc("web-api", revName("web-api", 1)))
	f.put(state.ServicePolicyKey(delProject, delRegion, "web"), iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}})
	var ops []store.Op
	add := func(service string, i int) {
		rv := apis.Revision{APIVersion: apis.ServingAPIVersion, Kind: "Revision",
			Metadata: apis.ObjectMeta{Name: revName(service, i), Namespace: delProject, Labels: map[string]string{apis.LabelService: service, apis.LabelLocation: delRegion}}}
		op, err := write{key: state.RevisionKey(delProject, delRegion, rv.Metadata.Name), value: &rv, expected: store.MustNotExist}.op()
		if err != nil {
			f.t.Fatal(err)
		}
		ops = append(ops, op)
	}
	add("web-api", 1)
	for i := 1; i <= revisions; i++ {
		add("web", i)
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := f.st.Txn(ctx, ops[:n]); err != nil {
			f.t.Fatal(err)
		}
		ops = ops[n:]
	}
}

// revisionsOf lists the stored revisions of service.
func (f *deleteFixture) revisionsOf(service string) []string {
	f.t.Helper()
	revs, err := f.core.revisionsOf(context.Background(), delProject, delRegion, service)
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, r := range revs {
		names = append(names, r.name)
	}
	return names
}

// wantServiceDeleted checks what a completed delete leaves: no service, no
// policy, none of its revisions, web-api untouched.
func (f *deleteFixture) wantServiceDeleted() {
	f.t.Helper()
	snap := f.snapshot()
	for _, key := range []string{state.ServiceKey(delProject, delRegion, "web"), state.ServicePolicyKey(delProject, delRegion, "web")} {
		if _, ok := snap[key]; ok {
			f.t.Fatalf("%s remains after the acknowledged delete", key)
		}
	}
	if left := f.revisionsOf("web"); len(left) != 0 {
		f.t.Fatalf("%d revisions of the deleted service remain: %v", len(left), left)
	}
	if got := f.revisionsOf("web-api"); len(got) != 1 {
		f.t.Fatalf("web-api's revisions = %v, want its one", got)
	}
	if _, ok := snap[state.ServiceKey(delProject, delRegion, "web-api")]; !ok {
		f.t.Fatal("deleting web deleted web-api")
	}
	if n := len(f.records(audit.KindServiceDelete)); n != 1 {
		f.t.Fatalf("%d service delete records, want 1", n)
	}
}

// TestDeleteServiceAllOrNothing fails each write of a service delete in
// turn: a failed delete leaves the service, its policy and its revisions as
// they were; the acknowledged one leaves none of its revisions.
func TestDeleteServiceAllOrNothing(t *testing.T) {
	for n := 1; ; n++ {
		f := newDeleteFixture(t)
		f.seedService(3)
		before := f.snapshot()
		f.fail.failAt = n
		_, _, err := f.core.DeleteService(context.Background(), f.owner, delProject, delRegion, "web", "", false)
		f.fail.failAt = 0
		if err != nil {
			if !errors.Is(err, errInjected) {
				t.Fatalf("write %d failing: DeleteService = %v, want the injected error", n, err)
			}
			if after := f.snapshot(); !sameState(before, after) {
				t.Fatalf("write %d failed, yet the delete changed the store:\n%s", n, stateDiff(before, after))
			}
			continue
		}
		if n == 1 {
			t.Fatal("the delete succeeded with its first write failing")
		}
		f.wantServiceDeleted()
		return
	}
}

// TestDeleteServiceInSteps: a service with more revisions than one
// transaction holds is deleted in steps, revisions that serve nothing
// first. Failing each step in turn: the service, its policy and its
// serving revision stay as they were, and deleting again finishes.
func TestDeleteServiceInSteps(t *testing.T) {
	const revisions = 2*MaxTxnOps + 10
	serving := fmt.Sprintf("web-%05d-abc", revisions)
	for n := 1; ; n++ {
		f := newDeleteFixture(t)
		f.seedService(revisions)
		before := f.snapshot()
		f.fail.failAt = n
		_, _, err := f.core.DeleteService(context.Background(), f.owner, delProject, delRegion, "web", "", false)
		f.fail.failAt = 0
		if err == nil {
			if n < 3 {
				t.Fatalf("the delete succeeded with write %d failing; want at least 3 writes (2 steps and the deletion)", n)
			}
			f.wantServiceDeleted()
			if steps := f.records(KindServiceDeleteStep); len(steps) < 2 {
				t.Fatalf("%d step records, want at least 2", len(steps))
			}
			return
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d failing: DeleteService = %v, want the injected error", n, err)
		}
		after := f.snapshot()
		for _, key := range []string{
			state.ServiceKey(delProject, delRegion, "web"),
			state.ServicePolicyKey(delProject, delRegion, "web"),
			state.RevisionKey(delProject, delRegion, serving),
		} {
			if after[key] != before[key] {
				t.Fatalf("write %d failed, yet %s changed", n, key)
			}
		}
		if _, _, err := f.core.DeleteService(context.Background(), f.owner, delProject, delRegion, "web", "", false); err != nil {
			t.Fatalf("deleting again after write %d failed: %v", n, err)
		}
		f.wantServiceDeleted()
	}
}

// TestDeleteServiceRetriesLostRace: a revision of the service changes
// between the delete's read and its transaction; the delete reads again
// and still deletes every revision.
func TestDeleteServiceRetriesLostRace(t *testing.T) {
	f := newDeleteFixture(t)
	f.seedService(3)
	f.fail.before = func(n int) {
		if n == 1 {
			rv := apis.Revision{Metadata: apis.ObjectMeta{Name: "web-00002-abc", Namespace: delProject, Labels: map[string]string{apis.LabelService: "web", apis.LabelLocation: delRegion}}}
			rv.Status.ObservedGeneration = 2
			f.put(state.RevisionKey(delProject, delRegion, "web-00002-abc"), rv)
		}
	}
	if _, _, err := f.core.DeleteService(context.Background(), f.owner, delProject, delRegion, "web", "", false); err != nil {
		t.Fatalf("DeleteService with a concurrent revision change = %v, want nil (retried)", err)
	}
	f.wantServiceDeleted()
}

// TestDeleteServiceStaleEtagChangesNothing: a delete with a stale etag is
// refused and changes nothing (it is not retried with a fresh read).
func TestDeleteServiceStaleEtagChangesNothing(t *testing.T) {
	f := newDeleteFixture(t)
	f.seedService(3)
	before := f.snapshot()
	_, _, err := f.core.DeleteService(context.Background(), f.owner, delProject, delRegion, "web", iam.Etag(1), false)
	var e *Error
	if !errors.As(err, &e) || e.Status != "ABORTED" {
		t.Fatalf("DeleteService with a stale etag = %v, want ABORTED", err)
	}
	if after := f.snapshot(); !sameState(before, after) {
		t.Fatalf("a refused delete changed the store:\n%s", stateDiff(before, after))
	}
}

// TestDeleteWithoutPermissionChangesNothing: a caller without the
// permission deletes nothing, in one transaction or in steps.
func TestDeleteWithoutPermissionChangesNothing(t *testing.T) {
	f := newDeleteFixture(t)
	sa := f.seedAccount(MaxTxnOps + 5)
	f.seedService(MaxTxnOps + 5)
	before := f.snapshot()
	// alice may invoke web, nothing more.
	alice := &Caller{Principal: iam.NewPrincipal("alice@example.com"), Via: "api"}
	ctx := context.Background()
	if err := f.core.DeleteServiceAccount(ctx, alice, delProject, sa.Email); err == nil {
		t.Fatal("alice deleted the account")
	}
	if _, _, err := f.core.DeleteService(ctx, alice, delProject, delRegion, "web", "", false); err == nil {
		t.Fatal("alice deleted the service")
	}
	if after := f.snapshot(); !sameState(before, after) {
		t.Fatalf("refused deletes changed the store:\n%s", stateDiff(before, after))
	}
}

func sameState(a, b map[string]string) bool { return stateDiff(a, b) == "" }

func stateDiff(before, after map[string]string) string {
	var out strings.Builder
	for k, v := range before {
		if w, ok := after[k]; !ok {
			fmt.Fprintf(&out, "  - %s\n", k)
		} else if w != v {
			fmt.Fprintf(&out, "  ~ %s: %s → %s\n", k, v, w)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			fmt.Fprintf(&out, "  + %s\n", k)
		}
	}
	return out.String()
}
