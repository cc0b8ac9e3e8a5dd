package gcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsherGcloudConfigure: one `usher gcloud configure` and gcloud works
// against Usher with nothing else set, reading the token file the server
// keeps fresh.
func TestUsherGcloudConfigure(t *testing.T) {
	e := newEnv(t)
	fresh := filepath.Join(e.dir, "fresh-gcloud")
	if err := os.MkdirAll(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	configure := e.run(usherBin, []string{"HOME=" + e.home, "USHER_CONFIG=" + filepath.Join(e.dataDir, "config.json"), "CLOUDSDK_CONFIG=" + fresh},
		"gcloud", "configure", "--configuration", "usher-test", "--activate")
	if configure.code != 0 || !strings.Contains(configure.stderr, "usher-test") {
		t.Fatalf("%s\nwant exit 0 naming the configuration", configure)
	}
	props, err := os.ReadFile(filepath.Join(fresh, "configurations", "config_usher-test"))
	if err != nil {
		t.Fatal(err)
	}
	// gcloud is on PATH: the configuration holds no token file but a
	// refresh token gcloud exchanges at Usher's /token itself.
	for _, want := range []string{"token_host = http://localhost:" + e.port + "/token", "account = owner@usher.localhost"} {
		if !strings.Contains(string(props), want) {
			t.Errorf("configuration lacks %q:\n%s", want, props)
		}
	}
	if strings.Contains(string(props), "access_token_file") {
		t.Errorf("configuration still reads a token file:\n%s", props)
	}
	gcloud := func(args ...string) result {
		return e.run(gcloudBin, []string{"HOME=" + e.home, "CLOUDSDK_CONFIG=" + fresh, "CLOUDSDK_CORE_DISABLE_PROMPTS=1"}, args...)
	}
	// No --region: the configuration's run/region applies.
	if r := gcloud("run", "deploy", "configured", "--image=file://"+helloBin); r.code != 0 || !strings.Contains(r.out(), "Service URL: http://configured-") {
		t.Fatalf("%s\nwant a deployed service", r)
	}
	if r := gcloud("run", "services", "list"); r.code != 0 || !strings.Contains(r.stdout, "configured") {
		t.Fatalf("%s\nwant the service listed", r)
	}
	if r := gcloud("config", "get-value", "core/project"); strings.TrimSpace(r.stdout) != project {
		t.Errorf("core/project = %q, want %q", strings.TrimSpace(r.stdout), project)
	}

	// Every Cloud Run doc's way to call a private service, as the signed-in
	// user: no impersonation, no Usher command.
	url := strings.TrimSpace(gcloud("run", "services", "describe", "configured", "--format=value(status.url)").stdout)
	e.expectGet(t, "configured is private", url, 401, "")
	for i := range 2 { // each call exchanges the refresh token anew
		r := gcloud("auth", "print-identity-token")
		tok := strings.TrimSpace(r.stdout)
		if r.code != 0 || strings.Count(tok, ".") != 2 {
			t.Fatalf("%s\nwant an identity token", r)
		}
		if got := jwtClaim(t, tok, "email"); got != "owner@usher.localhost" {
			t.Errorf("call %d: identity token's email = %v, want the signed-in user", i, got)
		}
		e.expectGet(t, "token from gcloud auth print-identity-token", url, 200, helloBody, "Authorization", bearer(tok))
	}
	if r := gcloud("auth", "print-access-token"); r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Errorf("%s\nwant an access token", r)
	}
	// --audiences: gcloud itself demands a service account for it (as
	// against Google); with impersonation it works.
	if r := gcloud("auth", "print-identity-token", "--audiences="+url); r.code == 0 || !strings.Contains(r.stderr, "service account") {
		t.Errorf("%s\nwant gcloud's own refusal of --audiences for a user account", r)
	}
	if r := gcloud("iam", "service-accounts", "create", "aud-caller"); r.code != 0 {
		t.Fatalf("%s\nwant exit 0", r)
	}
	sa := saEmail("aud-caller")
	if r := gcloud("run", "services", "add-iam-policy-binding", "configured", "--member=serviceAccount:"+sa, "--role="+invokerRole); r.code != 0 {
		t.Fatalf("%s\nwant exit 0", r)
	}
	r := gcloud("auth", "print-identity-token", "--impersonate-service-account="+sa, "--audiences="+url)
	if tok := strings.TrimSpace(r.stdout); r.code != 0 || jwtClaim(t, tok, "aud") != url {
		t.Errorf("%s\nwant a token for audience %s", r, url)
	} else {
		e.expectGet(t, "impersonated token with --audiences", url, 200, helloBody, "Authorization", bearer(tok))
	}
	// A name gcloud would not accept is refused before anything is written.
	bad := e.run(usherBin, []string{"HOME=" + e.home, "USHER_CONFIG=" + filepath.Join(e.dataDir, "config.json"), "CLOUDSDK_CONFIG=" + fresh},
		"gcloud", "configure", "--configuration", "Bad Name")
	if bad.code == 0 || !strings.HasPrefix(bad.stderr, "ERROR:") {
		t.Errorf("%s\nwant a one-line error", bad)
	}
}
