package iam

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseMember(t *testing.T) {
	tests := []struct {
		in      string
		want    Member
		wantErr string
	}{
		{in: "allUsers", want: Member{Kind: KindAllUsers}},
		{in: "allAuthenticatedUsers", want: Member{Kind: KindAllAuthenticatedUsers}},
		{in: "user:Alice@Example.com", want: Member{Kind: KindUser, Value: "alice@example.com"}},
		{in: "serviceAccount:sa@p.iam.gserviceaccount.com", want: Member{Kind: KindServiceAccount, Value: "sa@p.iam.gserviceaccount.com"}},
		{in: "group:team@example.com", want: Member{Kind: KindGroup, Value: "team@example.com"}},
		{in: "domain:example.com", want: Member{Kind: KindDomain, Value: "example.com"}},
		{in: "deleted:user:bob@example.com?uid=123", want: Member{Kind: KindDeleted, Value: "user:bob@example.com?uid=123"}},
		{in: "allusers", wantErr: `did you mean "allUsers"`},
		{in: "AllAuthenticatedUsers", wantErr: `did you mean "allAuthenticatedUsers"`},
		{in: "alice@example.com", wantErr: `did you mean "user:alice@example.com"`},
		{in: "", wantErr: "invalid member"},
		{in: "user:", wantErr: "invalid member"},
		{in: "user:alice", wantErr: "not an email"},
		{in: "user:alice@", wantErr: "not an email"},
		{in: "user:@example.com", wantErr: "not an email"},
		{in: "user:a@b@example.com", wantErr: "not an email"},
		{in: "user:Alice <a@example.com>", wantErr: "not an email"},
		{in: "user:a@localhost", wantErr: "not a domain"},
		{in: "domain:-bad.com", wantErr: "not a domain"},
		{in: "domain:exa mple.com", wantErr: "not a domain"},
		{in: "serviceAccount:nope", wantErr: "not an email"},
		{in: "robot:r@example.com", wantErr: "unknown member type"},
		{in: "deleted:nonsense", wantErr: "invalid member"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMember(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMember(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMember(%q) error = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseMember(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRolePermissions(t *testing.T) {
	roles := Predefined()
	tests := []struct {
		role string
		perm string
		want bool
	}{
		{"roles/run.invoker", PermRoutesInvoke, true},
		{"roles/run.invoker", PermRunJobsRun, true},
		{"roles/run.invoker", PermServicesGet, false},
		{"roles/run.servicesInvoker", PermRoutesInvoke, true},
		{"roles/run.servicesInvoker", PermRunJobsRun, false},
		{"roles/run.viewer", PermRoutesInvoke, false},
		{"roles/run.viewer", PermServicesGetIamPolicy, true},
		{"roles/viewer", PermRoutesInvoke, false},
		{"roles/viewer", PermServicesGet, true},
		{"roles/editor", PermRoutesInvoke, true},
		{"roles/editor", PermServicesSetIamPolicy, false},
		{"roles/editor", PermServicesCreate, true},
		{"roles/run.developer", PermServicesSetIamPolicy, false},
		{"roles/run.developer", PermServicesUpdate, true},
		{"roles/run.developer", PermRoutesInvoke, true},
		{"roles/run.admin", PermServicesSetIamPolicy, true},
		{"roles/run.admin", PermRoutesInvoke, true},
		{"roles/owner", PermServicesSetIamPolicy, true},
		{"roles/owner", PermRoutesInvoke, true},
		{"roles/owner", "anything.at.all", true},
		{"roles/iam.serviceAccountTokenCreator", PermSAGetOpenIDToken, true},
		{"roles/iam.serviceAccountTokenCreator", PermRoutesInvoke, false},
		{"roles/iam.serviceAccountUser", PermSAActAs, true},
	}
	for _, tt := range tests {
		t.Run(tt.role+"/"+tt.perm, func(t *testing.T) {
			r, ok := roles.Lookup(tt.role)
			if !ok {
				t.Fatalf("role %s missing", tt.role)
			}
			if got := r.Has(tt.perm); got != tt.want {
				t.Errorf("%s.Has(%s) = %v, want %v", tt.role, tt.perm, got, tt.want)
			}
		})
	}
	if got := roles.Granting(PermRoutesInvoke); strings.Join(got, ",") != "roles/editor,roles/owner,roles/run.admin,roles/run.developer,roles/run.invoker,roles/run.servicesInvoker" {
		t.Errorf("Granting(run.routes.invoke) = %v", got)
	}
}

func policy(bindings ...Binding) *Policy { return &Policy{Version: 1, Bindings: bindings} }

func TestCheck(t *testing.T) {
	roles := Predefined()
	alice := NewPrincipal("alice@example.com")
	bob := NewPrincipal("Bob@Other.org")
	sa := NewPrincipal("sa@p.iam.gserviceaccount.com")
	anon := Principal{}
	grouped := Principal{Kind: User, Email: "carol@example.net", Groups: []string{"team@example.com"}}
	invoker := func(members ...string) Binding { return Binding{Role: "roles/run.invoker", Members: members} }

	tests := []struct {
		name      string
		principal Principal
		project   *Policy
		service   *Policy
		want      bool
		wantRes   string
	}{
		{"no policies", alice, nil, nil, false, ""},
		{"anonymous never without allUsers", anon, nil, policy(invoker("allAuthenticatedUsers")), false, ""},
		{"allUsers admits anonymous", anon, nil, policy(invoker("allUsers")), true, "svc"},
		{"allUsers admits users", alice, nil, policy(invoker("allUsers")), true, "svc"},
		{"allAuthenticatedUsers admits users", alice, nil, policy(invoker("allAuthenticatedUsers")), true, "svc"},
		{"allAuthenticatedUsers admits service accounts", sa, nil, policy(invoker("allAuthenticatedUsers")), true, "svc"},
		{"user bound", alice, nil, policy(invoker("user:alice@example.com")), true, "svc"},
		{"user email case-insensitive", bob, nil, policy(invoker("user:bob@other.org")), true, "svc"},
		{"other user", bob, nil, policy(invoker("user:alice@example.com")), false, ""},
		{"user is not a service account", alice, nil, policy(invoker("serviceAccount:alice@example.com")), false, ""},
		{"service account bound", sa, nil, policy(invoker("serviceAccount:sa@p.iam.gserviceaccount.com")), true, "svc"},
		{"service account not as user", sa, nil, policy(invoker("user:sa@p.iam.gserviceaccount.com")), false, ""},
		{"domain admits users of the domain", alice, nil, policy(invoker("domain:example.com")), true, "svc"},
		{"domain is exact", grouped, nil, policy(invoker("domain:example.com")), false, ""},
		{"domain never admits service accounts", sa, nil, policy(invoker("domain:p.iam.gserviceaccount.com")), false, ""},
		{"group membership", grouped, nil, policy(invoker("group:team@example.com")), true, "svc"},
		{"project grant inherited", alice, policy(invoker("user:alice@example.com")), nil, true, "proj"},
		{"owner at project invokes", alice, policy(Binding{Role: "roles/owner", Members: []string{"user:alice@example.com"}}), nil, true, "proj"},
		{"viewer cannot invoke", alice, policy(Binding{Role: "roles/viewer", Members: []string{"user:alice@example.com"}}), policy(Binding{Role: "roles/run.viewer", Members: []string{"user:alice@example.com"}}), false, ""},
		{"unknown role grants nothing", alice, nil, policy(Binding{Role: "roles/made.up", Members: []string{"user:alice@example.com"}}), false, ""},
		{"conditional binding fails closed", alice, nil, &Policy{Version: 3, Bindings: []Binding{{Role: "roles/run.invoker", Members: []string{"user:alice@example.com"}, Condition: &Expr{Title: "t", Expression: "true"}}}}, false, ""},
		{"malformed member never grants", alice, nil, policy(invoker("alice@example.com")), false, ""},
		{"deleted member never grants", alice, nil, policy(invoker("deleted:user:alice@example.com?uid=1")), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := roles.Check(tt.principal, PermRoutesInvoke, Level{Resource: "proj", Policy: tt.project}, Level{Resource: "svc", Policy: tt.service})
			if d.Allowed != tt.want {
				t.Fatalf("Check(%v) allowed = %v, want %v", tt.principal, d.Allowed, tt.want)
			}
			if d.Resource != tt.wantRes {
				t.Errorf("granted on %q, want %q", d.Resource, tt.wantRes)
			}
			if d.Explain(tt.principal) == "" {
				t.Errorf("empty explanation")
			}
		})
	}
}

// TestDecideIndividuallyAt: only bindings naming the principal (user,
// service account, domain, group; conditional ones whose condition holds)
// count; allUsers and allAuthenticatedUsers, which anyone with or without an
// account satisfies, never do, conditional or not.
func TestDecideIndividuallyAt(t *testing.T) {
	roles := Predefined()
	alice := NewPrincipal("alice@example.com")
	sa := NewPrincipal("sa@p.iam.gserviceaccount.com")
	grouped := Principal{Kind: User, Email: "carol@example.net", Groups: []string{"team@example.com"}}
	anon := Principal{}
	invoker := func(members ...string) Binding { return Binding{Role: "roles/run.invoker", Members: members} }
	conditional := func(expr string, members ...string) *Policy {
		return &Policy{Version: 3, Bindings: []Binding{{Role: "roles/run.invoker", Members: members, Condition: &Expr{Title: "t", Expression: expr}}}}
	}
	tests := []struct {
		name      string
		principal Principal
		project   *Policy
		service   *Policy
		want      bool
	}{
		{"user bound", alice, nil, policy(invoker("allUsers", "user:alice@example.com")), true},
		{"service account bound", sa, nil, policy(invoker("allUsers", "serviceAccount:sa@p.iam.gserviceaccount.com")), true},
		{"domain bound", alice, nil, policy(invoker("allUsers", "domain:example.com")), true},
		{"group bound", grouped, nil, policy(invoker("allUsers", "group:team@example.com")), true},
		{"project grant", alice, policy(invoker("user:alice@example.com")), policy(invoker("allUsers")), true},
		{"conditional binding that holds", alice, nil, conditional("true", "user:alice@example.com"), true},
		{"attacker: allUsers only", alice, nil, policy(invoker("allUsers")), false},
		{"attacker: allAuthenticatedUsers", alice, nil, policy(invoker("allUsers", "allAuthenticatedUsers")), false},
		{"attacker: someone else bound", sa, nil, policy(invoker("allUsers", "user:alice@example.com")), false},
		{"attacker: conditional allUsers", alice, nil, conditional("true", "allUsers"), false},
		{"attacker: conditional allAuthenticatedUsers", sa, nil, conditional("true", "allAuthenticatedUsers"), false},
		{"attacker: condition does not hold", alice, nil, conditional("false", "user:alice@example.com"), false},
		{"attacker: anonymous", anon, nil, policy(invoker("allUsers", "allAuthenticatedUsers", "user:alice@example.com")), false},
		{"attacker: deleted member", alice, nil, policy(invoker("allUsers", "deleted:user:alice@example.com?uid=1")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := roles.Compile(PermRoutesInvoke, Level{Resource: "proj", Policy: tt.project}, Level{Resource: "svc", Policy: tt.service})
			if d := g.DecideIndividuallyAt(tt.principal, time.Now()); d.Allowed != tt.want {
				t.Fatalf("DecideIndividuallyAt(%v) allowed = %v (%s), want %v", tt.principal, d.Allowed, d.Explain(tt.principal), tt.want)
			}
		})
	}
	g := roles.Compile(PermRoutesInvoke, Level{Resource: "svc", Policy: policy(invoker("allUsers", "serviceAccount:sa@p.iam.gserviceaccount.com", "domain:example.com"))})
	bob := NewPrincipal("bob@other.org")
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		g.DecideIndividuallyAt(sa, now)
		g.DecideIndividuallyAt(alice, now)
		g.DecideIndividuallyAt(bob, now)
	}); n != 0 {
		t.Errorf("DecideIndividuallyAt allocates %v times per run, want 0", n)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	roles := Predefined()
	g := roles.Compile(PermRoutesInvoke, Level{Resource: "svc", Policy: policy(Binding{Role: "roles/run.invoker", Members: []string{"serviceAccount:sa@p.iam.gserviceaccount.com", "domain:example.com"}})})
	sa := NewPrincipal("sa@p.iam.gserviceaccount.com")
	alice := NewPrincipal("alice@example.com")
	if n := testing.AllocsPerRun(100, func() { g.Decide(sa); g.Decide(alice) }); n != 0 {
		t.Errorf("Decide allocates %v times per run, want 0", n)
	}
}

func TestValidate(t *testing.T) {
	roles := Predefined()
	tests := []struct {
		name    string
		policy  Policy
		scope   Scope
		wantErr string
	}{
		{"ok", Policy{Bindings: []Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}}, ScopeService, ""},
		{"empty", Policy{}, ScopeService, ""},
		{"unknown role", Policy{Bindings: []Binding{{Role: "roles/run.god", Members: []string{"allUsers"}}}}, ScopeService, "does not exist"},
		{"no role", Policy{Bindings: []Binding{{Members: []string{"allUsers"}}}}, ScopeService, "role is required"},
		{"bad member", Policy{Bindings: []Binding{{Role: "roles/run.invoker", Members: []string{"everyone"}}}}, ScopeService, "invalid member"},
		{"no members", Policy{Bindings: []Binding{{Role: "roles/run.invoker"}}}, ScopeService, "no members"},
		{"allUsers on project", Policy{Bindings: []Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}}, ScopeProject, "cannot be granted roles on a project"},
		{"allAuthenticatedUsers on project", Policy{Bindings: []Binding{{Role: "roles/viewer", Members: []string{"allAuthenticatedUsers"}}}}, ScopeProject, "cannot be granted roles on a project"},
		{"condition needs v3", Policy{Version: 1, Bindings: []Binding{{Role: "roles/run.invoker", Members: []string{"user:a@example.com"}, Condition: &Expr{Title: "t", Expression: "true"}}}}, ScopeService, "version 3"},
		{"condition v3 ok", Policy{Version: 3, Bindings: []Binding{{Role: "roles/run.invoker", Members: []string{"user:a@example.com"}, Condition: &Expr{Title: "t", Expression: "true"}}}}, ScopeService, ""},
		{"bad version", Policy{Version: 2}, ScopeService, "version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate(roles, tt.scope)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEtag(t *testing.T) {
	for _, rev := range []int64{1, 11, 255, 1 << 40} {
		e := Etag(rev)
		if !strings.HasSuffix(e, "=") || len(e) != 12 {
			t.Errorf("Etag(%d) = %q, want 12 padded base64 characters", rev, e)
		}
		for _, form := range []string{e, strings.TrimRight(e, "="), strings.NewReplacer("+", "-", "/", "_").Replace(e)} {
			got, err := ParseEtag(form)
			if err != nil || got != rev {
				t.Errorf("ParseEtag(%q) = %d, %v, want %d", form, got, err, rev)
			}
		}
	}
	if got, err := ParseEtag(EmptyEtag); err != nil || got != 0 {
		t.Errorf("ParseEtag(ACAB) = %d, %v, want 0", got, err)
	}
	for _, bad := range []string{"!!!", "AAAA", "AAAAAAAAAAA=", "////////////"} {
		if _, err := ParseEtag(bad); err == nil {
			t.Errorf("ParseEtag(%q) accepted", bad)
		}
	}
}

func TestBindingsEdit(t *testing.T) {
	p := Policy{}
	if !p.AddBinding("roles/run.invoker", "allUsers", nil) {
		t.Fatal("first add reported no change")
	}
	if p.AddBinding("roles/run.invoker", "allUsers", nil) {
		t.Fatal("duplicate add reported a change")
	}
	p.AddBinding("roles/run.invoker", "user:a@example.com", nil)
	p.AddBinding("roles/run.viewer", "user:a@example.com", nil)
	if !p.RemoveBinding("roles/run.invoker", "allUsers", nil, true) {
		t.Fatal("remove reported no change")
	}
	if p.RemoveBinding("roles/run.invoker", "allUsers", nil, true) {
		t.Fatal("second remove reported a change")
	}
	p.RemoveBinding("roles/run.viewer", "user:a@example.com", nil, true)
	got, _ := json.Marshal(p.Normalize())
	want := `{"version":1,"bindings":[{"role":"roles/run.invoker","members":["user:a@example.com"]}]}`
	if string(got) != want {
		t.Errorf("policy = %s, want %s", got, want)
	}
}

func TestNormalizeMerges(t *testing.T) {
	p := Policy{Bindings: []Binding{
		{Role: "roles/run.invoker", Members: []string{"user:b@example.com", "allUsers"}},
		{Role: "roles/run.admin", Members: []string{"user:x@example.com"}},
		{Role: "roles/run.invoker", Members: []string{"user:b@example.com", "user:a@example.com"}},
		{Role: "roles/run.viewer", Members: nil},
	}}
	got, _ := json.Marshal(p.Normalize())
	want := `{"version":1,"bindings":[{"role":"roles/run.admin","members":["user:x@example.com"]},{"role":"roles/run.invoker","members":["allUsers","user:a@example.com","user:b@example.com"]}]}`
	if string(got) != want {
		t.Errorf("Normalize = %s, want %s", got, want)
	}
}

// FuzzPolicyJSON: whatever JSON arrives at setIamPolicy, validation and
// compilation never panic, and a policy that validates grants only to members
// it names.
func FuzzPolicyJSON(f *testing.F) {
	f.Add(`{"bindings":[{"role":"roles/run.invoker","members":["allUsers"]}]}`)
	f.Add(`{"version":3,"bindings":[{"role":"roles/run.invoker","members":["user:a@example.com"],"condition":{"title":"t","expression":"true"}}],"etag":"ACAB"}`)
	f.Add(`{"bindings":[{"role":"roles/owner","members":["domain:example.com","group:g@example.com","serviceAccount:s@p.iam.gserviceaccount.com"]}]}`)
	f.Add(`{"bindings":null}`)
	f.Add(`[]`)
	f.Add(`{"bindings":[{"role":"roles/run.invoker","members":["deleted:serviceAccount:s@p.iam.gserviceaccount.com?uid=123"]}]}`)
	roles := Predefined()
	stranger := NewPrincipal("stranger@nowhere.invalid")
	deletedOne := NewPrincipal("s@p.iam.gserviceaccount.com")
	f.Fuzz(func(t *testing.T, in string) {
		var p Policy
		if json.Unmarshal([]byte(in), &p) != nil {
			return
		}
		if p.Etag != "" {
			ParseEtag(p.Etag)
		}
		err := p.Validate(roles, ScopeService)
		n := p.Normalize()
		g := roles.Compile(PermRoutesInvoke, Level{Resource: "svc", Policy: &n})
		// A deleted principal's member applies to nobody, its namesake included.
		if d := g.Decide(deletedOne); d.Allowed && strings.HasPrefix(d.Member, "deleted:") {
			t.Fatalf("%s admitted through the deleted member %q in %s", deletedOne, d.Member, in)
		}
		d := g.Decide(stranger)
		if err != nil || !d.Allowed {
			return
		}
		// Only these members can admit an unrelated stranger.
		if d.Member != "allUsers" && d.Member != "allAuthenticatedUsers" {
			t.Fatalf("stranger admitted through %q in %s", d.Member, in)
		}
	})
}
