package gcloud

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGcloudServiceAccountLifecycle: gcloud's disable, enable, delete and
// undelete work unchanged against Usher, with Google's effects (tokens
// refused while disabled or deleted, members rewritten on delete, restored
// on undelete), and gcloud's deploy as an account needs actAs on it.
func TestGcloudServiceAccountLifecycle(t *testing.T) {
	e := newEnv(t)
	u := e.deploy("life-svc", helloBin, "--no-allow-unauthenticated")
	e.mustGcloud("iam", "service-accounts", "create", "cycler")
	sa := saEmail("cycler")
	e.mustGcloud("run", "services", "add-iam-policy-binding", "life-svc", "--region="+region,
		"--member=serviceAccount:"+sa, "--role="+invokerRole)
	tok := strings.TrimSpace(e.mustUsher("auth", "print-identity-token", "--impersonate-service-account", sa, "--audiences", u).stdout)
	e.expectGet(t, "a token of the new account", u, 200, helloBody, "Authorization", bearer(tok))

	step(t, "disable and enable", func(t *testing.T) {
		e.mustGcloud("iam", "service-accounts", "disable", sa, "--quiet")
		e.expectGet(t, "a token of the disabled account", u, 401, "", "Authorization", bearer(tok))
		r := e.mustGcloud("iam", "service-accounts", "describe", sa, "--format=json")
		if !strings.Contains(r.stdout, `"disabled": true`) {
			t.Errorf("%s\nwant disabled: true", r)
		}
		e.mustGcloud("iam", "service-accounts", "enable", sa, "--quiet")
		e.expectGet(t, "a token of the re-enabled account", u, 200, helloBody, "Authorization", bearer(tok))
	})

	var uid string
	step(t, "delete rewrites members and revokes", func(t *testing.T) {
		var acct struct{ UniqueID string }
		json.Unmarshal([]byte(e.mustGcloud("iam", "service-accounts", "describe", sa, "--format=json").stdout), &acct)
		uid = acct.UniqueID
		e.mustGcloud("iam", "service-accounts", "delete", sa, "--quiet")
		e.expectGet(t, "a token of the deleted account", u, 401, "", "Authorization", bearer(tok))
		r := e.mustGcloud("run", "services", "get-iam-policy", "life-svc", "--region="+region, "--format=json")
		if !parsePolicy(t, r).has(invokerRole, "deleted:serviceAccount:"+sa+"?uid="+uid) {
			t.Errorf("%s\nwant the member rewritten to deleted:serviceAccount:%s?uid=%s", r, sa, uid)
		}
	})

	step(t, "undelete restores", func(t *testing.T) {
		e.mustGcloud("iam", "service-accounts", "undelete", uid, "--quiet")
		r := e.mustGcloud("run", "services", "get-iam-policy", "life-svc", "--region="+region, "--format=json")
		if !parsePolicy(t, r).has(invokerRole, "serviceAccount:"+sa) {
			t.Errorf("%s\nwant serviceAccount:%s back", r, sa)
		}
		e.expectGet(t, "a token of the undeleted account", u, 200, helloBody, "Authorization", bearer(tok))
	})

	step(t, "deploying as an account needs actAs on it", func(t *testing.T) {
		e.mustGcloud("iam", "service-accounts", "create", "deployer")
		dev := saEmail("deployer")
		e.mustGcloud("projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+dev, "--role=roles/run.admin", "--condition=None")
		r := e.gcloud("run", "deploy", "as-other", "--image=file://"+helloBin, "--region="+region, "--quiet",
			"--service-account="+sa, "--impersonate-service-account="+dev)
		if r.code == 0 || !strings.Contains(r.out(), "iam.serviceAccounts.actAs") {
			t.Errorf("%s\nwant a refusal naming iam.serviceAccounts.actAs", r)
		}
	})
}
