package orgpolicy

import (
	"slices"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/iam"
)

func TestParseGcloudShapes(t *testing.T) {
	one := `
name: projects/p/policies/iam.allowedPolicyMemberDomains
spec:
  rules:
  - values:
      allowedValues:
      - is:Example.com
      - example.org
`
	ps, err := Parse([]byte(one))
	if err != nil || len(ps) != 1 {
		t.Fatalf("Parse = %v, %v", ps, err)
	}
	n, err := Normalize(ps[0], "iam.allowedPolicyMemberDomains")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Spec.Rules[0].Values.AllowedValues; !slices.Equal(got, []string{"example.com", "example.org"}) {
		t.Errorf("allowed = %q", got)
	}
	list := `{"policies": [{"name": "run.managed.requireInvokerIam", "spec": {"rules": [{"enforce": true}]}}]}`
	if ps, err := Parse([]byte(list)); err != nil || len(ps) != 1 || ps[0].Name != "run.managed.requireInvokerIam" {
		t.Fatalf("Parse(policies) = %v, %v", ps, err)
	}
	if _, err := Parse([]byte("name: x\nspec: {rulez: []}\n")); err == nil || !strings.Contains(err.Error(), "rulez") {
		t.Errorf("unknown field: err = %v", err)
	}
}

func TestParseName(t *testing.T) {
	for _, tt := range []struct{ name, resource, id, err string }{
		{"projects/p/policies/iam.allowedPolicyMemberDomains", "projects/p", "iam.allowedPolicyMemberDomains", ""},
		{"organizations/1/policies/run.managed.requireInvokerIam", "organizations/1", "run.managed.requireInvokerIam", ""},
		{"constraints/run.managed.requireInvokerIam", "", "run.managed.requireInvokerIam", ""},
		{"projects/p/policies/compute.vmExternalIpAccess", "", "", "not supported"},
		{"folders/f/policies/run.managed.requireInvokerIam", "", "", "resource must be"},
		{"", "", "", "must be"},
	} {
		res, id, err := ParseName(tt.name)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseName(%q) err = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || res != tt.resource || id != tt.id {
			t.Errorf("ParseName(%q) = %q, %q, %v", tt.name, res, id, err)
		}
	}
}

func policy(t *testing.T, name, yaml string) *Policy {
	t.Helper()
	ps, err := Parse([]byte("name: " + name + "\nspec: " + yaml))
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Normalize(ps[0], id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEvaluate(t *testing.T) {
	const dom = "projects/p/policies/iam.allowedPolicyMemberDomains"
	const inv = "projects/p/policies/run.managed.requireInvokerIam"
	e := Evaluate(nil)
	if e.DomainsRestricted || e.RequireInvokerIAM {
		t.Fatalf("no policies: %+v", e)
	}
	e = Evaluate([]Source{
		{Policy: policy(t, dom, "{rules: [{values: {allowedValues: [a.com, b.com]}}]}"), Origin: "server"},
		{Policy: policy(t, dom, "{rules: [{values: {allowedValues: [b.com, c.com]}}]}"), Origin: "project"},
		{Policy: policy(t, inv, "{rules: [{enforce: false}]}"), Origin: "project"},
		{Policy: policy(t, inv, "{rules: [{enforce: true}]}"), Origin: "server"},
	})
	if !e.DomainsRestricted || !slices.Equal(e.Domains, []string{"b.com"}) || !e.RequireInvokerIAM {
		t.Fatalf("combined: %+v", e)
	}
	lift := Evaluate([]Source{{Policy: policy(t, dom, "{rules: [{allowAll: true}]}")}, {Policy: policy(t, dom, "{reset: true}")}})
	if lift.DomainsRestricted {
		t.Errorf("allowAll and reset restrict: %+v", lift)
	}
	deny := Evaluate([]Source{{Policy: policy(t, dom, "{rules: [{denyAll: true}]}")}})
	if !deny.DomainsRestricted || len(deny.Domains) != 0 {
		t.Errorf("denyAll: %+v", deny)
	}

	usher := func(email string) bool { return strings.HasSuffix(email, "@p.iam.gserviceaccount.com") }
	for member, want := range map[string]bool{
		"allUsers":              false,
		"allAuthenticatedUsers": false,
		"user:x@b.com":          true,
		"user:x@B.com":          true,
		"user:x@sub.b.com":      false,
		"user:x@a.com":          false,
		"group:g@b.com":         true,
		"domain:b.com":          true,
		"domain:a.com":          false,
		"serviceAccount:sa@p.iam.gserviceaccount.com": true,
		"serviceAccount:sa@q.iam.gserviceaccount.com": false,
		"deleted:user:x@a.com?uid=1":                  true,
	} {
		m, err := iam.ParseMember(member)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.MemberAllowed(m, usher); got != want {
			t.Errorf("MemberAllowed(%s) = %v, want %v", member, got, want)
		}
	}
	if !deny.MemberAllowed(iam.Member{Kind: iam.KindServiceAccount, Value: "sa@p.iam.gserviceaccount.com"}, usher) {
		t.Errorf("denyAll refuses Usher's own service accounts")
	}
}
