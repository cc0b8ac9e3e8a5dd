package gcloud

import (
	"strings"
	"testing"
)

// TestGcloudTraffic: gcloud's --no-traffic, --tag and update-traffic drive
// Usher's traffic split through the v1 API.
func TestGcloudTraffic(t *testing.T) {
	e := newEnv(t)
	url := e.deploy("split", helloBin, "--allow-unauthenticated")
	first := e.describe("split").Status.LatestReadyRevisionName

	r := e.mustGcloud("run", "deploy", "split", "--image=file://"+helloBin, "--region="+region, "--quiet",
		"--update-env-vars=NAME=Two", "--no-traffic", "--tag=two")
	second := e.describe("split").Status.LatestCreatedRevisionName
	if second == first || !strings.Contains(r.out(), "0 percent") {
		t.Fatalf("%s\nwant a new revision serving 0 percent", r)
	}
	e.expectGet(t, "service URL after --no-traffic", url, 200, "Hello World!\n")
	e.expectGet(t, "tag URL", strings.Replace(url, "://", "://two---", 1), 200, "Hello Two!\n")

	e.mustGcloud("run", "services", "update-traffic", "split", "--region="+region, "--to-revisions="+first+"=50,"+second+"=50")
	seen := map[string]bool{}
	for range 40 {
		_, body := e.get(url)
		seen[body] = true
	}
	if !seen["Hello World!\n"] || !seen["Hello Two!\n"] {
		t.Errorf("40 requests over gcloud's 50/50 split reached %v, want both revisions", seen)
	}

	e.mustGcloud("run", "services", "update-traffic", "split", "--region="+region, "--to-latest")
	for range 10 {
		e.expectGet(t, "after --to-latest", url, 200, "Hello Two!\n")
	}
}
