package gcloud

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGcloudIAM covers service and project IAM policies, service accounts and
// identity tokens minted for them, on one server, in order.
func TestGcloudIAM(t *testing.T) {
	e := newEnv(t)
	const name = "iam-svc"
	var url string
	reader := saEmail("reader")

	step(t, "setup", func(t *testing.T) {
		url = e.deploy(name, helloBin, "--no-allow-unauthenticated")
		e.mustGcloud("iam", "service-accounts", "create", "reader")
	})

	t.Run("4 service get-iam-policy and set-iam-policy with etags", func(t *testing.T) {
		e.mustGcloud("run", "services", "add-iam-policy-binding", name,
			"--member=serviceAccount:"+reader, "--role="+invokerRole, "--region="+region)
		r := e.mustGcloud("run", "services", "get-iam-policy", name, "--region="+region)
		for _, want := range []string{"bindings:", "role: " + invokerRole, "serviceAccount:" + reader, "etag: "} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s\nwant the YAML to contain %q", r, want)
			}
		}

		cur := e.servicePolicy(t, name)
		if cur.Etag == "" {
			t.Fatalf("policy has no etag: %+v", cur)
		}
		writePolicy := func(etag string) string {
			f := filepath.Join(e.dir, "policy-"+etag+".json")
			b, _ := json.Marshal(map[string]any{
				"etag": etag,
				"bindings": []map[string]any{
					{"role": invokerRole, "members": []string{"allUsers", "serviceAccount:" + reader}},
				},
			})
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}
		r = e.gcloud("run", "services", "set-iam-policy", name, writePolicy(cur.Etag), "--region="+region, "--quiet")
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0 (current etag %s)", r, cur.Etag)
		}
		if !strings.Contains(r.out(), "allUsers") {
			t.Errorf("%s\nwant the new policy printed", r)
		}
		e.expectGet(t, "after set-iam-policy with allUsers", url, 200, helloBody)
		if p := e.servicePolicy(t, name); p.Etag == cur.Etag || !p.has(invokerRole, "allUsers") {
			t.Errorf("policy after set-iam-policy: got %+v, want allUsers and an etag other than %s", p, cur.Etag)
		}

		r = e.gcloud("run", "services", "set-iam-policy", name, writePolicy(cur.Etag), "--region="+region, "--quiet")
		if r.code == 0 || !strings.Contains(r.out(), "ABORTED") {
			t.Errorf("%s\nwant a non-zero exit mentioning ABORTED (stale etag %s)", r, cur.Etag)
		}

		r = e.gcloud("run", "services", "add-iam-policy-binding", name,
			"--member=bogus:someone", "--role="+invokerRole, "--region="+region)
		if r.code == 0 || !strings.Contains(r.out(), "bogus:someone") || !strings.Contains(r.out(), "INVALID_ARGUMENT") {
			t.Errorf("%s\nwant a non-zero exit, INVALID_ARGUMENT naming the member", r)
		}

		r = e.gcloud("run", "services", "add-iam-policy-binding", name,
			"--member=serviceAccount:"+reader, "--role="+invokerRole, "--region="+region,
			`--condition=expression=request.time < timestamp("2099-01-01T00:00:00Z"),title=until2099`)
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0 for a conditional binding", r)
		}
		if !strings.Contains(r.stdout, "version: 3") || !strings.Contains(r.stdout, "title: until2099") {
			t.Errorf("%s\nwant a version 3 policy with the condition printed", r)
		}
		p := e.servicePolicy(t, name)
		var cond bool
		for _, b := range p.Bindings {
			cond = cond || strings.Contains(string(b.Condition), "until2099")
		}
		if p.Version != 3 || !cond {
			t.Errorf("policy after the conditional binding: got %+v, want version 3 with the until2099 condition", p)
		}
	})

	t.Run("5 project IAM is inherited by services", func(t *testing.T) {
		r := e.mustGcloud("projects", "get-iam-policy", project)
		for _, want := range []string{"roles/owner", "etag: "} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s\nwant %q", r, want)
			}
		}

		e.mustGcloud("iam", "service-accounts", "create", "proj-invoker")
		sa := saEmail("proj-invoker")
		r = e.gcloud("projects", "add-iam-policy-binding", project,
			"--member=serviceAccount:"+sa, "--role="+invokerRole, "--condition=None")
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0", r)
		}
		if !strings.Contains(r.out(), "Updated IAM policy for project ["+project+"]") {
			t.Errorf("%s\nwant \"Updated IAM policy for project [%s]\"", r, project)
		}

		// A service created after the grant.
		u := e.deploy("inherit-svc", helloBin, "--no-allow-unauthenticated")
		e.expectGet(t, "inherit-svc without a token", u, 401, "")

		tok := strings.TrimSpace(e.mustUsher("auth", "print-identity-token",
			"--impersonate-service-account", sa, "--audiences", u).stdout)
		e.expectGet(t, "token from usher auth print-identity-token", u, 200, helloBody, "Authorization", bearer(tok))

		r = e.gcloud("auth", "print-identity-token", "--impersonate-service-account="+sa, "--audiences="+u)
		gtok := strings.TrimSpace(r.stdout)
		if r.code != 0 || strings.Count(gtok, ".") != 2 {
			t.Errorf("%s\nwant exit 0 and a JWT on stdout", r)
			gtok = ""
		} else {
			if got := jwtClaim(t, gtok, "email"); got != sa {
				t.Errorf("gcloud-minted token's email: got %v, want %s", got, sa)
			}
			e.expectGet(t, "token from gcloud auth print-identity-token", u, 200, helloBody, "Authorization", bearer(gtok))
		}

		r = e.gcloud("projects", "remove-iam-policy-binding", project,
			"--member=serviceAccount:"+sa, "--role="+invokerRole, "--condition=None")
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0", r)
		}
		e.expectGet(t, "usher-minted token after the project grant is removed", u, 403, "", "Authorization", bearer(tok))
		if gtok != "" {
			e.expectGet(t, "gcloud-minted token after the project grant is removed", u, 403, "", "Authorization", bearer(gtok))
		}

		r = e.gcloud("projects", "add-iam-policy-binding", project,
			"--member=allUsers", "--role="+invokerRole, "--condition=None")
		if r.code == 0 || !strings.Contains(r.out(), "INVALID_ARGUMENT") {
			t.Errorf("%s\nwant a non-zero exit with INVALID_ARGUMENT: allUsers cannot be bound on a project", r)
		}
	})

	t.Run("6 service accounts create, list, describe, delete", func(t *testing.T) {
		sa := saEmail("temp-sa")
		r := e.mustGcloud("iam", "service-accounts", "create", "temp-sa", "--display-name=Temporary SA")
		if !strings.Contains(r.out(), "Created service account [temp-sa]") {
			t.Errorf("%s\nwant \"Created service account [temp-sa]\"", r)
		}
		r = e.mustGcloud("iam", "service-accounts", "list")
		if !listed(r.stdout, "Temporary SA", sa) || !strings.Contains(r.stdout, reader) {
			t.Errorf("%s\nwant rows for %s (Temporary SA) and %s", r, sa, reader)
		}
		r = e.mustGcloud("iam", "service-accounts", "describe", sa)
		for _, want := range []string{"email: " + sa, "displayName: Temporary SA", "projectId: " + project} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s\nwant %q", r, want)
			}
		}
		// A principal without iam.serviceAccounts.update (reader holds
		// only run.invoker on a service) changes nothing.
		if r := e.gcloud("iam", "service-accounts", "update", sa, "--display-name=Hijacked", "--impersonate-service-account="+reader); r.code == 0 || !strings.Contains(r.out(), "PERMISSION_DENIED") {
			t.Errorf("%s\nupdate by a principal without the permission: want PERMISSION_DENIED", r)
		}
		e.mustGcloud("iam", "service-accounts", "update", sa, "--display-name=Renamed SA", "--description=Kept for a test")
		in, out := filepath.Join(e.dir, "blob.in"), filepath.Join(e.dir, "blob.sig")
		os.WriteFile(in, []byte("sign me"), 0o600)
		e.mustGcloud("iam", "service-accounts", "sign-blob", in, out, "--iam-account="+sa)
		if b, err := os.ReadFile(out); err != nil || len(b) != 256 {
			t.Errorf("sign-blob wrote %d bytes (%v), want an RSA-2048 signature", len(b), err)
		}
		claimsFile, jwtFile := filepath.Join(e.dir, "claims.json"), filepath.Join(e.dir, "signed.jwt")
		os.WriteFile(claimsFile, []byte(`{"sub":"someone","aud":"https://example.com"}`), 0o600)
		e.mustGcloud("iam", "service-accounts", "sign-jwt", claimsFile, jwtFile, "--iam-account="+sa)
		if b, err := os.ReadFile(jwtFile); err != nil || jwtClaim(t, strings.TrimSpace(string(b)), "sub") != "someone" || jwtClaim(t, strings.TrimSpace(string(b)), "exp") == nil {
			t.Errorf("sign-jwt wrote %q (%v), want a JWT of the claims with an exp added", b, err)
		}
		r = e.mustGcloud("iam", "service-accounts", "describe", sa)
		for _, want := range []string{"displayName: Renamed SA", "description: Kept for a test"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s\nafter update, want %q", r, want)
			}
		}
		r = e.mustGcloud("iam", "service-accounts", "delete", sa, "--quiet")
		if !strings.Contains(r.out(), "deleted service account ["+sa+"]") {
			t.Errorf("%s\nwant \"deleted service account [%s]\"", r, sa)
		}
		r = e.mustGcloud("iam", "service-accounts", "list")
		if strings.Contains(r.stdout, sa) {
			t.Errorf("%s\nwant %s gone", r, sa)
		}
		r = e.gcloud("iam", "service-accounts", "describe", sa)
		if r.code == 0 || !strings.Contains(r.out(), "NOT_FOUND") {
			t.Errorf("%s\nwant a non-zero exit with NOT_FOUND", r)
		}
	})
}

// jwtClaim is claim name of a JWT's payload (not verified).
func jwtClaim(t *testing.T, tok, name string) any {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatalf("JWT payload of %q: %v", tok, err)
	}
	return m[name]
}
