package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGuardrails: organization policies set with `usher org-policies` refuse
// making a service public — an allUsers binding (domain-restricted sharing)
// or a disabled invoker check (requireInvokerIam) — with one error line
// naming the constraint, leave existing policies unchanged, and lift when
// deleted.
func TestGuardrails(t *testing.T) {
	s := startServer(t)
	const (
		name          = "guarded"
		public        = "public-before"
		domainsPolicy = "constraints/iam.allowedPolicyMemberDomains"
		invokerPolicy = "constraints/run.managed.requireInvokerIam"
	)
	var svcURL, publicURL string

	mustStep(t, "deploy a private and a public service, then set the guardrails", func(t *testing.T) {
		svcURL = s.deploy(t, name, helloBin)
		publicURL = s.deploy(t, public, helloBin, "--allow-unauthenticated")
		expect401(t, s.get(t, svcURL), "Bearer")
		expectHello(t, s.get(t, publicURL))

		r := s.mustCLI(t, "org-policies", "allow-domains", "example.com")
		if !strings.Contains(r.stdout, "example.com") || !strings.Contains(r.stderr, "iam.allowedPolicyMemberDomains") {
			t.Errorf("allow-domains: got %s", r)
		}
		// gcloud org-policies set-policy's file shape.
		file := filepath.Join(s.dir, "require-invoker-iam.yaml")
		yaml := "name: projects/" + project + "/policies/run.managed.requireInvokerIam\nspec:\n  rules:\n  - enforce: true\n"
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		s.mustCLI(t, "org-policies", "set-policy", file)

		list := s.mustCLI(t, "org-policies", "list")
		for _, want := range []string{domainsPolicy, invokerPolicy, "TRUE"} {
			if !strings.Contains(list.stdout, want) {
				t.Errorf("org-policies list: got %q, want it to contain %q", list.stdout, want)
			}
		}
		eff := s.mustCLI(t, "org-policies", "describe", "run.managed.requireInvokerIam", "--effective")
		if !strings.Contains(eff.stdout, "enforce: true") {
			t.Errorf("describe --effective: got %q, want enforce: true", eff.stdout)
		}
	})

	mustStep(t, "allUsers is refused with one line naming the constraint, the policy unchanged", func(t *testing.T) {
		before := s.servicePolicy(t, name)
		line := cliFails(t, s.cli(t, "run", "services", "add-iam-policy-binding", name, "--region="+region,
			"--member=allUsers", "--role="+invokerRole))
		for _, want := range []string{"FAILED_PRECONDITION", domainsPolicy, "allUsers", "example.com"} {
			if !strings.Contains(line, want) {
				t.Errorf("error line %q does not contain %q", line, want)
			}
		}
		after := s.servicePolicy(t, name)
		if after.Etag != before.Etag || after.bindingsJSON() != before.bindingsJSON() {
			t.Errorf("policy after a refused binding: got %+v, want %+v", after, before)
		}
		expect401(t, s.get(t, svcURL), "Bearer")

		line = cliFails(t, s.cli(t, "run", "services", "add-iam-policy-binding", name, "--region="+region,
			"--member=user:eve@elsewhere.example", "--role="+invokerRole))
		if !strings.Contains(line, domainsPolicy) || !strings.Contains(line, "user:eve@elsewhere.example") {
			t.Errorf("outside user: got %q, want the constraint and the member named", line)
		}
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", name, "--region="+region,
			"--member=user:alice@example.com", "--role="+invokerRole)
	})

	mustStep(t, "an existing allUsers binding stays", func(t *testing.T) {
		expectHello(t, s.get(t, publicURL))
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", public, "--region="+region,
			"--member=user:bob@example.com", "--role="+invokerRole)
		if got := s.servicePolicy(t, public).members(invokerRole); !slices.Contains(got, "allUsers") {
			t.Errorf("invoker members of %s: got %q, want allUsers kept", public, got)
		}
		expectHello(t, s.get(t, publicURL))
	})

	mustStep(t, "--no-invoker-iam-check is refused, the service stays private", func(t *testing.T) {
		r := s.cli(t, "run", "deploy", name, "--image=file://"+helloBin, "--region="+region, "--no-invoker-iam-check")
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		last := lines[len(lines)-1]
		if r.code == 0 || !strings.HasPrefix(last, "ERROR: FAILED_PRECONDITION") || !strings.Contains(last, invokerPolicy) {
			t.Errorf("deploy --no-invoker-iam-check: got %s\nwant a non-zero exit and an ERROR line naming %s", r, invokerPolicy)
		}
		if d := s.mustCLI(t, "run", "services", "describe", name, "--region="+region, "--format", "json"); strings.Contains(d.stdout, "invoker-iam-disabled") {
			t.Errorf("the refused deploy changed the service: %s", d.stdout)
		}
		expect401(t, s.get(t, svcURL), "Bearer")
		// A new service is refused too.
		r = s.cli(t, "run", "deploy", "open-door", "--image=file://"+helloBin, "--region="+region, "--no-invoker-iam-check")
		if r.code == 0 || !strings.Contains(r.stderr, invokerPolicy) {
			t.Errorf("deploy of a new service --no-invoker-iam-check: got %s", r)
		}
	})

	mustStep(t, "deleting the org policies lifts them", func(t *testing.T) {
		s.mustCLI(t, "org-policies", "delete", "iam.allowedPolicyMemberDomains", "--quiet")
		s.mustCLI(t, "org-policies", "delete", "constraints/run.managed.requireInvokerIam", "--quiet")
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", name, "--region="+region,
			"--member=allUsers", "--role="+invokerRole)
		expectHello(t, s.get(t, svcURL))
		if r := s.cli(t, "org-policies", "describe", "iam.allowedPolicyMemberDomains"); r.code == 0 || !strings.Contains(r.stderr, "NOT_FOUND") {
			t.Errorf("describe a deleted policy: got %s, want NOT_FOUND", r)
		}
	})
}
