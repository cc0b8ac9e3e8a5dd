package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// auditRecord is an audit record as `usher logging read --format json`
// prints it.
type auditRecord struct {
	ID         string    `json:"insertId"`
	Time       time.Time `json:"timestamp"`
	Kind       string    `json:"kind"`
	Principal  string    `json:"principal"`
	Service    string    `json:"service"`
	Resource   string    `json:"resource"`
	Permission string    `json:"permission"`
	Status     int       `json:"status"`
	Reason     string    `json:"reason"`
	Count      int       `json:"count"`
	Details    struct {
		BindingDeltas []struct {
			Action, Role, Member string
		} `json:"bindingDeltas"`
		Via string `json:"via"`
	} `json:"details"`
}

func (r auditRecord) String() string {
	return r.Kind + " " + r.Service + " " + r.Principal + " " + r.Reason
}

// auditLog runs `usher logging read --format json` with flags.
func (s *server) auditLog(t *testing.T, flags ...string) []auditRecord {
	t.Helper()
	r := s.mustCLI(t, append([]string{"logging", "read", "--format", "json", "--limit", "1000"}, flags...)...)
	var out []auditRecord
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("logging read --format json: %v\n%s", err, r.stdout)
	}
	return out
}

// find returns the records matching keep.
func find(records []auditRecord, keep func(auditRecord) bool) []auditRecord {
	var out []auditRecord
	for _, r := range records {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// troubleshootAnswer is what `usher iam troubleshoot --format json` prints.
type troubleshootAnswer struct {
	Access        string   `json:"access"`
	Explanation   []string `json:"explanation"`
	RolesGranting []string `json:"rolesGranting"`
}

func (s *server) troubleshoot(t *testing.T, principal, service string) troubleshootAnswer {
	t.Helper()
	r := s.mustCLI(t, "iam", "troubleshoot", "--principal", principal, "--service", service, "--region="+region, "--format", "json")
	var out troubleshootAnswer
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("iam troubleshoot --format json: %v\n%s", err, r.stdout)
	}
	return out
}

// TestAuditTrail: a deploy, a service account, a policy change and refused
// requests are on the audit trail with their principal; they survive a
// graceful restart and a crash; `usher logging read` filters them; and
// `usher iam troubleshoot` explains a 403 and a 200.
func TestAuditTrail(t *testing.T) {
	s := startServer(t)
	const owner = "user:owner@usher.localhost"
	svcURL := s.deploy(t, "audited", helloBin)
	s.deploy(t, "bystander", helloBin)
	sa := s.createSA(t, "audit-invoker")
	tok := s.idToken(t, sa, svcURL)

	mustStep(t, "refused requests", func(t *testing.T) {
		expect401(t, s.get(t, svcURL), "Bearer")
		if r := s.get(t, svcURL, "Authorization", bearer(tok)); r.status != 403 {
			t.Fatalf("ungranted token: got %d, want 403", r.status)
		}
	})

	mustStep(t, "troubleshoot explains the 403", func(t *testing.T) {
		got := s.troubleshoot(t, "serviceAccount:"+sa, "audited")
		if got.Access != "NOT_GRANTED" || !slices.Contains(got.RolesGranting, invokerRole) {
			t.Errorf("got access %s, roles %q; want NOT_GRANTED naming %s", got.Access, got.RolesGranting, invokerRole)
		}
		text := strings.Join(got.Explanation, "\n")
		for _, want := range []string{"does not have run.routes.invoke", "serviceAccount:" + sa + " is not among those members", "--role=" + invokerRole} {
			if !strings.Contains(text, want) {
				t.Errorf("explanation lacks %q:\n%s", want, text)
			}
		}
		human := s.mustCLI(t, "iam", "troubleshoot", "--principal", sa, "--service", "audited", "--region="+region)
		if !strings.Contains(human.stdout, "Access: NOT_GRANTED") {
			t.Errorf("human output lacks the verdict:\n%s", human.stdout)
		}
	})

	mustStep(t, "grant, and troubleshoot names the binding", func(t *testing.T) {
		s.grant(t, "audited", "serviceAccount:"+sa, invokerRole)
		expectHello(t, s.get(t, svcURL, "Authorization", bearer(tok)))
		got := s.troubleshoot(t, "serviceAccount:"+sa, "audited")
		want := "serviceAccount:" + sa + " holds run.routes.invoke through " + invokerRole + " granted to serviceAccount:" + sa +
			" on projects/" + project + "/locations/" + region + "/services/audited"
		if got.Access != "GRANTED" || len(got.Explanation) == 0 || !strings.Contains(got.Explanation[0], want) {
			t.Errorf("got %s %q, want GRANTED with %q", got.Access, got.Explanation, want)
		}
	})

	// One more refusal, still queued when the server stops: a graceful stop
	// writes it.
	expect401(t, s.get(t, svcURL, "Authorization", "Bearer garbage"), `Bearer error="invalid_token"`)
	s.stop()
	s.restart(t, "")

	var all []auditRecord
	mustStep(t, "every write and refusal is on the trail after a restart", func(t *testing.T) {
		all = s.auditLog(t)
		checks := []struct {
			what string
			keep func(auditRecord) bool
		}{
			{"deploy of audited", func(r auditRecord) bool {
				return r.Kind == "service.create" && r.Service == "audited" && r.Principal == owner && r.Status == 200
			}},
			{"deploy of bystander", func(r auditRecord) bool { return r.Kind == "service.create" && r.Service == "bystander" }},
			{"service account creation", func(r auditRecord) bool {
				return r.Kind == "serviceAccount.create" && strings.HasSuffix(r.Resource, "/serviceAccounts/"+sa)
			}},
			{"setIamPolicy with its delta", func(r auditRecord) bool {
				d := r.Details.BindingDeltas
				return r.Kind == "iam.setPolicy" && r.Service == "audited" && r.Principal == owner &&
					len(d) == 1 && d[0].Action == "ADD" && d[0].Role == invokerRole && d[0].Member == "serviceAccount:"+sa
			}},
			{"401 without credentials", func(r auditRecord) bool {
				return r.Kind == "invoke.denied" && r.Status == 401 && r.Principal == "" && r.Reason == "no credentials" && r.Service == "audited"
			}},
			{"403 of the service account", func(r auditRecord) bool {
				return r.Kind == "invoke.denied" && r.Status == 403 && r.Principal == "serviceAccount:"+sa &&
					r.Permission == "run.routes.invoke" && strings.Contains(r.Reason, "does not have run.routes.invoke")
			}},
			{"401 of the garbage token (queued at shutdown)", func(r auditRecord) bool {
				return r.Kind == "invoke.denied" && r.Status == 401 && r.Reason != "no credentials"
			}},
		}
		for _, c := range checks {
			if got := find(all, c.keep); len(got) != 1 {
				t.Errorf("%s: got %d matching records, want 1; trail:\n%s", c.what, len(got), records(all))
			}
		}
		for i := 1; i < len(all); i++ {
			if all[i].Time.After(all[i-1].Time) {
				t.Errorf("records not newest first: %v before %v", all[i-1].Time, all[i].Time)
			}
		}
	})

	mustStep(t, "filters", func(t *testing.T) {
		for _, tc := range []struct {
			flags []string
			keep  func(auditRecord) bool
		}{
			{[]string{"--service", "audited"}, func(r auditRecord) bool { return r.Service == "audited" }},
			{[]string{"--kind", "invoke.denied"}, func(r auditRecord) bool { return r.Kind == "invoke.denied" }},
			{[]string{"--kind", "service"}, func(r auditRecord) bool { return strings.HasPrefix(r.Kind, "service.") }},
			{[]string{"--principal", "serviceAccount:" + sa}, func(r auditRecord) bool { return r.Principal == "serviceAccount:"+sa }},
			{[]string{"--principal", sa, "--kind", "invoke"}, func(r auditRecord) bool { return r.Principal == "serviceAccount:"+sa && r.Kind == "invoke.denied" }},
			{[]string{"--principal", "anonymous"}, func(r auditRecord) bool { return r.Principal == "" }},
			{[]string{"--service", "bystander", "--kind", "service.create"}, func(r auditRecord) bool { return r.Service == "bystander" && r.Kind == "service.create" }},
			{[]string{"--since", "1h"}, func(auditRecord) bool { return true }},
			{[]string{"--from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, func(auditRecord) bool { return false }},
			{[]string{"--to", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}, func(auditRecord) bool { return false }},
		} {
			t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
				got := s.auditLog(t, tc.flags...)
				want := find(all, tc.keep)
				if !sameIDs(got, want) {
					t.Errorf("got:\n%s\nwant:\n%s", records(got), records(want))
				}
			})
		}
		if got := s.auditLog(t, "--limit", "2"); len(got) != 2 || got[0].ID != all[0].ID {
			t.Errorf("--limit 2: got %d records, want the 2 newest", len(got))
		}
		human := s.mustCLI(t, "logging", "read", "--service", "audited", "--kind", "iam.setPolicy")
		if !strings.Contains(human.stdout, "+"+invokerRole+" serviceAccount:"+sa) {
			t.Errorf("human output lacks the binding delta:\n%s", human.stdout)
		}
		cliFails(t, s.cli(t, "logging", "read", "--since", "1h", "--from", "2020-01-01T00:00:00Z"))
	})

	mustStep(t, "a crash loses nothing that was read or acknowledged", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "delete", "bystander", "--region="+region, "--quiet")
		s.crash()
		s.restart(t, "")
		after := s.auditLog(t)
		if !sameIDs(find(after, func(r auditRecord) bool { return r.Kind != "service.delete" }), all) {
			t.Errorf("after a crash:\n%s\nwant what was there before:\n%s", records(after), records(all))
		}
		if got := find(after, func(r auditRecord) bool { return r.Kind == "service.delete" && r.Service == "bystander" }); len(got) != 1 {
			t.Errorf("the delete acknowledged before the crash: got %d records, want 1", len(got))
		}
	})

	t.Run("records are also structured log lines", func(t *testing.T) {
		log := s.logSince(0)
		for _, want := range []string{"msg=audit", "kind=invoke.denied", "kind=iam.setPolicy", `binding_deltas="ADD ` + invokerRole + ` serviceAccount:` + sa + `"`} {
			if !strings.Contains(log, want) {
				t.Errorf("server log lacks %q", want)
			}
		}
	})
}

func sameIDs(a, b []auditRecord) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID {
			return false
		}
	}
	return true
}

func records(rs []auditRecord) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}
