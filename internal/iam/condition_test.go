package iam

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func conditional(role, expr string, members ...string) Binding {
	return Binding{Role: role, Members: members, Condition: &Expr{Title: "cond", Expression: expr}}
}

func policy3(bindings ...Binding) *Policy { return &Policy{Version: Version3, Bindings: bindings} }

const svcResource = "projects/p/locations/us-central1/services/hello"

func TestConditions(t *testing.T) {
	roles := Predefined()
	alice := NewPrincipal("alice@example.com")
	sa := NewPrincipal("sa@p.iam.gserviceaccount.com")
	anon := Principal{}
	expiry := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	before, after := expiry.Add(-time.Second), expiry.Add(time.Second)
	until := `request.time < timestamp("2030-01-01T00:00:00Z")`
	invoker := "roles/run.invoker"

	tests := []struct {
		name      string
		principal Principal
		project   *Policy
		service   *Policy
		now       time.Time
		want      bool
	}{
		{"expiring grant before", alice, nil, policy3(conditional(invoker, until, "user:alice@example.com")), before, true},
		{"expiring grant after", alice, nil, policy3(conditional(invoker, until, "user:alice@example.com")), after, false},
		{"expiring grant at the instant", alice, nil, policy3(conditional(invoker, until, "user:alice@example.com")), expiry, false},
		{"starting grant", alice, nil, policy3(conditional(invoker, `request.time >= timestamp("2030-01-01T00:00:00Z")`, "user:alice@example.com")), after, true},
		{"window open", alice, nil, policy3(conditional(invoker,
			`request.time > timestamp("2029-12-31T00:00:00Z") && request.time < timestamp("2030-01-02T00:00:00Z")`, "user:alice@example.com")), expiry, true},
		{"window closed", alice, nil, policy3(conditional(invoker,
			`request.time > timestamp("2029-12-31T00:00:00Z") && request.time < timestamp("2030-01-02T00:00:00Z")`, "user:alice@example.com")), expiry.Add(48 * time.Hour), false},
		{"office hours in a time zone", alice, nil, policy3(conditional(invoker,
			`request.time.getHours("Europe/Berlin") >= 9 && request.time.getHours("Europe/Berlin") < 17`, "user:alice@example.com")),
			time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC), true}, // 11:00 in Berlin
		{"outside office hours", alice, nil, policy3(conditional(invoker,
			`request.time.getHours("Europe/Berlin") >= 9 && request.time.getHours("Europe/Berlin") < 17`, "user:alice@example.com")),
			time.Date(2030, 1, 1, 20, 0, 0, 0, time.UTC), false},
		{"resource.name startsWith", alice, nil, policy3(conditional(invoker, `resource.name.startsWith("projects/p/locations/us-central1/")`, "user:alice@example.com")), before, true},
		{"resource.name other region", alice, nil, policy3(conditional(invoker, `resource.name.startsWith("projects/p/locations/europe-west1/")`, "user:alice@example.com")), before, false},
		{"project grant sees the service as resource", alice, policy3(conditional(invoker, `resource.name.endsWith("/services/hello")`, "user:alice@example.com")), nil, before, true},
		{"project grant scoped to another service", alice, policy3(conditional(invoker, `resource.name.endsWith("/services/other")`, "user:alice@example.com")), nil, before, false},
		{"resource.type and service", alice, nil, policy3(conditional(invoker,
			`resource.type == "run.googleapis.com/Service" && resource.service == "run.googleapis.com"`, "user:alice@example.com")), before, true},
		{"extract", alice, nil, policy3(conditional(invoker, `resource.name.extract("/services/{name}") == "hello"`, "user:alice@example.com")), before, true},
		{"condition for someone else", sa, nil, policy3(conditional(invoker, "true", "user:alice@example.com")), before, false},
		{"service account in a conditional binding", sa, nil, policy3(conditional(invoker, "true", "serviceAccount:sa@p.iam.gserviceaccount.com")), before, true},
		{"domain in a conditional binding", alice, nil, policy3(conditional(invoker, "true", "domain:example.com")), before, true},
		{"conditional allUsers admits anonymous", anon, nil, policy3(conditional(invoker, until, "allUsers")), before, true},
		{"conditional allUsers expired", anon, nil, policy3(conditional(invoker, until, "allUsers")), after, false},
		{"conditional allAuthenticatedUsers never anonymous", anon, nil, policy3(conditional(invoker, "true", "allAuthenticatedUsers")), before, false},
		{"evaluation error grants nothing", alice, nil, policy3(conditional(invoker, `int(resource.name) > 0`, "user:alice@example.com")), before, false},
		{"extract with a bad template grants nothing", alice, nil, policy3(conditional(invoker, `resource.name.extract("no placeholder") == ""`, "user:alice@example.com")), before, false},
		{"expression that does not compile grants nothing", alice, nil, policy3(conditional(invoker, `request.tim < 3`, "user:alice@example.com")), before, false},
		{"non-bool expression grants nothing", alice, nil, policy3(conditional(invoker, `"yes"`, "user:alice@example.com")), before, false},
		{"role without the permission", alice, nil, policy3(conditional("roles/run.viewer", "true", "user:alice@example.com")), before, false},
		{"unconditional wins over a false condition", alice, nil, policy3(
			conditional(invoker, "false", "user:alice@example.com"),
			Binding{Role: invoker, Members: []string{"user:alice@example.com"}}), after, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			levels := []Level{{Resource: "projects/p", Policy: tt.project}, {Resource: svcResource, Policy: tt.service}}
			d := roles.CheckAt(tt.principal, PermRoutesInvoke, tt.now, levels...)
			if d.Allowed != tt.want {
				t.Fatalf("CheckAt(%v, %v) allowed = %v (%s), want %v", tt.principal, tt.now, d.Allowed, d.Explain(tt.principal), tt.want)
			}
			// Without request context, conditions never grant.
			if plain := roles.Check(tt.principal, PermRoutesInvoke, levels...); plain.Allowed && plain.Condition != "" {
				t.Errorf("Check granted through condition %q", plain.Condition)
			}
		})
	}
}

func TestConditionalDecisionExplains(t *testing.T) {
	roles := Predefined()
	alice := NewPrincipal("alice@example.com")
	g := roles.Compile(PermRoutesInvoke, Level{Resource: svcResource, Policy: policy3(
		conditional("roles/run.invoker", `request.time < timestamp("2030-01-01T00:00:00Z")`, "user:alice@example.com"))})
	if g.Public() || g.ConditionallyPublic() || !g.HasConditions() {
		t.Errorf("Public, ConditionallyPublic, HasConditions = %v, %v, %v; want false, false, true", g.Public(), g.ConditionallyPublic(), g.HasConditions())
	}
	allow := g.DecideAt(alice, time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC))
	if !allow.Allowed || allow.Condition != "cond" || !strings.Contains(allow.Explain(alice), `under condition "cond"`) {
		t.Errorf("before expiry: %+v, %q", allow, allow.Explain(alice))
	}
	deny := g.DecideAt(alice, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	if deny.Allowed || !strings.Contains(deny.Explain(alice), "conditional") {
		t.Errorf("after expiry: %+v, %q", deny, deny.Explain(alice))
	}
	if d := g.Decide(alice); d.Allowed {
		t.Errorf("Decide (no request context) allowed through a condition: %+v", d)
	}
}

func TestDecideAtUnconditionalDoesNotAllocate(t *testing.T) {
	roles := Predefined()
	g := roles.Compile(PermRoutesInvoke, Level{Resource: svcResource, Policy: policy(Binding{Role: "roles/run.invoker", Members: []string{"serviceAccount:sa@p.iam.gserviceaccount.com", "domain:example.com"}})})
	sa := NewPrincipal("sa@p.iam.gserviceaccount.com")
	bob := NewPrincipal("bob@other.org")
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { g.DecideAt(sa, now); g.DecideAt(bob, now) }); n != 0 {
		t.Errorf("DecideAt allocates %v times per run without conditions, want 0", n)
	}
}

func TestValidateConditions(t *testing.T) {
	roles := Predefined()
	member := []string{"user:a@example.com"}
	cond := func(role, expr string) Policy {
		return Policy{Version: Version3, Bindings: []Binding{{Role: role, Members: member, Condition: &Expr{Title: "t", Expression: expr}}}}
	}
	tests := []struct {
		name    string
		policy  Policy
		wantErr string
	}{
		{"expiry", cond("roles/run.invoker", `request.time < timestamp("2030-01-01T00:00:00Z")`), ""},
		{"resource prefix", cond("roles/run.invoker", `resource.name.startsWith("projects/p/locations/r/services/a")`), ""},
		{"version 1 refused", Policy{Version: Version1, Bindings: cond("roles/run.invoker", "true").Bindings}, "version 3"},
		{"no version refused", Policy{Bindings: cond("roles/run.invoker", "true").Bindings}, "version 3"},
		{"syntax error", cond("roles/run.invoker", `request.time <`), "bindings[0] (role roles/run.invoker): condition \"t\" is not valid"},
		{"unknown attribute", cond("roles/run.invoker", `request.tim < timestamp("2030-01-01T00:00:00Z")`), "undeclared reference to 'request.tim'"},
		{"unsupported attribute", cond("roles/run.invoker", `resource.matchTag("env", "prod")`), "not valid"},
		{"not a bool", cond("roles/run.invoker", `request.time`), "must evaluate to a bool, not timestamp"},
		{"bad timestamp literal", cond("roles/run.invoker", `request.time < timestamp("soon")`), "not valid"},
		{"bad regex literal", cond("roles/run.invoker", `resource.name.matches("(")`), "not valid"},
		{"basic role", cond("roles/editor", "true"), "basic role roles/editor"},
		{"no title", Policy{Version: Version3, Bindings: []Binding{{Role: "roles/run.invoker", Members: member, Condition: &Expr{Expression: "true"}}}}, "title is required"},
		{"too long", cond("roles/run.invoker", "true"+strings.Repeat(" ", maxExpressionLen)), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate(roles, ScopeService)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate() error spans lines: %q", err)
			}
		})
	}
}

func TestAttributesOf(t *testing.T) {
	tests := []struct{ name, service, typ string }{
		{"projects/p/locations/r/services/s", "run.googleapis.com", "run.googleapis.com/Service"},
		{"projects/p", "cloudresourcemanager.googleapis.com", "cloudresourcemanager.googleapis.com/Project"},
		{"projects/p/serviceAccounts/sa@p.iam.gserviceaccount.com", "iam.googleapis.com", "iam.googleapis.com/ServiceAccount"},
		{"namespaces/p/services/s", "", ""},
	}
	for _, tt := range tests {
		a := attributesOf(tt.name)
		if a.service != tt.service || a.typ != tt.typ {
			t.Errorf("attributesOf(%q) = %q, %q; want %q, %q", tt.name, a.service, a.typ, tt.service, tt.typ)
		}
	}
}

func TestCustomRoles(t *testing.T) {
	roles := Predefined()
	alice := NewPrincipal("alice@example.com")
	custom := NewRoles(
		&Role{Name: "projects/p/roles/invokeOnly", Title: "Invoke only", Permissions: []string{PermRoutesInvoke}},
		&Role{Name: "projects/p/roles/gone", Permissions: []string{PermRoutesInvoke}, Deleted: true},
		&Role{Name: "projects/p/roles/off", Permissions: []string{PermRoutesInvoke}, Stage: StageDisabled},
		// A role named for another project never applies here.
		&Role{Name: "projects/q/roles/sneaky", Permissions: []string{PermRoutesInvoke}},
	)
	bind := func(role string) *Policy {
		return policy(Binding{Role: role, Members: []string{"user:alice@example.com"}})
	}
	tests := []struct {
		name    string
		project *Policy
		service *Policy
		want    bool
	}{
		{"custom role on the service", nil, bind("projects/p/roles/invokeOnly"), true},
		{"custom role on the project", bind("projects/p/roles/invokeOnly"), nil, true},
		{"deleted custom role", nil, bind("projects/p/roles/gone"), false},
		{"disabled custom role", nil, bind("projects/p/roles/off"), false},
		{"role of another project", nil, bind("projects/q/roles/sneaky"), false},
		{"unknown custom role", nil, bind("projects/p/roles/nope"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			levels := []Level{{Resource: "projects/p", Policy: tt.project, Roles: custom}, {Resource: svcResource, Policy: tt.service}}
			if got := roles.CheckAt(alice, PermRoutesInvoke, time.Now(), levels...).Allowed; got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}

	levels := []Level{{Resource: "projects/p", Roles: custom}, {Resource: svcResource}}
	grantable := roles.Grantable(levels...)
	for name, want := range map[string]bool{"projects/p/roles/invokeOnly": true, "roles/run.invoker": true, "projects/q/roles/sneaky": false, "projects/p/roles/nope": false} {
		if _, ok := grantable.Lookup(name); ok != want {
			t.Errorf("Grantable().Lookup(%s) = %v, want %v", name, ok, want)
		}
	}
	if err := bind("projects/p/roles/invokeOnly").Validate(grantable, ScopeService); err != nil {
		t.Errorf("Validate with a custom role = %v", err)
	}
	if err := bind("projects/p/roles/invokeOnly").Validate(roles, ScopeService); err == nil {
		t.Errorf("Validate accepted a custom role outside its project's catalogue")
	}
	if roles.Grantable(Level{Resource: "projects/p"}) != roles {
		t.Errorf("Grantable without custom roles should be the catalogue itself")
	}
}

func TestValidateCustomRole(t *testing.T) {
	tests := []struct {
		name    string
		role    Role
		wantErr string
	}{
		{"ok", Role{Title: "t", Permissions: []string{PermRoutesInvoke, PermServicesGet}, Stage: StageGA}, ""},
		{"empty", Role{}, ""},
		{"unknown permission", Role{Permissions: []string{"run.routes.invoke", "compute.instances.create"}}, "Permission compute.instances.create is not valid"},
		{"bad stage", Role{Stage: "LIVE"}, `stage "LIVE" is not valid`},
		{"long title", Role{Title: strings.Repeat("x", maxRoleTitle+1)}, "title is longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCustomRole(&tt.role)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ValidateCustomRole() = %v, want %q", err, tt.wantErr)
			}
		})
	}
	for id, ok := range map[string]bool{"invokeOnly": true, "a.b_c": true, "ab": false, "has-dash": false, "x/y": false} {
		if err := ValidateRoleID(id); (err == nil) != ok {
			t.Errorf("ValidateRoleID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
	if p, id, ok := ParseCustomRoleName("projects/p/roles/invokeOnly"); !ok || p != "p" || id != "invokeOnly" {
		t.Errorf("ParseCustomRoleName = %q, %q, %v", p, id, ok)
	}
	if _, _, ok := ParseCustomRoleName("roles/run.invoker"); ok {
		t.Errorf("ParseCustomRoleName accepted a predefined role")
	}
	known := KnownPermissions()
	for _, r := range Predefined().List() {
		for _, p := range r.Permissions {
			if !contains(known, p) {
				t.Errorf("%s's permission %s is not in KnownPermissions", r.Name, p)
			}
		}
	}
	for _, p := range []string{PermRolesCreate, PermProjectsSetIamPolicy, PermRoutesInvoke} {
		if !contains(known, p) {
			t.Errorf("KnownPermissions lacks %s", p)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRoleAdminRoles(t *testing.T) {
	roles := Predefined()
	for _, tt := range []struct {
		role, perm string
		want       bool
	}{
		{"roles/iam.roleAdmin", PermRolesCreate, true},
		{"roles/iam.roleAdmin", PermRolesUndelete, true},
		{"roles/iam.roleAdmin", PermRoutesInvoke, false},
		{"roles/iam.roleViewer", PermRolesList, true},
		{"roles/iam.roleViewer", PermRolesCreate, false},
		{"roles/viewer", PermRolesGet, true},
		{"roles/editor", PermRolesCreate, false},
		{"roles/owner", PermRolesDelete, true},
		{"roles/logging.viewer", PermLogEntriesList, true},
		{"roles/logging.viewer", PermRoutesInvoke, false},
		{"roles/viewer", PermLogEntriesList, true},
		{"roles/run.invoker", PermLogEntriesList, false},
	} {
		r, ok := roles.Lookup(tt.role)
		if !ok {
			t.Fatalf("role %s missing", tt.role)
		}
		if got := r.Has(tt.perm); got != tt.want {
			t.Errorf("%s.Has(%s) = %v, want %v", tt.role, tt.perm, got, tt.want)
		}
	}
}

func BenchmarkDecideAtConditional(b *testing.B) {
	roles := Predefined()
	g := roles.Compile(PermRoutesInvoke, Level{Resource: svcResource, Policy: policy3(
		conditional("roles/run.invoker", `request.time < timestamp("2030-01-01T00:00:00Z")`, "user:alice@example.com"))})
	alice := NewPrincipal("alice@example.com")
	now := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		if !g.DecideAt(alice, now).Allowed {
			b.Fatal("denied")
		}
	}
}

// FuzzConditionExpression: whatever expression a policy carries, validation,
// compilation and evaluation never panic, and a conditional binding admits
// only the member it names.
func FuzzConditionExpression(f *testing.F) {
	for _, s := range []string{
		`request.time < timestamp("2030-01-01T00:00:00Z")`,
		`resource.name.startsWith("projects/p/")`,
		`resource.name.extract("/services/{name}") == "hello"`,
		`request.time.getHours("Europe/Berlin") > 9 || resource.type == "run.googleapis.com/Service"`,
		`true`, `1/0 == 1`, `"a".matches("(")`, `[1,2,3].all(x, x > 0)`,
	} {
		f.Add(s)
	}
	roles := Predefined()
	stranger := NewPrincipal("stranger@nowhere.invalid")
	alice := NewPrincipal("alice@example.com")
	now := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		p := policy3(conditional("roles/run.invoker", expr, "user:alice@example.com"))
		err := p.Validate(roles, ScopeService)
		g := roles.Compile(PermRoutesInvoke, Level{Resource: svcResource, Policy: p})
		if d := g.DecideAt(stranger, now); d.Allowed {
			t.Fatalf("stranger admitted by %q", expr)
		}
		if d := g.DecideAt(alice, now); d.Allowed && err != nil {
			t.Fatalf("expression %q refused by Validate (%v) but granted", expr, err)
		}
	})
}

// TestConditionCostBound: an expression whose worst case exceeds the
// runtime cost limit is refused when the policy is set, with the reason.
func TestConditionCostBound(t *testing.T) {
	var items []string
	for i := range 300 {
		items = append(items, strconv.Itoa(i))
	}
	list := "[" + strings.Join(items, ",") + "]"
	tests := []struct {
		name, expr string
		wantErr    string
	}{
		{"nested comprehensions", list + ".all(x, " + list + ".all(y, resource.name.startsWith('projects/')))", "too expensive"},
		{"prefix and time", `resource.name.startsWith("projects/p/locations/us-central1/services/a") && request.time < timestamp("2030-01-01T00:00:00Z")`, ""},
		{"regex on the name", `resource.name.matches("^projects/[^/]+/locations/us-.*$")`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileCondition(tt.expr)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("compileCondition: got %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("compileCondition: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
