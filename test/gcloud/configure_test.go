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
	tokenFile := filepath.Join(e.dataDir, "access-token")
	if abs, _ := filepath.Abs(tokenFile); !strings.Contains(string(props), "access_token_file = "+abs) {
		t.Fatalf("configuration does not read the server's token file %s:\n%s", abs, props)
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
	// A name gcloud would not accept is refused before anything is written.
	bad := e.run(usherBin, []string{"HOME=" + e.home, "USHER_CONFIG=" + filepath.Join(e.dataDir, "config.json"), "CLOUDSDK_CONFIG=" + fresh},
		"gcloud", "configure", "--configuration", "Bad Name")
	if bad.code == 0 || !strings.HasPrefix(bad.stderr, "ERROR:") {
		t.Errorf("%s\nwant a one-line error", bad)
	}
}
