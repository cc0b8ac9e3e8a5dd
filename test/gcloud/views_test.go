package gcloud

import (
	"strings"
	"testing"
)

// TestGcloudConfigurationsAndRoutes: gcloud's (hidden) `run configurations`
// and `run routes` commands read v1's views of a service; a principal
// without run.configurations.get / run.routes.get reads nothing.
func TestGcloudConfigurationsAndRoutes(t *testing.T) {
	e := newEnv(t)
	const name = "viewed"
	e.deploy(name, helloBin, "--no-allow-unauthenticated")

	r := e.mustGcloud("run", "configurations", "list", "--region="+region)
	if !strings.Contains(r.stdout, name) {
		t.Errorf("%s\nwant the service's configuration listed", r)
	}
	r = e.mustGcloud("run", "configurations", "describe", name, "--region="+region, "--format=value(metadata.name,status.latestReadyRevisionName)")
	if !strings.Contains(r.stdout, name) || !strings.Contains(r.stdout, name+"-00001-") {
		t.Errorf("%s\nwant the configuration with its latest ready revision", r)
	}
	r = e.mustGcloud("run", "routes", "list", "--region="+region)
	if !strings.Contains(r.stdout, name) {
		t.Errorf("%s\nwant the service's route listed", r)
	}
	r = e.mustGcloud("run", "routes", "describe", name, "--region="+region, "--format=value(status.url)")
	if !strings.Contains(r.stdout, "http") {
		t.Errorf("%s\nwant the route's URL", r)
	}
	if r := e.gcloud("run", "routes", "describe", "nosuch", "--region="+region); r.code == 0 {
		t.Errorf("%s\nwant a non-zero exit for a missing route", r)
	}

	e.mustGcloud("iam", "service-accounts", "create", "no-viewer")
	as := "--impersonate-service-account=" + saEmail("no-viewer")
	for _, args := range [][]string{
		{"run", "configurations", "describe", name, "--region=" + region, as},
		{"run", "routes", "describe", name, "--region=" + region, as},
	} {
		if r := e.gcloud(args...); r.code == 0 || !strings.Contains(r.out(), "PERMISSION_DENIED") {
			t.Errorf("%s\nwant PERMISSION_DENIED for a principal without the permission", r)
		}
	}
}
