package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestServiceToService: a frontend instance gets an identity token for the
// backend from the metadata server, as its service account, and the
// backend's IAM decides: 403 without a binding, 200 with roles/run.invoker.
func TestServiceToService(t *testing.T) {
	s := startServer(t)
	backend := s.deploy(t, "backend", helloBin)
	sa := s.createSA(t, "frontend-sa")
	front := s.deploy(t, "frontend", frontendBin, "--allow-unauthenticated", "--service-account="+sa,
		"--set-env-vars=BACKEND_URL="+backend+",USHER_ADDR="+s.currentAddr())

	if got := s.get(t, front+"/call"); got.status != 200 || !strings.HasPrefix(got.body, "403 ") {
		t.Fatalf("frontend calling a backend it may not invoke: %d %q, want 200 \"403 …\"", got.status, got.body)
	}
	s.grant(t, "backend", "serviceAccount:"+sa, "roles/run.invoker")
	if got := s.get(t, front+"/call"); got.status != 200 || got.body != "200 Hello World!" {
		t.Fatalf("frontend calling its backend: %d %q, want 200 \"200 Hello World!\"", got.status, got.body)
	}

	// The metadata server refuses an instance's request without
	// Metadata-Flavor: Google, and any caller that is not one of the
	// revision's instances (here: the test process).
	if got := s.get(t, front+"/metadata-without-flavor"); got.body != "403" {
		t.Errorf("instance asking without Metadata-Flavor: %q, want 403", got.body)
	}
	host := s.get(t, front+"/metadata-host").body
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("GCE_METADATA_HOST = %q", host)
	}
	req, _ := http.NewRequest("GET", "http://"+host+"/computeMetadata/v1/instance/service-accounts/default/email", nil)
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("a process that is no instance asking the metadata server: %d, want 403", resp.StatusCode)
	}

	// Another service's instances share the node's one metadata listener,
	// and are answered as their own account: not granted on the backend.
	other := s.createSA(t, "other-sa")
	front2 := s.deploy(t, "frontend-two", frontendBin, "--allow-unauthenticated", "--service-account="+other,
		"--set-env-vars=BACKEND_URL="+backend+",USHER_ADDR="+s.currentAddr())
	if host2 := s.get(t, front2+"/metadata-host").body; host2 != host {
		t.Errorf("second service's GCE_METADATA_HOST = %q, want the node's one listener %q", host2, host)
	}
	if got := s.get(t, front2+"/call"); got.status != 200 || !strings.HasPrefix(got.body, "403 ") {
		t.Errorf("another service's instance calling the backend granted to %s only: %d %q, want 200 \"403 …\"", sa, got.status, got.body)
	}
	if got := s.get(t, front+"/call"); got.body != "200 Hello World!" {
		t.Errorf("frontend after a second service shares its listener: %d %q", got.status, got.body)
	}
}
