package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCustomRolesAndConditions drives `usher iam roles` and conditional
// bindings against a real server: a custom role with run.routes.invoke lets a
// service account invoke; taking the permission away, or deleting the role,
// stops it before the CLI returns; a binding that expired grants nothing and
// one that has not grants; gcloud's --condition rules hold.
func TestCustomRolesAndConditions(t *testing.T) {
	s := startServer(t)
	const svc = "roles-svc"
	url := s.deploy(t, svc, helloBin)
	sa := s.createSA(t, "custom-invoker")
	tok := s.idToken(t, sa, url)
	auth := func() response { return s.get(t, url, "Authorization", bearer(tok)) }
	roleName := "projects/" + project + "/roles/invokeOnly"

	mustStep(t, "create, describe and list a custom role", func(t *testing.T) {
		r := s.mustCLI(t, "iam", "roles", "create", "invokeOnly", "--project", project,
			"--title", "Invoke only", "--description", "Calls services", "--permissions", "run.routes.invoke,run.services.get", "--format", "json")
		var created role
		if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
			t.Fatalf("create --format json: %v\n%s", err, r.stdout)
		}
		if created.Name != roleName || created.Title != "Invoke only" || len(created.IncludedPermissions) != 2 || created.Etag == "" {
			t.Errorf("created role: got %+v", created)
		}
		if !strings.Contains(r.stderr, "Created role [invokeOnly]") {
			t.Errorf("create stderr: got %q", r.stderr)
		}
		d := s.mustCLI(t, "iam", "roles", "describe", "invokeOnly", "--project", project)
		for _, want := range []string{"name: " + roleName, "- run.routes.invoke", "stage: ALPHA"} {
			if !strings.Contains(d.stdout, want) {
				t.Errorf("describe: got %q, want it to contain %q", d.stdout, want)
			}
		}
		l := s.mustCLI(t, "iam", "roles", "list", "--project", project)
		if !strings.Contains(l.stdout, roleName) || !strings.Contains(l.stdout, "Invoke only") {
			t.Errorf("list: got %q, want the role", l.stdout)
		}
		if p := s.mustCLI(t, "iam", "roles", "describe", "roles/run.invoker"); !strings.Contains(p.stdout, "run.routes.invoke") {
			t.Errorf("describe roles/run.invoker: got %q", p.stdout)
		}
	})

	mustStep(t, "refusals are one clear line", func(t *testing.T) {
		line := cliFails(t, s.cli(t, "iam", "roles", "create", "bogus", "--project", project, "--permissions", "compute.instances.create"))
		if !strings.Contains(line, "compute.instances.create is not valid") {
			t.Errorf("unknown permission: got %q", line)
		}
		line = cliFails(t, s.cli(t, "iam", "roles", "create", "invokeOnly", "--project", project, "--permissions", "run.routes.invoke"))
		if !strings.Contains(line, "ALREADY_EXISTS") {
			t.Errorf("duplicate: got %q", line)
		}
	})

	mustStep(t, "the custom role grants invoke", func(t *testing.T) {
		if r := auth(); r.status != 403 {
			t.Fatalf("before the grant: got %d, want 403", r.status)
		}
		s.grant(t, svc, "serviceAccount:"+sa, roleName)
		expectHello(t, auth())
	})

	mustStep(t, "removing the permission takes effect before the CLI returns", func(t *testing.T) {
		s.mustCLI(t, "iam", "roles", "update", "invokeOnly", "--project", project, "--remove-permissions", "run.routes.invoke")
		if r := auth(); r.status != 403 {
			t.Errorf("after --remove-permissions: got %d, want 403", r.status)
		}
		s.mustCLI(t, "iam", "roles", "update", "invokeOnly", "--project", project, "--add-permissions", "run.routes.invoke", "--title", "Invoke again")
		expectHello(t, auth())
	})

	mustStep(t, "delete and undelete", func(t *testing.T) {
		s.mustCLI(t, "iam", "roles", "delete", "invokeOnly", "--project", project, "--quiet")
		if r := auth(); r.status != 403 {
			t.Errorf("after delete: got %d, want 403", r.status)
		}
		if l := s.mustCLI(t, "iam", "roles", "list", "--project", project); strings.Contains(l.stdout, roleName) {
			t.Errorf("list after delete: got %q, want no deleted role", l.stdout)
		}
		if l := s.mustCLI(t, "iam", "roles", "list", "--project", project, "--show-deleted"); !strings.Contains(l.stdout, "deleted") {
			t.Errorf("list --show-deleted: got %q, want the role marked deleted", l.stdout)
		}
		s.mustCLI(t, "iam", "roles", "undelete", "invokeOnly", "--project", project)
		expectHello(t, auth())
	})

	// Conditions, on a second service account so the custom role's grant
	// does not interfere.
	csa := s.createSA(t, "cond-invoker")
	ctok := s.idToken(t, csa, url)
	cauth := func() response { return s.get(t, url, "Authorization", bearer(ctok)) }

	mustStep(t, "an expired conditional binding grants nothing", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", svc, "--region="+region,
			"--member=serviceAccount:"+csa, "--role="+invokerRole,
			`--condition=expression=request.time < timestamp("2001-01-01T00:00:00Z"),title=expired`)
		p := s.servicePolicy(t, svc)
		if p.Version != 3 || !strings.Contains(p.bindingsJSON(), `"expired"`) {
			t.Errorf("policy: got %+v, want version 3 with the condition", p)
		}
		if r := cauth(); r.status != 403 {
			t.Errorf("expired grant: got %d, want 403", r.status)
		}
	})

	mustStep(t, "a live conditional binding grants", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", svc, "--region="+region,
			"--member=serviceAccount:"+csa, "--role="+invokerRole,
			`--condition=expression=request.time < timestamp("2999-01-01T00:00:00Z"),title=until2999`)
		expectHello(t, cauth())
	})

	mustStep(t, "gcloud's --condition rules", func(t *testing.T) {
		line := cliFails(t, s.cli(t, "run", "services", "add-iam-policy-binding", svc, "--region="+region,
			"--member=user:someone@example.com", "--role="+invokerRole))
		if !strings.Contains(line, "--condition=None") {
			t.Errorf("unconditional add to a conditional policy: got %q, want the --condition=None hint", line)
		}
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", svc, "--region="+region,
			"--member=user:someone@example.com", "--role="+invokerRole, "--condition=None")
		line = cliFails(t, s.cli(t, "run", "services", "add-iam-policy-binding", svc, "--region="+region,
			"--member=user:someone@example.com", "--role="+invokerRole, `--condition=expression=request.tim < 3,title=typo`))
		if !strings.Contains(line, "INVALID_ARGUMENT") || !strings.Contains(line, "request.tim") {
			t.Errorf("bad expression: got %q, want INVALID_ARGUMENT naming it", line)
		}
	})
}

// role is a role as the CLI prints it with --format json.
type role struct {
	Name                string   `json:"name"`
	Title               string   `json:"title"`
	IncludedPermissions []string `json:"includedPermissions"`
	Stage               string   `json:"stage"`
	Etag                string   `json:"etag"`
	Deleted             bool     `json:"deleted"`
}
