package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/api"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

const (
	project = "test-project"
	region  = "us-central1"
	owner   = "owner@example.com"
)

// harness is an API on a real bolt store and issuer, behind a real listener.
type harness struct {
	t      *testing.T
	st     store.Store
	iss    *issuer.Issuer
	server *httptest.Server
	secret string // the owner's CLI credential
}

func newHarness(t *testing.T, configure ...func(*admin.Config)) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, st: st, secret: "test-credential"}
	h.server = httptest.NewUnstartedServer(nil)
	url := "http://" + h.server.Listener.Addr().String()
	h.iss, err = issuer.New(ctx, st, issuer.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ int64, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(state.Put(ctx, st, state.ProjectKey(project), state.Project{ProjectID: project, ProjectNumber: apis.ProjectNumber(project), LifecycleState: "ACTIVE"}, store.MustNotExist))
	must(state.Put(ctx, st, state.ProjectPolicyKey(project), iam.Policy{Bindings: []iam.Binding{{Role: "roles/owner", Members: []string{"user:" + owner}}}}, store.MustNotExist))
	must(state.Put(ctx, st, state.CredentialKey(api.HashCredential(h.secret)), state.Credential{Email: owner}, store.MustNotExist))
	// The project's default runtime identity, as the server's bootstrap makes it.
	defaultSA := admin.NewServiceAccountRecord(state.Project{ProjectID: project}, apis.DefaultServiceAccount(project), "", "")
	must(state.Put(ctx, st, state.ServiceAccountKey(project, defaultSA.Email), defaultSA, store.MustNotExist))
	mir := mirror.New(st, mirror.Config{Decode: func(string, []byte) (any, bool, error) { return nil, false, nil }})
	if err := mir.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go mir.Run(ctx)
	cfg := admin.Config{
		Store: st, Roles: iam.Predefined(), Minter: h.iss, Sync: mir, DefaultRegion: region,
		ServiceURL: func(p, r, n string) string { return apis.ServiceURL("http", n, p, r, "run.localhost", "8080") },
	}
	for _, f := range configure {
		f(&cfg)
	}
	h.server.Config.Handler = api.New(api.Config{Core: admin.New(cfg),
		Verifier: authn.New(authn.Config{Issuer: url, Keys: h.iss})})
	h.server.Start()
	t.Cleanup(h.server.Close)
	return h
}

// token mints an access token for email.
func (h *harness) token(email string) string {
	h.t.Helper()
	tok, err := h.iss.MintAccess(email, email, "", time.Time{})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func (r response) errStatus() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["status"].(string)
	return s
}

func (h *harness) call(token, method, path string, body any) response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.server.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, raw: string(raw)}
	json.Unmarshal(raw, &out.body)
	return out
}

func (h *harness) createService(name string) {
	h.t.Helper()
	svc := apis.Service{Metadata: apis.ObjectMeta{Name: name}, Spec: apis.ServiceSpec{Template: apis.RevisionTemplate{Spec: apis.RevisionSpec{Containers: []apis.Container{{Image: "file:///bin/true"}}}}}}
	if r := h.call(h.token(owner), "POST", client.ServicesPath(project, region), svc); r.status != 200 {
		h.t.Fatalf("create service: %d %s", r.status, r.raw)
	}
}

func (h *harness) policy(path string) response {
	h.t.Helper()
	return h.call(h.token(owner), "POST", path+":getIamPolicy", map[string]any{})
}

func TestSetIamPolicyEtag(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	path := client.ServicePath(project, region, "svc")
	tok := h.token(owner)

	got := h.policy(path)
	if got.status != 200 || got.body["etag"] != iam.EmptyEtag {
		t.Fatalf("empty policy = %d %s, want 200 with etag ACAB", got.status, got.raw)
	}
	set := func(etag string, members ...string) response {
		return h.call(tok, "POST", path+":setIamPolicy", map[string]any{"policy": map[string]any{
			"etag": etag, "bindings": []map[string]any{{"role": "roles/run.invoker", "members": members}}}})
	}
	first := set(iam.EmptyEtag, "user:a@example.com")
	if first.status != 200 {
		t.Fatalf("first set = %d %s", first.status, first.raw)
	}
	etag1 := first.body["etag"].(string)

	tests := []struct {
		name       string
		etag       string
		wantStatus int
		wantErr    string
	}{
		{"stale empty etag", iam.EmptyEtag, 409, "ABORTED"},
		{"stale etag of another revision", iam.Etag(1), 409, "ABORTED"},
		{"garbage etag", "%%%", 400, "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := set(tt.etag, "user:intruder@example.com")
			if r.status != tt.wantStatus || r.errStatus() != tt.wantErr {
				t.Fatalf("set = %d %s, want %d %s", r.status, r.raw, tt.wantStatus, tt.wantErr)
			}
			if tt.wantErr == "ABORTED" && !strings.Contains(r.raw, "There were concurrent policy changes") {
				t.Errorf("message = %s, want Google's concurrent-change message", r.raw)
			}
			if now := h.policy(path); now.body["etag"] != etag1 || strings.Contains(now.raw, "intruder") {
				t.Errorf("policy changed by a refused write: %s", now.raw)
			}
		})
	}
	// gcloud sends etags back URL-safe and unpadded.
	urlSafe := strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(etag1), "=")
	if r := set(urlSafe, "user:b@example.com"); r.status != 200 {
		t.Fatalf("set with URL-safe etag = %d %s", r.status, r.raw)
	}
	// No etag overwrites, as Google does.
	if r := set("", "user:c@example.com"); r.status != 200 || !strings.Contains(r.raw, "user:c@example.com") || strings.Contains(r.raw, "user:b@") {
		t.Fatalf("set without etag = %d %s", r.status, r.raw)
	}
}

func TestSetIamPolicyRejectsBadInput(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	tok := h.token(owner)
	svcPath := client.ServicePath(project, region, "svc")
	before := h.policy(svcPath).raw
	projectBefore := h.policy(client.ProjectPath(project)).raw
	tests := []struct {
		name   string
		path   string
		policy map[string]any
		want   string
	}{
		{"member without type", svcPath, map[string]any{"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"alice@example.com"}}}}, "did you mean"},
		{"lower-case allusers", svcPath, map[string]any{"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"allusers"}}}}, "did you mean"},
		{"service account that does not exist", svcPath, map[string]any{"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"serviceAccount:ghost@" + project + ".iam.gserviceaccount.com"}}}}, "does not exist"},
		{"unknown role", svcPath, map[string]any{"bindings": []any{map[string]any{"role": "roles/run.superuser", "members": []string{"allUsers"}}}}, "does not exist"},
		{"condition with version 1", svcPath, map[string]any{"version": 1, "bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"user:a@example.com"}, "condition": map[string]string{"title": "t", "expression": "true"}}}}, "version 3"},
		{"allUsers on the project", client.ProjectPath(project), map[string]any{"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"allUsers"}}}}, "cannot be granted roles on a project"},
		{"allAuthenticatedUsers on the project", client.ProjectPath(project), map[string]any{"bindings": []any{map[string]any{"role": "roles/viewer", "members": []string{"allAuthenticatedUsers"}}}}, "cannot be granted roles on a project"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.call(tok, "POST", tt.path+":setIamPolicy", map[string]any{"policy": tt.policy})
			if r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" || !strings.Contains(r.raw, tt.want) {
				t.Fatalf("set = %d %s, want 400 INVALID_ARGUMENT mentioning %q", r.status, r.raw, tt.want)
			}
		})
	}
	if after := h.policy(svcPath).raw; after != before {
		t.Errorf("service policy changed: %s -> %s", before, after)
	}
	if after := h.policy(client.ProjectPath(project)).raw; after != projectBefore {
		t.Errorf("project policy changed: %s -> %s", projectBefore, after)
	}
	if r := h.call(tok, "POST", client.ServicesPath(project, region), map[string]any{"metadata": map[string]string{"name": "Bad_Name"}}); r.status != 400 {
		t.Errorf("bad service name = %d %s, want 400", r.status, r.raw)
	}
	if r := h.call(tok, "POST", client.ServicesPath(project, region), map[string]any{"metadata": map[string]string{"name": "ok"}, "spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "x", "env": []any{map[string]string{"name": "PORT", "value": "1"}}}}}}}}); r.status != 400 || !strings.Contains(r.raw, "PORT is reserved") {
		t.Errorf("reserved env = %d %s, want 400", r.status, r.raw)
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	list := client.ServicesPath(project, region)
	idToken, _ := h.iss.Mint(issuer.Claims{Subject: owner, Email: owner, Audience: []string{"http://svc"}})
	tests := []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"garbage", "garbage"},
		{"identity token, not an access token", idToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.call(tt.token, "GET", list, nil)
			if r.status != 401 || r.errStatus() != "UNAUTHENTICATED" {
				t.Fatalf("list = %d %s, want 401 UNAUTHENTICATED", r.status, r.raw)
			}
			e := r.body["error"].(map[string]any)
			if e["code"] != float64(401) || e["message"] == "" {
				t.Errorf("error shape = %s", r.raw)
			}
		})
	}
}

func TestAuthorization(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	ownerTok := h.token(owner)
	grant := func(path, role, member string) {
		t.Helper()
		c := client.New(client.Config{Server: h.server.URL, Credential: h.secret})
		if _, err := c.ModifyIamPolicy(context.Background(), path, func(p *iam.Policy) (bool, error) {
			return p.AddBinding(role, member, nil), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	grant(client.ProjectPath(project), "roles/run.viewer", "user:viewer@example.com")
	grant(client.ProjectPath(project), "roles/run.developer", "user:dev@example.com")
	grant(client.ServicePath(project, region, "svc"), "roles/run.admin", "user:svcadmin@example.com")

	svc := client.ServicePath(project, region, "svc")
	setBody := map[string]any{"policy": map[string]any{"bindings": []any{map[string]any{"role": "roles/run.invoker", "members": []string{"allUsers"}}}}}
	tests := []struct {
		who, method, path string
		body              any
		want              int
	}{
		{"stranger@example.com", "GET", client.ServicesPath(project, region), nil, 403},
		{"stranger@example.com", "GET", svc, nil, 403},
		{"stranger@example.com", "POST", svc + ":setIamPolicy", setBody, 403},
		{"viewer@example.com", "GET", client.ServicesPath(project, region), nil, 200},
		{"viewer@example.com", "POST", svc + ":getIamPolicy", map[string]any{}, 200},
		{"viewer@example.com", "POST", svc + ":setIamPolicy", setBody, 403},
		{"viewer@example.com", "DELETE", svc, nil, 403},
		{"dev@example.com", "POST", svc + ":setIamPolicy", setBody, 403},
		{"svcadmin@example.com", "GET", client.ServicesPath(project, region), nil, 403}, // service grants do not reach the project
		{"svcadmin@example.com", "POST", svc + ":setIamPolicy", setBody, 200},
		{"stranger@example.com", "GET", client.ServicePath(project, region, "missing"), nil, 403},
		{owner, "GET", client.ServicePath(project, region, "missing"), nil, 404},
		{owner, "GET", client.ServicesPath("no-such-project", region), nil, 404},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.who, tt.method, tt.path), func(t *testing.T) {
			r := h.call(h.token(tt.who), tt.method, tt.path, tt.body)
			if r.status != tt.want {
				t.Fatalf("got %d %s, want %d", r.status, r.raw, tt.want)
			}
			if tt.want == 403 && (r.errStatus() != "PERMISSION_DENIED" || !strings.Contains(r.raw, "run.services.")) {
				t.Errorf("403 body = %s, want PERMISSION_DENIED naming the permission", r.raw)
			}
		})
	}
	// testIamPermissions on a service that does not exist yet answers from the
	// project's policy (gcloud asks before a first deploy).
	r := h.call(h.token("dev@example.com"), "POST", client.ServicePath(project, region, "not-yet")+":testIamPermissions",
		map[string]any{"permissions": []string{"run.services.create", "run.services.setIamPolicy"}})
	if r.status != 200 || !strings.Contains(r.raw, "run.services.create") || strings.Contains(r.raw, "setIamPolicy") {
		t.Errorf("testIamPermissions = %d %s", r.status, r.raw)
	}
	_ = ownerTok
}

// TestConcurrentBindingAdds: many writers doing read-modify-write on one policy
// lose no update (compare-and-swap plus retry).
func TestConcurrentBindingAdds(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	path := client.ServicePath(project, region, "svc")
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(client.Config{Server: h.server.URL, Credential: h.secret})
			_, err := c.ModifyIamPolicy(context.Background(), path, func(p *iam.Policy) (bool, error) {
				return p.AddBinding("roles/run.invoker", fmt.Sprintf("user:u%02d@example.com", i), nil), nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := h.policy(path).raw
	for i := range writers {
		if m := fmt.Sprintf("user:u%02d@example.com", i); !strings.Contains(got, m) {
			t.Errorf("policy lost %s: %s", m, got)
		}
	}
}

// TestImpersonation: identity tokens for a service account go to holders of
// Service Account Token Creator on it (or the project), and to nobody else.
func TestImpersonation(t *testing.T) {
	h := newHarness(t)
	ownerTok := h.token(owner)
	if r := h.call(ownerTok, "POST", client.ServiceAccountsPath(project), map[string]any{"accountId": "runner"}); r.status != 200 {
		t.Fatalf("create service account = %d %s", r.status, r.raw)
	}
	email := apis.ServiceAccountEmail("runner", project)
	c := client.New(client.Config{Server: h.server.URL, Credential: h.secret})
	if _, err := c.ModifyIamPolicy(context.Background(), client.ServiceAccountPath(project, email), func(p *iam.Policy) (bool, error) {
		return p.AddBinding("roles/iam.serviceAccountTokenCreator", "user:ci@example.com", nil), nil
	}); err != nil {
		t.Fatal(err)
	}
	gen := "/v1/projects/-/serviceAccounts/" + email + ":generateIdToken"
	tests := []struct {
		who      string
		body     map[string]any
		want     int
		wantCode string
	}{
		{owner, map[string]any{"audience": "http://svc"}, 200, ""},
		{"ci@example.com", map[string]any{"audience": "http://svc"}, 200, ""},
		{"stranger@example.com", map[string]any{"audience": "http://svc"}, 403, "PERMISSION_DENIED"},
		{owner, map[string]any{}, 400, "INVALID_ARGUMENT"},
		{owner, map[string]any{"audience": "http://svc", "delegates": []string{"x"}}, 400, "INVALID_ARGUMENT"},
	}
	verifier := authn.New(authn.Config{Issuer: h.iss.URL(), Keys: h.iss})
	for _, tt := range tests {
		t.Run(tt.who, func(t *testing.T) {
			r := h.call(h.token(tt.who), "POST", gen, tt.body)
			if r.status != tt.want || r.errStatus() != tt.wantCode {
				t.Fatalf("generateIdToken = %d %s, want %d %s", r.status, r.raw, tt.want, tt.wantCode)
			}
			if tt.want != 200 {
				return
			}
			id, err := verifier.Verify(r.body["token"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if id.Email != email || !id.HasAudience("http://svc") {
				t.Errorf("token for %s aud %v, want %s aud http://svc", id.Email, id.Audience, email)
			}
		})
	}
	if r := h.call(ownerTok, "POST", "/v1/projects/-/serviceAccounts/nobody@"+project+".iam.gserviceaccount.com:generateIdToken", map[string]any{"audience": "a"}); r.status != 404 {
		t.Errorf("unknown account = %d %s, want 404", r.status, r.raw)
	}
}

// TestServiceUsage: the APIs Usher serves report enabled, so clients that
// check before calling (gcloud with prompts on) go ahead.
func TestServiceUsage(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	tests := []struct {
		api, want string
	}{
		{"run.googleapis.com", "ENABLED"},
		{"iamcredentials.googleapis.com", "ENABLED"},
		{"compute.googleapis.com", "DISABLED"},
	}
	for _, tt := range tests {
		r := h.call(tok, "GET", "/v1/projects/"+project+"/services/"+tt.api, nil)
		if r.status != 200 || r.body["state"] != tt.want {
			t.Errorf("%s: %d %s, want state %s", tt.api, r.status, r.raw, tt.want)
		}
	}
	if r := h.call(tok, "POST", "/v1/projects/"+project+"/services:batchEnable", map[string]any{"serviceIds": []string{"run.googleapis.com"}}); r.status != 200 || r.body["done"] != true {
		t.Errorf("batchEnable run = %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "POST", "/v1/projects/"+project+"/services:batchEnable", map[string]any{"serviceIds": []string{"compute.googleapis.com"}}); r.status != 400 {
		t.Errorf("batchEnable compute = %d %s, want 400", r.status, r.raw)
	}
	ops := []struct {
		method, path, want string
		status             int
	}{
		{"POST", "services/run.googleapis.com:enable", `"done": true`, 200},
		{"POST", "services/compute.googleapis.com:enable", "FAILED_PRECONDITION", 400},
		{"POST", "services/run.googleapis.com:disable", "cannot be disabled", 400},
		{"POST", "services/compute.googleapis.com:disable", `"state": "DISABLED"`, 200},
		{"POST", "services/run.googleapis.com:explode", "NOT_FOUND", 404},
		{"GET", "services", `"title": "Cloud Run Admin API"`, 200},
		{"GET", "services?filter=state:ENABLED", "run.googleapis.com", 200},
		{"GET", "services?filter=state:DISABLED", `"services": []`, 200},
		{"GET", "services?filter=name:x", "INVALID_ARGUMENT", 400},
	}
	for _, op := range ops {
		if r := h.call(tok, op.method, "/v1/projects/"+project+"/"+op.path, nil); r.status != op.status || !strings.Contains(r.raw, op.want) {
			t.Errorf("%s %s = %d %s, want %d with %q", op.method, op.path, r.status, r.raw, op.status, op.want)
		}
	}
	// Enabling needs serviceusage.services.enable: a viewer may list, not enable.
	viewer := "viewer@example.com"
	if r := h.call(tok, "POST", client.ProjectPath(project)+":setIamPolicy", map[string]any{"policy": map[string]any{
		"bindings": []map[string]any{{"role": "roles/owner", "members": []string{"user:" + owner}}, {"role": "roles/viewer", "members": []string{"user:" + viewer}}}}}); r.status != 200 {
		t.Fatalf("set project policy: %d %s", r.status, r.raw)
	}
	if r := h.call(h.token(viewer), "GET", "/v1/projects/"+project+"/services", nil); r.status != 200 {
		t.Errorf("viewer lists services = %d %s, want 200", r.status, r.raw)
	}
	if r := h.call(h.token(viewer), "POST", "/v1/projects/"+project+"/services/run.googleapis.com:enable", nil); r.status != 403 {
		t.Errorf("viewer enables run = %d %s, want 403", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v1/projects/"+project+"/locations", nil); r.status != 200 || !strings.Contains(r.raw, `"locationId": "us-central1"`) {
		t.Errorf("locations = %d %s", r.status, r.raw)
	}
}
