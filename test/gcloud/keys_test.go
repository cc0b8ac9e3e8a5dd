package gcloud

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2/google"
	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"
)

// TestGcloudServiceAccountKeys: a key file from gcloud, used the way
// Google's docs teach (idtoken.NewClient with the file) to call a private
// service; keys stop working when deleted or when their account is
// disabled, and making one needs iam.serviceAccountKeys.create.
func TestGcloudServiceAccountKeys(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("keyed", helloBin)
	e.mustGcloud("iam", "service-accounts", "create", "key-caller")
	sa := saEmail("key-caller")
	e.mustGcloud("run", "services", "add-iam-policy-binding", "keyed", "--region="+region, "--member=serviceAccount:"+sa, "--role="+invokerRole)

	keyFile := filepath.Join(e.dir, "key.json")
	e.mustGcloud("iam", "service-accounts", "keys", "create", keyFile, "--iam-account="+sa)
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]string
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("key file is not JSON: %v\n%s", err, raw)
	}
	if file["type"] != "service_account" || file["client_email"] != sa || file["token_uri"] != "http://localhost:"+e.port+"/token" || !strings.Contains(file["private_key"], "PRIVATE KEY") {
		t.Fatalf("key file = %v, want Google's format with token_uri at Usher", file)
	}
	keyID := file["private_key_id"]
	if r := e.mustGcloud("iam", "service-accounts", "keys", "list", "--iam-account="+sa); !strings.Contains(r.stdout, keyID) {
		t.Errorf("%s\nwant key %s listed", r, keyID)
	}

	// The org policy iam.disableServiceAccountKeyCreation refuses new keys
	// (existing ones keep working), until it is lifted.
	e.mustUsher("org-policies", "enable-enforce", "iam.disableServiceAccountKeyCreation")
	if r := e.gcloud("iam", "service-accounts", "keys", "create", filepath.Join(e.dir, "refused.json"), "--iam-account="+sa); r.code == 0 || !strings.Contains(r.out(), "disableServiceAccountKeyCreation") {
		t.Errorf("%s\nwant key creation refused, naming the constraint", r)
	}
	// (gcloud may leave the file it opened; no key is in it.)
	if b, _ := os.ReadFile(filepath.Join(e.dir, "refused.json")); strings.Contains(string(b), "PRIVATE KEY") {
		t.Error("a refused key was written")
	}
	e.mustUsher("org-policies", "disable-enforce", "iam.disableServiceAccountKeyCreation")

	// Service hosts (*.run.localhost) reach the server's listener.
	dialer := &net.Dialer{}
	defaultTransport := http.DefaultTransport
	tr := defaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, e.addr)
	}
	http.DefaultTransport = tr
	t.Cleanup(func() { http.DefaultTransport = defaultTransport })

	ctx := context.Background()
	call := func() (int, string, error) {
		c, err := idtoken.NewClient(ctx, url, option.WithCredentialsFile(keyFile))
		if err != nil {
			return 0, "", err
		}
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := call(); err != nil || code != 200 || !strings.Contains(body, helloBody) {
		t.Fatalf("idtoken.NewClient with the key file: %d %q %v, want 200 %q", code, body, err, helloBody)
	}

	// An access token from the same file (oauth2/google): it authenticates
	// to the admin API as the account.
	creds, err := google.CredentialsFromJSON(ctx, raw, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatalf("access token from the key file: %v", err)
	}
	if got := jwtClaim(t, tok.AccessToken, "email"); got != sa {
		t.Errorf("access token's email = %v, want %s", got, sa)
	}

	// Disabled account: its key is refused; enabled again, it works.
	e.mustGcloud("iam", "service-accounts", "disable", sa)
	if _, _, err := call(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("key of a disabled account: %v, want invalid_grant", err)
	}
	e.mustGcloud("iam", "service-accounts", "enable", sa)
	if code, _, err := call(); err != nil || code != 200 {
		t.Errorf("key after enable: %d %v, want 200", code, err)
	}

	// Making a key needs iam.serviceAccountKeys.create: an account that
	// holds only the invoker role may not mint itself a key.
	r := e.gcloud("iam", "service-accounts", "keys", "create", filepath.Join(e.dir, "stolen.json"), "--iam-account="+sa, "--impersonate-service-account="+sa)
	if r.code == 0 || !strings.Contains(r.out(), "iam.serviceAccountKeys.create") {
		t.Errorf("%s\nwant PERMISSION_DENIED naming iam.serviceAccountKeys.create", r)
	}

	// Deleted key: refused.
	e.mustGcloud("iam", "service-accounts", "keys", "delete", keyID, "--iam-account="+sa, "--quiet")
	if _, _, err := call(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("deleted key: %v, want invalid_grant", err)
	}
	if r := e.mustGcloud("iam", "service-accounts", "keys", "list", "--iam-account="+sa); strings.Contains(r.stdout, keyID) {
		t.Errorf("%s\nwant key %s gone", r, keyID)
	}
}
