package gcloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGcloudRefusesWhatUsherDoesNotImplement: a setting Usher does not
// implement fails the command, naming the field, and changes nothing; it is
// never accepted and dropped (an "internal" service that answers everyone).
func TestGcloudRefusesWhatUsherDoesNotImplement(t *testing.T) {
	e := newEnv(t)
	image := "--image=file://" + helloBin
	e.mustGcloud("run", "deploy", "plain", image, "--region="+region, "--quiet")
	before := e.describe("plain")

	tests := []struct {
		name  string
		flags []string
		want  string // named in the error
	}{
		{"vpc connector", []string{"--vpc-connector=conn"}, "run.googleapis.com/vpc-access-connector"},
		{"direct vpc", []string{"--network=default"}, "run.googleapis.com/network-interfaces"},
		{"cloud storage volume", []string{"--add-volume=name=v,type=cloud-storage,bucket=b", "--add-volume-mount=volume=v,mount-path=/tmp/v"}, "volumes[0].csi"},
		{"cpu always allocated", []string{"--no-cpu-throttling"}, "run.googleapis.com/cpu-throttling"},
		{"execution environment", []string{"--execution-environment=gen1"}, "run.googleapis.com/execution-environment"},
		{"session affinity", []string{"--session-affinity"}, "run.googleapis.com/sessionAffinity"},
		{"cloud sql", []string{"--set-cloudsql-instances=p:r:i"}, "run.googleapis.com/cloudsql-instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cmd := range [][]string{
				append([]string{"run", "deploy", "refused", image, "--region=" + region, "--quiet"}, tt.flags...),
				append([]string{"run", "services", "update", "plain", "--region=" + region, "--quiet"}, tt.flags...),
			} {
				r := e.gcloud(cmd...)
				if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
					t.Errorf("%s\nwant a failure naming %s", r, tt.want)
				}
			}
		})
	}
	// Beta flags and an unknown region, refused as well.
	if r := e.gcloud("beta", "run", "services", "update", "plain", "--scaling=3", "--region="+region, "--quiet"); r.code == 0 || !strings.Contains(r.stderr, "run.googleapis.com/manualInstanceCount") {
		t.Errorf("%s\nwant manual scaling refused by name", r)
	}
	if r := e.gcloud("run", "deploy", "refused", image, "--region=mars-north1", "--quiet"); r.code == 0 || !strings.Contains(r.stderr, "Region 'mars-north1' is not a region Usher serves") {
		t.Errorf("%s\nwant an unknown region refused", r)
	}
	if r := e.gcloud("run", "services", "describe", "refused", "--region="+region); r.code == 0 {
		t.Errorf("%s\nwant no service created by a refused deploy", r)
	}
	if after := e.describe("plain"); after.Status.LatestCreatedRevisionName != before.Status.LatestCreatedRevisionName {
		t.Errorf("after refused updates: latest revision %s, want %s unchanged", after.Status.LatestCreatedRevisionName, before.Status.LatestCreatedRevisionName)
	}

	// HTTP/2 end to end is implemented (the e2e gRPC test drives the data
	// path): gcloud's flag sets and clears the h2c port name.
	t.Run("http2 accepted", func(t *testing.T) {
		portName := func() string {
			return strings.TrimSpace(e.mustGcloud("run", "services", "describe", "plain", "--region="+region,
				"--format=value(spec.template.spec.containers[0].ports[0].name)").stdout)
		}
		e.mustGcloud("run", "services", "update", "plain", "--region="+region, "--quiet", "--use-http2")
		if got := portName(); got != "h2c" {
			t.Errorf("after --use-http2: port name %q, want h2c", got)
		}
		e.mustGcloud("run", "services", "update", "plain", "--region="+region, "--quiet", "--no-use-http2")
		if got := portName(); got == "h2c" {
			t.Errorf("after --no-use-http2: port name %q, want not h2c", got)
		}
	})

	t.Run("replace with YAML", func(t *testing.T) {
		yaml := e.mustGcloud("run", "services", "describe", "plain", "--region="+region, "--format=export").stdout
		for _, tt := range []struct{ name, from, to, want string }{
			{"relative workingDir", "      - image:", "      - workingDir: srv\n        image:", "workingDir"},
			{"ingress none", "  annotations:\n", "  annotations:\n    run.googleapis.com/ingress: none\n", "run.googleapis.com/ingress"},
			{"unknown field", "spec:\n", "spec:\n  bogus: 1\n", "spec.bogus"},
		} {
			edited := strings.Replace(yaml, tt.from, tt.to, 1)
			if edited == yaml {
				t.Fatalf("%s: %q not found in the export:\n%s", tt.name, tt.from, yaml)
			}
			file := filepath.Join(e.dir, tt.name+".yaml")
			if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
			r := e.gcloud("run", "services", "replace", file, "--region="+region)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("%s: %s\nwant a failure naming %s", tt.name, r, tt.want)
			}
		}
		// The export as is still replaces cleanly: nothing gcloud sends back is refused.
		file := filepath.Join(e.dir, "plain.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		e.mustGcloud("run", "services", "replace", file, "--region="+region)
	})
}
