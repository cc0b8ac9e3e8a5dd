package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestProjects: a second project is created with the CLI, owned by its
// creator, and isolated; deleting it stops its services and its accounts
// at once (a token minted before is refused, a new one is not minted);
// undeleting it brings all of it back.
func TestProjects(t *testing.T) {
	s := startServer(t)
	const other = "team-b"
	r := s.mustCLI(t, "projects", "create", other, "--name", "Team B", "--labels", "env=dev")
	if !strings.Contains(r.stderr, "Created project [team-b]") {
		t.Errorf("create stderr: %q", r.stderr)
	}
	if r := s.mustCLI(t, "projects", "list", "--format", "value(projectId)"); strings.Fields(r.stdout)[0] != project || !strings.Contains(r.stdout, other) {
		t.Fatalf("list: %q", r.stdout)
	}
	if r := s.mustCLI(t, "projects", "list", "--filter", "labels.env:dev", "--format", "value(projectId)"); strings.TrimSpace(r.stdout) != other {
		t.Fatalf("list --filter labels.env:dev: %q", r.stdout)
	}
	// Resources are per project: the same service name in both, each its own.
	s.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region, "--project="+other)
	s.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=allUsers", "--role="+invokerRole, "--region="+region, "--project="+other)
	var sv service
	json.Unmarshal([]byte(s.mustCLI(t, "run", "services", "describe", "hello", "--region="+region, "--project="+other, "--format", "json").stdout), &sv)
	otherURL := sv.Status.URL
	if r := s.get(t, otherURL); r.status != 200 || !strings.Contains(r.body, helloBody) {
		t.Fatalf("public service of %s: %d %q", other, r.status, r.body)
	}
	homeURL := s.deploy(t, "hello", helloBin)
	if homeURL == otherURL {
		t.Fatalf("two projects' services share the URL %s", homeURL)
	}
	expect401(t, s.get(t, homeURL), "Bearer") // private: the other project's grant is its own

	// An account of the other project, allowed to invoke a service here.
	s.mustCLI(t, "iam", "service-accounts", "create", "robot-b", "--project="+other)
	robot := "robot-b@" + other + ".iam.gserviceaccount.com"
	s.grant(t, "hello", "serviceAccount:"+robot, invokerRole)
	tok := s.idToken(t, robot, homeURL)
	if r := s.get(t, homeURL, "Authorization", bearer(tok)); r.status != 200 {
		t.Fatalf("the other project's account before the delete: %d %q", r.status, r.body)
	}

	if f := cliFails(t, s.cli(t, "projects", "delete", other)); !strings.Contains(f, "--quiet") {
		t.Errorf("delete without a terminal or --quiet: %q", f)
	}
	r = s.mustCLI(t, "projects", "delete", other, "--quiet")
	if !strings.Contains(r.stderr, "usher projects undelete team-b") {
		t.Errorf("delete stderr: %q", r.stderr)
	}
	// From the very next request on.
	if r := s.get(t, otherURL); r.status != 404 {
		t.Fatalf("a deleted project's public service: %d %q", r.status, r.body)
	}
	if r := s.get(t, homeURL, "Authorization", bearer(tok)); r.status != 401 && r.status != 403 {
		t.Fatalf("a token of a deleted project's account: %d %q", r.status, r.body)
	}
	cliFails(t, s.cli(t, "auth", "print-identity-token", "--impersonate-service-account", robot, "--audiences", homeURL))
	if f := cliFails(t, s.cli(t, "run", "services", "list", "--region="+region, "--project="+other)); !strings.Contains(f, "undelete") {
		t.Errorf("listing a deleted project's services: %q", f)
	}
	if r := s.mustCLI(t, "projects", "describe", other, "--format", "value(lifecycleState)"); strings.TrimSpace(r.stdout) != "DELETE_REQUESTED" {
		t.Errorf("describe after delete: %q", r.stdout)
	}
	if r := s.mustCLI(t, "projects", "list", "--format", "value(projectId)"); strings.Contains(r.stdout, other) {
		t.Errorf("list after delete: %q", r.stdout)
	}
	if f := cliFails(t, s.cli(t, "projects", "delete", project, "--quiet")); !strings.Contains(f, "root project") {
		t.Errorf("deleting the root project: %q", f)
	}

	s.mustCLI(t, "projects", "undelete", other)
	poll(t, 30*time.Second, "the undeleted project's service answers", func() (bool, string) {
		r := s.get(t, otherURL)
		return r.status == 200 && strings.Contains(r.body, helloBody), r.body
	})
	tok = s.idToken(t, robot, homeURL)
	if r := s.get(t, homeURL, "Authorization", bearer(tok)); r.status != 200 {
		t.Fatalf("the account after undelete: %d %q", r.status, r.body)
	}
}
