package gcloud

import (
	"strings"
	"testing"
)

// TestGcloudCustomRoles: gcloud's `iam roles` commands on a project work
// against Usher's IAM v1 shapes, and a custom role gcloud created grants
// invoke when bound with gcloud.
func TestGcloudCustomRoles(t *testing.T) {
	e := newEnv(t)
	const name = "roles-svc"
	var url string
	sa := saEmail("custom-role-sa")
	roleName := "projects/" + project + "/roles/invokeOnly"

	step(t, "setup", func(t *testing.T) {
		url = e.deploy(name, helloBin, "--no-allow-unauthenticated")
		e.mustGcloud("iam", "service-accounts", "create", "custom-role-sa")
	})

	step(t, "create, describe, list, update", func(t *testing.T) {
		r := e.mustGcloud("iam", "roles", "create", "invokeOnly", "--project="+project,
			"--permissions=run.routes.invoke", "--title=Invoke only")
		if !strings.Contains(r.out(), "Created role [invokeOnly]") || !strings.Contains(r.out(), "name: "+roleName) {
			t.Errorf("%s\nwant the created role", r)
		}
		r = e.mustGcloud("iam", "roles", "describe", "invokeOnly", "--project="+project)
		for _, want := range []string{"name: " + roleName, "- run.routes.invoke", "title: Invoke only", "etag: "} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s\nwant %q", r, want)
			}
		}
		r = e.mustGcloud("iam", "roles", "list", "--project="+project)
		if !strings.Contains(r.stdout, roleName) {
			t.Errorf("%s\nwant the role listed", r)
		}
		r = e.mustGcloud("iam", "roles", "update", "invokeOnly", "--project="+project, "--add-permissions=run.services.get")
		if !strings.Contains(r.stdout, "- run.services.get") {
			t.Errorf("%s\nwant the added permission", r)
		}
		r = e.gcloud("iam", "roles", "create", "badRole", "--project="+project, "--permissions=compute.instances.create", "--quiet")
		if r.code == 0 || !strings.Contains(r.out(), "compute.instances.create is not valid") {
			t.Errorf("%s\nwant a refusal naming the unknown permission", r)
		}
		r = e.mustGcloud("iam", "roles", "describe", "roles/run.invoker")
		if !strings.Contains(r.stdout, "run.routes.invoke") {
			t.Errorf("%s\nwant the predefined role", r)
		}
	})

	step(t, "the custom role grants invoke", func(t *testing.T) {
		tok := strings.TrimSpace(e.mustUsher("auth", "print-identity-token", "--impersonate-service-account", sa, "--audiences", url).stdout)
		e.expectGet(t, "before the grant", url, 403, "", "Authorization", bearer(tok))
		e.mustGcloud("run", "services", "add-iam-policy-binding", name, "--region="+region,
			"--member=serviceAccount:"+sa, "--role="+roleName)
		e.expectGet(t, "through the custom role", url, 200, helloBody, "Authorization", bearer(tok))
		r := e.mustGcloud("iam", "roles", "delete", "invokeOnly", "--project="+project)
		if !strings.Contains(r.out(), "deleted: true") {
			t.Errorf("%s\nwant the deleted role", r)
		}
		e.expectGet(t, "after the role is deleted", url, 403, "", "Authorization", bearer(tok))
		e.mustGcloud("iam", "roles", "undelete", "invokeOnly", "--project="+project)
		e.expectGet(t, "after undelete", url, 200, helloBody, "Authorization", bearer(tok))
	})
}
