package gcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGcloudDeploySourceFailsFast: `gcloud run deploy --source` needs
// Artifact Registry, Cloud Storage and Cloud Build, which Usher does not
// have. With gcloud's artifactregistry endpoint pointed at Usher (as the
// README's setup does), gcloud stops at its first call with a message
// naming `usher run deploy --source`, creates nothing, and does not crash;
// Usher's own CLI then deploys the same directory.
func TestGcloudDeploySourceFailsFast(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(`package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "built by usher") })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`), 0o644)
	r := e.gcloud("run", "deploy", "fromsrc", "--source", dir, "--region="+region, "--quiet")
	if r.code == 0 || !strings.Contains(r.stderr, "usher run deploy NAME --source DIR") || strings.Contains(r.stderr, "crashed") {
		t.Errorf("%s\nwant a failure naming `usher run deploy NAME --source DIR`, not a crash", r)
	}
	if r := e.gcloud("run", "services", "describe", "fromsrc", "--region="+region); r.code == 0 {
		t.Errorf("service fromsrc exists after gcloud's refused source deploy")
	}
	e.mustUsher("run", "deploy", "fromsrc", "--source", dir, "--region="+region)
	if got := e.describe("fromsrc"); !strings.HasPrefix(got.Spec.Template.Spec.Containers[0].Image, "file://") {
		t.Errorf("after usher run deploy --source: image %q, want the built executable (file://…)", got.Spec.Template.Spec.Containers[0].Image)
	}
}
