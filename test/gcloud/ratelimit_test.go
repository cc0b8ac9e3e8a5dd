package gcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGcloudKeepsAnonymousRateLimit: Usher's usher.dev/anonymous-rate-limit
// annotation passes v1's strict validation when gcloud replaces a service
// from YAML, survives gcloud's export → replace round trip, and a bad value
// is refused naming the annotation.
func TestGcloudKeepsAnonymousRateLimit(t *testing.T) {
	e := newEnv(t)
	e.mustGcloud("run", "deploy", "limited", "--image=file://"+helloBin, "--region="+region, "--quiet", "--no-invoker-iam-check")
	export := func() string {
		return e.mustGcloud("run", "services", "describe", "limited", "--region="+region, "--format=export").stdout
	}
	replace := func(name, yaml string) result {
		file := filepath.Join(e.dir, name+".yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return e.gcloud("run", "services", "replace", file, "--region="+region)
	}
	yaml := export()
	withLimit := strings.Replace(yaml, "  annotations:\n", "  annotations:\n    usher.dev/anonymous-rate-limit: 2,burst=4\n", 1)
	if withLimit == yaml {
		t.Fatalf("no metadata.annotations in the export:\n%s", yaml)
	}
	if r := replace("set", withLimit); r.code != 0 {
		t.Fatalf("replace with the limit: %s", r)
	}
	again := export()
	if !strings.Contains(again, "usher.dev/anonymous-rate-limit: 2,burst=4") {
		t.Fatalf("the export after replace lost the limit:\n%s", again)
	}
	if r := replace("roundtrip", again); r.code != 0 {
		t.Fatalf("the export as is does not replace: %s", r)
	}
	if !strings.Contains(export(), "usher.dev/anonymous-rate-limit: 2,burst=4") {
		t.Fatal("the round trip lost the limit")
	}
	bad := strings.Replace(again, "usher.dev/anonymous-rate-limit: 2,burst=4", "usher.dev/anonymous-rate-limit: lots", 1)
	if r := replace("bad", bad); r.code == 0 || !strings.Contains(r.stderr, "usher.dev/anonymous-rate-limit") {
		t.Errorf("bad value: %s\nwant a failure naming the annotation", r)
	}
	if !strings.Contains(export(), "usher.dev/anonymous-rate-limit: 2,burst=4") {
		t.Error("a refused replace changed the limit")
	}
}
