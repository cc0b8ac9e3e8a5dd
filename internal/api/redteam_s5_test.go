package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Red team (session 5): principals a project creator could claim.

// TestGrantToAccountOfAbsentProjectRefused: a grant to a service account
// of a project that does not exist yet was accepted as "an external
// identity"; since projects can be created, whoever holds
// roles/resourcemanager.projectCreator could create that project and that
// account and inherit the grant (a typo'd or pre-provisioned CI account).
// It is refused as Google refuses it: the account does not exist.
func TestGrantToAccountOfAbsentProjectRefused(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)
	h.createService("svc")
	svcPath := client.ServicePath(project, region, "svc")
	for _, member := range []string{
		"serviceAccount:deployer@acme-ci.iam.gserviceaccount.com",
		"serviceAccount:" + apis.DefaultServiceAccount("acme-ci"),
	} {
		r := h.call(tok, "POST", svcPath+":setIamPolicy", map[string]any{"policy": map[string]any{"bindings": []any{
			map[string]any{"role": "roles/run.invoker", "members": []string{member}}}}})
		if r.status != 400 || !strings.Contains(r.raw, "does not exist") {
			t.Errorf("grant to %s of a project nobody created yet: %d %s, want 400 does not exist", member, r.status, r.raw)
		}
	}
	// Google's service agents stay grantable (gcloud's --iap grants the
	// IAP agent), and no project may take their domain.
	agent := apis.IAPServiceAgent(project)
	if r := h.call(tok, "POST", svcPath+":setIamPolicy", map[string]any{"policy": map[string]any{"bindings": []any{
		map[string]any{"role": "roles/run.invoker", "members": []string{agent}}}}}); r.status != 200 {
		t.Fatalf("grant to the IAP agent: %d %s", r.status, r.raw)
	}
	addBinding(t, h, tok, "/v1/projects/"+project, "user:mallory@example.com", "roles/resourcemanager.projectCreator")
	mallory := h.token("mallory@example.com")
	if r := h.call(mallory, "POST", "/v1/projects", map[string]any{"projectId": "gcp-sa-iap"}); r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" {
		t.Fatalf("a project creator took the IAP agent's domain gcp-sa-iap: %d %s", r.status, r.raw)
	}
	// Had it been created, its owner could make the agent's account and
	// hold the agent's run.invoker grant on svc.
	if r := h.call(mallory, "POST", client.ServiceAccountsPath("gcp-sa-iap"), map[string]any{"accountId": "service-" + apis.ProjectNumber(project)}); r.status == 200 {
		t.Fatalf("mallory created the IAP agent's account: %s", r.raw)
	}
}

// TestDeletedProjectAccountNotRunnable: a service account of a project
// being deleted "holds nothing", yet a service in another project could
// still be deployed to run as it (checkActAs looked the project up
// whatever its state): its instances would start as an account that
// should be unusable, reading secrets granted to it.
func TestDeletedProjectAccountNotRunnable(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)
	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "team-b"}); r.status != 200 {
		t.Fatal(r.raw)
	}
	if r := h.call(tok, "POST", client.ServiceAccountsPath("team-b"), map[string]any{"accountId": "robot-b"}); r.status != 200 {
		t.Fatal(r.raw)
	}
	if r := h.call(tok, "DELETE", "/v1/projects/team-b", nil); r.status != 200 {
		t.Fatal(r.raw)
	}
	for _, sa := range []string{apis.ServiceAccountEmail("robot-b", "team-b"), apis.DefaultServiceAccount("team-b")} {
		svc := map[string]any{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": map[string]any{"name": "as-b", "namespace": project},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"serviceAccountName": sa, "containers": []any{map[string]any{"image": "file:///bin/true"}}}}}}
		if r := h.call(tok, "POST", client.ServicesPath(project, region), svc); r.status == 200 {
			t.Errorf("deployed a service running as %s of a deleted project: %s", sa, r.raw)
		}
	}
}

// TestProjectCreationBounded: a principal with
// roles/resourcemanager.projectCreator creates projects without limit, and
// several per-request costs grow with the number of projects (projects
// list reads every project's policy and custom roles; a project named by
// number is found by decoding every project; the accounts index reloads
// every project and account on each change). Creation is bounded per
// creator (deleted projects included) and per server, as Google bounds it
// by quota: RESOURCE_EXHAUSTED past it; others still create.
func TestProjectCreationBounded(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)
	addBinding(t, h, tok, "/v1/projects/"+project, "user:mallory@example.com", "roles/resourcemanager.projectCreator")
	mallory := h.token("mallory@example.com")
	for i := range admin.MaxProjectsPerCreator {
		id := fmt.Sprintf("spam-%03d", i)
		if r := h.call(mallory, "POST", "/v1/projects", map[string]any{"projectId": id}); r.status != 200 {
			t.Fatalf("project %d: %d %s", i, r.status, r.raw)
		}
		if i == 0 {
			// Deleting does not give the quota back: the record stays.
			if r := h.call(mallory, "DELETE", "/v1/projects/"+id, nil); r.status != 200 {
				t.Fatal(r.raw)
			}
		}
	}
	r := h.call(mallory, "POST", "/v1/projects", map[string]any{"projectId": "spam-over"})
	if r.status != 429 || r.errStatus() != "RESOURCE_EXHAUSTED" {
		t.Fatalf("past the quota: %d %s, want 429 RESOURCE_EXHAUSTED", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "owners-own"}); r.status != 200 {
		t.Fatalf("another creator: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects/owners-own", nil); strings.Contains(r.raw, "creator") {
		t.Errorf("the v1 shape shows Usher's creator field: %s", r.raw)
	}
}

// TestProjectIDNamedByStoredGrantsRefused: grants stored before grants to
// accounts of absent projects were refused still name them; the project
// that would own those accounts cannot be created.
func TestProjectIDNamedByStoredGrantsRefused(t *testing.T) {
	h := rootProjectHarness(t)
	tok := h.token(owner)
	old := iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"serviceAccount:deployer@acme-ci.iam.gserviceaccount.com"}}}}
	if _, err := state.Put(context.Background(), h.st, state.ServicePolicyKey(project, region, "svc"), old, store.AnyRevision); err != nil {
		t.Fatal(err)
	}
	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "acme-ci"}); r.status != 400 || !strings.Contains(r.raw, "already grants") {
		t.Fatalf("a project whose accounts stored grants name: %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v1/projects", map[string]any{"projectId": "acme-cd"}); r.status != 200 {
		t.Fatalf("an unnamed ID: %d %s", r.status, r.raw)
	}
}
