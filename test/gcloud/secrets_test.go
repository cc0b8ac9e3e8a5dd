package gcloud

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestGcloudSecrets: Secret Manager through the real gcloud. Versions are
// added and read back, a secret's policy grants roles/secretmanager.secretAccessor,
// a principal without secretmanager.versions.access cannot read a value,
// and the store's file holds no value in plaintext.
func TestGcloudSecrets(t *testing.T) {
	e := newEnv(t)
	const value1, value2 = "first-Secret-Value-7f3a", "second-Secret-Value-91c2"
	file := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.mustGcloud("iam", "service-accounts", "create", "secret-reader")
	reader := saEmail("secret-reader")
	e.mustGcloud("iam", "service-accounts", "create", "secret-outsider")
	outsider := saEmail("secret-outsider")

	step(t, "create, add, access", func(t *testing.T) {
		e.mustGcloud("services", "enable", "secretmanager.googleapis.com") // the quickstart's first step
		e.mustGcloud("secrets", "create", "db-password", "--data-file="+file("v1", value1))
		e.mustGcloud("secrets", "versions", "add", "db-password", "--data-file="+file("v2", value2))
		if r := e.mustGcloud("secrets", "versions", "access", "latest", "--secret=db-password"); r.stdout != value2 {
			t.Errorf("%s\nwant %q", r, value2)
		}
		if r := e.mustGcloud("secrets", "versions", "access", "1", "--secret=db-password"); r.stdout != value1 {
			t.Errorf("%s\nwant %q", r, value1)
		}
		if r := e.mustGcloud("secrets", "versions", "list", "db-password", "--format=value(name)"); strings.Fields(r.stdout)[0] != "2" || len(strings.Fields(r.stdout)) != 2 {
			t.Errorf("%s\nwant versions 2 and 1, newest first", r)
		}
		if r := e.mustGcloud("secrets", "versions", "describe", "1", "--secret=db-password", "--format=value(state)"); strings.TrimSpace(r.stdout) != "ENABLED" {
			t.Errorf("%s\nwant version 1 ENABLED", r)
		}
		if r := e.mustGcloud("secrets", "list", "--format=value(name)"); !strings.Contains(r.stdout, "db-password") {
			t.Errorf("%s\nwant db-password listed", r)
		}
		r := e.mustGcloud("secrets", "describe", "db-password", "--format=json")
		var s struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(r.stdout), &s) != nil || !strings.HasSuffix(s.Name, "/secrets/db-password") {
			t.Errorf("%s\nwant the secret described", r)
		}
		if r := e.gcloud("secrets", "create", "db-password"); r.code == 0 || !strings.Contains(r.out(), "already exists") {
			t.Errorf("%s\nwant ALREADY_EXISTS", r)
		}
		if r := e.gcloud("secrets", "versions", "access", "9", "--secret=db-password"); r.code == 0 || !strings.Contains(r.out(), "not found") {
			t.Errorf("%s\nwant NOT_FOUND", r)
		}
	})

	step(t, "a principal without versions.access", func(t *testing.T) {
		r := e.gcloud("secrets", "versions", "access", "latest", "--secret=db-password", "--impersonate-service-account="+outsider)
		if r.code == 0 || strings.Contains(r.stdout, value2) || !strings.Contains(r.out(), "secretmanager.versions.access") {
			t.Errorf("%s\nwant PERMISSION_DENIED naming secretmanager.versions.access", r)
		}
		r = e.gcloud("secrets", "add-iam-policy-binding", "db-password", "--member=serviceAccount:"+outsider, "--role=roles/secretmanager.secretAccessor", "--impersonate-service-account="+outsider)
		// gcloud reads the policy first: getIamPolicy is what it is refused.
		if r.code == 0 || !strings.Contains(r.out(), "secretmanager.secrets.getIamPolicy") {
			t.Errorf("%s\nwant PERMISSION_DENIED naming secretmanager.secrets.getIamPolicy", r)
		}
		r = e.gcloud("secrets", "create", "outsiders", "--impersonate-service-account="+outsider)
		if r.code == 0 || !strings.Contains(r.out(), "secretmanager.secrets.create") {
			t.Errorf("%s\nwant PERMISSION_DENIED naming secretmanager.secrets.create", r)
		}
	})

	step(t, "secretAccessor on the secret reads it", func(t *testing.T) {
		e.mustGcloud("secrets", "add-iam-policy-binding", "db-password", "--member=serviceAccount:"+reader, "--role=roles/secretmanager.secretAccessor")
		if r := e.mustGcloud("secrets", "get-iam-policy", "db-password", "--format=json"); !strings.Contains(r.stdout, "serviceAccount:"+reader) {
			t.Errorf("%s\nwant the binding", r)
		}
		if r := e.gcloud("secrets", "versions", "access", "latest", "--secret=db-password", "--impersonate-service-account="+reader); r.code != 0 || r.stdout != value2 {
			t.Errorf("%s\nwant %q", r, value2)
		}
		// versions.access only: not the secret's metadata, not adding.
		if r := e.gcloud("secrets", "versions", "add", "db-password", "--data-file="+file("v3", "x"), "--impersonate-service-account="+reader); r.code == 0 || !strings.Contains(r.out(), "secretmanager.versions.add") {
			t.Errorf("%s\nwant PERMISSION_DENIED naming secretmanager.versions.add", r)
		}
	})

	step(t, "a service's env from a secret", func(t *testing.T) {
		// hello answers "Hello $NAME!": NAME comes from the secret.
		url := e.deploy("from-secret", helloBin, "--allow-unauthenticated", "--service-account="+reader, "--set-secrets=NAME=db-password:latest")
		e.expectGet(t, "NAME from db-password:latest", url, 200, "Hello "+value2+"!\n")
		s := e.describe("from-secret")
		raw, _ := json.Marshal(s)
		if strings.Contains(string(raw), value2) {
			t.Errorf("describe shows the secret's value: %s", raw)
		}
		url = e.deploy("pinned-secret", helloBin, "--allow-unauthenticated", "--service-account="+reader, "--set-secrets=NAME=db-password:1")
		e.expectGet(t, "NAME from db-password:1", url, 200, "Hello "+value1+"!\n")
	})

	step(t, "a secret mounted as a file", func(t *testing.T) {
		url := e.deploy("secret-file", helloBin, "--allow-unauthenticated", "--service-account="+reader,
			"--set-secrets=/tmp/secrets/pw=db-password:1", "--set-env-vars=NAME_FILE=/tmp/secrets/pw")
		e.expectGet(t, "NAME from the file /tmp/secrets/pw (db-password:1)", url, 200, "Hello "+value1+"!\n")
		r := e.mustGcloud("run", "services", "describe", "secret-file", "--region="+region, "--format=json")
		if !strings.Contains(r.stdout, `"secretName": "db-password"`) || !strings.Contains(r.stdout, `"mountPath": "/tmp/secrets"`) || strings.Contains(r.stdout, value1) {
			t.Errorf("%s\nwant the secret volume and its mount described, not its value", r)
		}
		if r := e.gcloud("run", "deploy", "file-no-access", "--image=file://"+helloBin, "--region="+region, "--quiet",
			"--service-account="+outsider, "--set-secrets=/tmp/secrets/pw=db-password:latest"); r.code == 0 || !strings.Contains(r.out(), outsider) {
			t.Errorf("%s\nwant PERMISSION_DENIED naming the account", r)
		}
	})

	step(t, "a job's env from a secret", func(t *testing.T) {
		e.mustGcloud("run", "jobs", "create", "secret-job", "--image=file:///bin/sh", "--args=-c,echo secret-length=${#S}", // never the value: the data dir must hold no plaintext
			"--region="+region, "--service-account="+reader, "--set-secrets=S=db-password:1")
		e.mustGcloud("run", "jobs", "execute", "secret-job", "--wait", "--region="+region)
		usherproc.Poll(t, 30*time.Second, "the task's line in gcloud run jobs logs read", func() (bool, string) {
			r := e.gcloud("run", "jobs", "logs", "read", "secret-job", "--region="+region)
			return strings.Contains(r.stdout, fmt.Sprintf("secret-length=%d", len(value1))), r.String()
		})
		if r := e.gcloud("run", "jobs", "create", "secret-job-outsider", "--image=file:///bin/sh", "--args=-c,echo $S",
			"--region="+region, "--service-account="+outsider, "--set-secrets=S=db-password:1"); r.code == 0 || !strings.Contains(r.out(), outsider) {
			t.Errorf("%s\nwant PERMISSION_DENIED naming the account", r)
		}
	})

	step(t, "deploys Cloud Run would refuse", func(t *testing.T) {
		image := "--image=file://" + helloBin
		r := e.gcloud("run", "deploy", "no-access", image, "--region="+region, "--quiet", "--service-account="+outsider, "--set-secrets=NAME=db-password:latest")
		if r.code == 0 || !strings.Contains(r.out(), "db-password") || !strings.Contains(r.out(), outsider) {
			t.Errorf("%s\nwant PERMISSION_DENIED naming the secret and the account", r)
		}
		r = e.gcloud("run", "deploy", "no-secret", image, "--region="+region, "--quiet", "--service-account="+reader, "--set-secrets=NAME=no-such-secret:latest")
		if r.code == 0 || !strings.Contains(r.out(), "no-such-secret") {
			t.Errorf("%s\nwant a refusal naming the missing secret", r)
		}
		r = e.gcloud("run", "deploy", "no-version", image, "--region="+region, "--quiet", "--service-account="+reader, "--set-secrets=NAME=db-password:7")
		if r.code == 0 || !strings.Contains(r.out(), "versions/7") {
			t.Errorf("%s\nwant a refusal naming the missing version", r)
		}
		// A file of another project's secret: refused, never ignored.
		r = e.gcloud("run", "deploy", "other-project-file", image, "--region="+region, "--quiet", "--service-account="+reader, "--set-secrets=/tmp/secrets/pw=projects/123456789012/secrets/db-password:latest")
		if r.code == 0 || !strings.Contains(r.out(), "run.googleapis.com/secrets") {
			t.Errorf("%s\nwant INVALID_ARGUMENT naming run.googleapis.com/secrets", r)
		}
		for _, name := range []string{"no-access", "no-secret", "no-version", "other-project-file"} {
			if r := e.gcloud("run", "services", "describe", name, "--region="+region); r.code == 0 {
				t.Errorf("%s\nwant no service %s", r, name)
			}
		}
	})

	step(t, "delete", func(t *testing.T) {
		e.mustGcloud("secrets", "create", "short-lived", "--data-file="+file("v4", "gone"))
		e.mustGcloud("secrets", "delete", "short-lived", "--quiet")
		if r := e.gcloud("secrets", "describe", "short-lived"); r.code == 0 || !strings.Contains(r.out(), "not found") {
			t.Errorf("%s\nwant NOT_FOUND", r)
		}
		// A secret of the same name starts empty, with no old policy or versions.
		e.mustGcloud("secrets", "create", "short-lived")
		if r := e.gcloud("secrets", "versions", "access", "latest", "--secret=short-lived"); r.code == 0 || strings.Contains(r.stdout, "gone") {
			t.Errorf("%s\nwant no version", r)
		}
	})

	step(t, "the data dir holds no plaintext, after instances ran with it", func(t *testing.T) {
		var found []string
		filepath.Walk(e.dataDir, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err == nil && (strings.Contains(string(b), value1) || strings.Contains(string(b), value2)) {
				found = append(found, path)
			}
			return nil
		})
		if len(found) > 0 {
			t.Errorf("a secret's value is in plaintext in %v", found)
		}
	})
}
