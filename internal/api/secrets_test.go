package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/apis"
)

// TestV2SecretEnv: a v2 service takes an env var from a secret
// (valueSource.secretKeyRef, version defaulting to latest) once its runtime
// account may read the secret, and reads it back in the v2 shape.
func TestV2SecretEnv(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	body := `{"template":{"containers":[{"image":"file:///bin/true","env":[{"name":"K","valueSource":{"secretKeyRef":{"secret":"s"}}}]}]}}`
	create := func(id string) response {
		return h.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId="+id, json.RawMessage(body))
	}
	for _, r := range []response{
		h.call(tok, "POST", "/v1/projects/"+project+"/secrets?secretId=s", map[string]any{}),
		h.call(tok, "POST", "/v1/projects/"+project+"/secrets/s:addVersion", map[string]any{"payload": map[string]any{"data": "dmFsdWU="}}),
	} {
		if r.status != 200 {
			t.Fatalf("making the secret: %d %s", r.status, r.raw)
		}
	}
	if r := create("denied"); r.status != 403 || !strings.Contains(r.raw, apis.DefaultServiceAccount(project)) {
		t.Fatalf("create before the grant = %d %s, want 403 naming the runtime account", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v1/projects/"+project+"/secrets/s:setIamPolicy", map[string]any{"policy": map[string]any{"bindings": []any{
		map[string]any{"role": "roles/secretmanager.secretAccessor", "members": []any{"serviceAccount:" + apis.DefaultServiceAccount(project)}}}}}); r.status != 200 {
		t.Fatalf("grant: %d %s", r.status, r.raw)
	}
	if r := create("granted"); r.status != 200 {
		t.Fatalf("create after the grant = %d %s", r.status, r.raw)
	}
	r := h.call(tok, "GET", "/v2/"+parentV2+"/services/granted", nil)
	if !strings.Contains(strings.Join(strings.Fields(r.raw), ""), `"valueSource":{"secretKeyRef":{"secret":"s","version":"latest"}}`) {
		t.Errorf("v2 get = %s, want the reference with version latest", r.raw)
	}
	if strings.Contains(r.raw, "dmFsdWU=") || strings.Contains(r.raw, `"value"`) {
		t.Errorf("v2 get shows a value: %s", r.raw)
	}
}
