package gcloud

import (
	"strings"
	"testing"
)

// TestGcloudProjects: gcloud projects create|list|describe|update|delete|
// undelete and get-ancestors against Usher, and a deleted project's
// resources refused to gcloud run until it is undeleted.
func TestGcloudProjects(t *testing.T) {
	e := newEnv(t)
	const other = "team-gcloud"
	step(t, "create", func(t *testing.T) {
		r := e.mustGcloud("projects", "create", other, "--name=Team Gcloud", "--labels=env=dev")
		if !strings.Contains(r.out(), "Create in progress for [") || !strings.Contains(r.out(), other) {
			t.Errorf("%s\nwant the create acknowledged", r)
		}
		if r := e.gcloud("projects", "create", other); r.code == 0 || !strings.Contains(r.out(), "already in use") {
			t.Errorf("%s\nwant a duplicate refused", r)
		}
		if r := e.gcloud("projects", "create", "Bad_ID"); r.code == 0 {
			t.Errorf("%s\nwant an invalid ID refused", r)
		}
	})
	step(t, "list and describe", func(t *testing.T) {
		r := e.mustGcloud("projects", "list", "--format=value(projectId)")
		if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != project || got[1] != other {
			t.Errorf("%s\nwant %s and %s", r, project, other)
		}
		if r := e.mustGcloud("projects", "list", "--filter=labels.env:dev", "--format=value(projectId)"); strings.TrimSpace(r.stdout) != other {
			t.Errorf("%s\nwant only %s", r, other)
		}
		if r := e.mustGcloud("projects", "list", "--filter=name:Team*", "--format=value(name)"); strings.TrimSpace(r.stdout) != "Team Gcloud" {
			t.Errorf("%s\nwant Team Gcloud", r)
		}
		if r := e.mustGcloud("projects", "describe", other, "--format=value(lifecycleState,name)"); strings.TrimSpace(r.stdout) != "ACTIVE\tTeam Gcloud" {
			t.Errorf("%s\nwant ACTIVE and its name", r)
		}
		if r := e.mustGcloud("projects", "get-ancestors", other, "--format=value(id,type)"); strings.TrimSpace(r.stdout) != other+"\tproject" {
			t.Errorf("%s\nwant the project alone", r)
		}
		// Its creator owns it.
		if r := e.mustGcloud("projects", "get-iam-policy", other, "--format=json"); !parsePolicy(t, r).has("roles/owner", "user:owner@usher.localhost") {
			t.Errorf("%s\nwant the creator as owner", r)
		}
	})
	step(t, "update", func(t *testing.T) {
		e.mustGcloud("projects", "update", other, "--name=Team Renamed")
		if r := e.mustGcloud("projects", "describe", other, "--format=value(name)"); strings.TrimSpace(r.stdout) != "Team Renamed" {
			t.Errorf("%s\nwant the new name", r)
		}
	})
	var url string
	step(t, "deploy into it", func(t *testing.T) {
		e.mustGcloud("run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region, "--project="+other, "--allow-unauthenticated")
		r := e.mustGcloud("run", "services", "describe", "hello", "--region="+region, "--project="+other, "--format=value(status.url)")
		url = strings.TrimSpace(r.stdout)
		e.expectGet(t, "the new project's public service", url, 200, "Hello World!")
	})
	step(t, "delete and undelete", func(t *testing.T) {
		r := e.mustGcloud("projects", "delete", other, "--quiet")
		if !strings.Contains(r.out(), "gcloud projects undelete "+other) {
			t.Errorf("%s\nwant the undo hint", r)
		}
		e.expectGet(t, "a deleted project's service", url, 404, "")
		if r := e.gcloud("run", "services", "list", "--region="+region, "--project="+other); r.code == 0 || !strings.Contains(r.out(), "undelete") {
			t.Errorf("%s\nwant a deleted project's services refused", r)
		}
		if r := e.mustGcloud("projects", "list", "--format=value(projectId)"); strings.Contains(r.stdout, other) {
			t.Errorf("%s\nwant the deleted project left out", r)
		}
		if r := e.mustGcloud("projects", "list", "--filter=lifecycleState:DELETE_REQUESTED", "--format=value(projectId)"); strings.TrimSpace(r.stdout) != other {
			t.Errorf("%s\nwant the deleted project when asked for", r)
		}
		if r := e.gcloud("projects", "delete", project, "--quiet"); r.code == 0 || !strings.Contains(r.out(), "root project") {
			t.Errorf("%s\nwant the root project kept", r)
		}
		e.mustGcloud("projects", "undelete", other)
		e.expectGet(t, "the undeleted project's service", url, 200, "Hello World!")
	})
}
