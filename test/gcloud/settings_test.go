package gcloud

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGcloudIngressAndDefaultURL: gcloud's --ingress and --no-default-url
// are stored, shown back as gcloud reads them and honoured: the test (not
// an instance, not an internal network) gets 404 from an internal service
// and from a service whose URL is disabled; YAML replace carries both.
func TestGcloudIngressAndDefaultURL(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("svc", helloBin, "--allow-unauthenticated", "--ingress=internal")
	if got := e.describe("svc").Metadata.Annotations["run.googleapis.com/ingress"]; got != "internal" {
		t.Errorf("after --ingress=internal: annotation %q, want internal", got)
	}
	if got := strings.TrimSpace(e.mustGcloud("run", "services", "describe", "svc", "--region="+region,
		"--format=value(metadata.annotations['run.googleapis.com/ingress-status'])").stdout); got != "internal" {
		t.Errorf("ingress-status %q, want internal", got)
	}
	e.expectGet(t, "internal, from outside", url, http.StatusNotFound, "")
	e.expectGet(t, "internal, from outside with a forged X-Forwarded-For", url, http.StatusNotFound, "", "X-Forwarded-For", "127.77.0.2")
	e.mustGcloud("run", "services", "update", "svc", "--region="+region, "--quiet", "--ingress=internal-and-cloud-load-balancing")
	e.expectGet(t, "internal-and-cloud-load-balancing, from outside (no trusted proxy)", url, http.StatusNotFound, "")
	e.mustGcloud("run", "services", "update", "svc", "--region="+region, "--quiet", "--ingress=all")
	e.expectGet(t, "ingress all", url, http.StatusOK, "Hello")

	e.mustGcloud("beta", "run", "services", "update", "svc", "--region="+region, "--quiet", "--no-default-url")
	d := e.describe("svc")
	if d.Status.URL != "" || d.Metadata.Annotations["run.googleapis.com/urls"] != "" {
		t.Errorf("after --no-default-url: status.url %q, urls %q; want none", d.Status.URL, d.Metadata.Annotations["run.googleapis.com/urls"])
	}
	if got := d.Metadata.Annotations["run.googleapis.com/default-url-disabled"]; !strings.EqualFold(got, "true") {
		t.Errorf("after --no-default-url: annotation %q, want true", got)
	}
	e.expectGet(t, "--no-default-url", url, http.StatusNotFound, "")

	// YAML replace: the export round-trips, and an edit turns the URL back on
	// and the ingress to internal.
	yaml := e.mustGcloud("run", "services", "describe", "svc", "--region="+region, "--format=export").stdout
	edited := strings.NewReplacer(
		"run.googleapis.com/default-url-disabled: 'True'", "run.googleapis.com/default-url-disabled: 'false'",
		"run.googleapis.com/default-url-disabled: 'true'", "run.googleapis.com/default-url-disabled: 'false'",
		"run.googleapis.com/ingress: all", "run.googleapis.com/ingress: internal",
	).Replace(yaml)
	if edited == yaml || !strings.Contains(edited, "ingress: internal") {
		t.Fatalf("the export has no ingress or default-url-disabled annotation to edit:\n%s", yaml)
	}
	file := filepath.Join(e.dir, "svc.yaml")
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustGcloud("run", "services", "replace", file, "--region="+region)
	d = e.describe("svc")
	if d.Status.URL != url || d.Metadata.Annotations["run.googleapis.com/ingress"] != "internal" {
		t.Errorf("after replace: status.url %q, ingress %q; want %s and internal", d.Status.URL, d.Metadata.Annotations["run.googleapis.com/ingress"], url)
	}
	e.expectGet(t, "internal again, after replace", url, http.StatusNotFound, "")
}

// TestGcloudWorkingDir: a workingDir set by YAML replace is stored, shown
// back and used: the sandbox makes a missing one under /tmp, and a revision
// whose workingDir does not exist in the sandbox fails, saying so, while
// the previous revision keeps serving.
func TestGcloudWorkingDir(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("wd", helloBin, "--allow-unauthenticated")
	yaml := e.mustGcloud("run", "services", "describe", "wd", "--region="+region, "--format=export").stdout
	replace := func(dir string) result {
		edited := strings.Replace(yaml, "      - image:", "      - workingDir: "+dir+"\n        image:", 1)
		if edited == yaml {
			t.Fatalf("no container in the export:\n%s", yaml)
		}
		file := filepath.Join(e.dir, "wd.yaml")
		if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		return e.gcloud("run", "services", "replace", file, "--region="+region)
	}
	if r := replace("/tmp/work"); r.code != 0 {
		t.Fatalf("%s\nwant workingDir /tmp/work accepted", r)
	}
	if got := strings.TrimSpace(e.mustGcloud("run", "services", "describe", "wd", "--region="+region,
		"--format=value(spec.template.spec.containers[0].workingDir)").stdout); got != "/tmp/work" {
		t.Errorf("workingDir shown back as %q, want /tmp/work", got)
	}
	e.expectGet(t, "the revision in /tmp/work", url, http.StatusOK, "Hello")
	if r := replace("/no/such/dir"); r.code == 0 || !strings.Contains(r.out(), "/no/such/dir") {
		t.Errorf("%s\nwant the revision to fail naming /no/such/dir", r)
	}
	e.expectGet(t, "the previous revision, after a failed one", url, http.StatusOK, "Hello")
}

// TestGcloudInMemoryVolume: gcloud's --add-volume type=in-memory and
// --add-volume-mount are stored and shown back; for a file:// image a mount
// path the process sandbox cannot have is refused at deploy, naming it, and
// changes nothing; --clear-volumes with --clear-volume-mounts removes them.
func TestGcloudInMemoryVolume(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("vol", helloBin, "--allow-unauthenticated",
		"--add-volume=name=cache,type=in-memory,size-limit=8Mi", "--add-volume-mount=volume=cache,mount-path=/tmp/cache")
	value := func(field string) string {
		return strings.TrimSpace(e.mustGcloud("run", "services", "describe", "vol", "--region="+region, "--format=value("+field+")").stdout)
	}
	if got := value("spec.template.spec.volumes[0].emptyDir.sizeLimit"); got != "8Mi" {
		t.Errorf("sizeLimit %q, want 8Mi", got)
	}
	if got := value("spec.template.spec.containers[0].volumeMounts[0].mountPath"); got != "/tmp/cache" {
		t.Errorf("mountPath %q, want /tmp/cache", got)
	}
	e.expectGet(t, "with its volume", url, http.StatusOK, "Hello")
	before := e.describe("vol").Status.LatestCreatedRevisionName
	r := e.gcloud("run", "services", "update", "vol", "--region="+region, "--quiet",
		"--add-volume=name=other,type=in-memory", "--add-volume-mount=volume=other,mount-path=/no-such-dir-on-the-host")
	if r.code == 0 || !strings.Contains(r.stderr, "volumeMounts[1].mountPath") {
		t.Errorf("%s\nwant a refusal naming volumeMounts[1].mountPath", r)
	}
	if after := e.describe("vol").Status.LatestCreatedRevisionName; after != before {
		t.Errorf("a refused update made revision %s", after)
	}
	e.mustGcloud("run", "services", "update", "vol", "--region="+region, "--quiet", "--clear-volumes", "--clear-volume-mounts")
	if got := value("spec.template.spec.volumes"); got != "" {
		t.Errorf("after --clear-volumes: volumes %q", got)
	}
}

// TestGcloudProbes: gcloud's --startup-probe (httpGet, tcpSocket) and
// --liveness-probe (httpGet) are stored, shown back and pass on a healthy service;
// --liveness-probe="" removes the probe. (A failing probe's behaviour is
// test/e2e's TestProbes: hello answers every path.)
func TestGcloudProbes(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("probed", helloBin, "--allow-unauthenticated",
		"--startup-probe=httpGet.path=/,periodSeconds=1,failureThreshold=5", "--liveness-probe=httpGet.path=/healthz,periodSeconds=5")
	value := func(field string) string {
		return strings.TrimSpace(e.mustGcloud("run", "services", "describe", "probed", "--region="+region, "--format=value("+field+")").stdout)
	}
	if got := value("spec.template.spec.containers[0].startupProbe.httpGet.path"); got != "/" {
		t.Errorf("startupProbe.httpGet.path %q, want /", got)
	}
	if got := value("spec.template.spec.containers[0].livenessProbe.periodSeconds"); got != "5" {
		t.Errorf("livenessProbe.periodSeconds %q, want 5", got)
	}
	e.expectGet(t, "probed service", url, http.StatusOK, "Hello")
	e.mustGcloud("run", "services", "update", "probed", "--region="+region, "--quiet", "--startup-probe=tcpSocket.port=8080,periodSeconds=1")
	if got := value("spec.template.spec.containers[0].startupProbe.tcpSocket.port"); got != "8080" {
		t.Errorf("startupProbe.tcpSocket.port %q, want 8080", got)
	}
	// A gRPC health check is accepted and kept as gcloud sent it (hello
	// serves no gRPC: with a long period, nothing fails before it is
	// removed below; TestGRPCProbes runs one against a gRPC service).
	e.mustGcloud("run", "services", "update", "probed", "--region="+region, "--quiet", "--liveness-probe=grpc.port=8080,grpc.service=api.Health,periodSeconds=3600")
	if got := value("spec.template.spec.containers[0].livenessProbe.grpc.service"); got != "api.Health" {
		t.Errorf("livenessProbe.grpc.service %q, want api.Health", got)
	}
	e.mustGcloud("run", "services", "update", "probed", "--region="+region, "--quiet", "--liveness-probe=")
	if got := value("spec.template.spec.containers[0].livenessProbe"); got != "" {
		t.Errorf("after --liveness-probe=\"\": livenessProbe %q, want none", got)
	}
	e.expectGet(t, "after removing the liveness probe", url, http.StatusOK, "Hello")
}
