package metadata_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/usher-run/usher/internal/runtime/process"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gcemd "cloud.google.com/go/compute/metadata"
	"google.golang.org/api/idtoken"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/metadata"
	"github.com/usher-run/usher/internal/store/bolt"
)

const (
	issuerURL = "http://localhost:8080"
	project   = "local-project"
	region    = "us-central1"
	saEmail   = "frontend@local-project.iam.gserviceaccount.com"
	saID      = "104857600000000000001"
	v1        = "/computeMetadata/v1/"
)

func TestMain(m *testing.M) {
	process.SandboxInit() // sandboxed instances' init is this binary
	switch os.Getenv(helperEnv) {
	case "1":
		instanceMain()
		return
	case "join":
		joinMain()
		return
	}
	os.Exit(m.Run())
}

// clock is a settable test clock shared by issuer, verifier and server.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := &clock{}
	now := time.Now()
	c.t.Store(&now)
	return c
}

func (c *clock) Now() time.Time { return *c.t.Load() }

func (c *clock) Advance(d time.Duration) {
	t := c.Now().Add(d)
	c.t.Store(&t)
}

type fixture struct {
	clock *clock
	iss   *issuer.Issuer
	ver   *authn.Verifier
	md    *metadata.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{clock: newClock()}
	f.iss, err = issuer.New(context.Background(), st, issuer.Config{URL: issuerURL, Now: f.clock.Now})
	if err != nil {
		t.Fatalf("issuer.New: %v", err)
	}
	f.ver = authn.New(authn.Config{Issuer: issuerURL, Keys: f.iss, Now: f.clock.Now, CacheEntries: -1})
	f.md = metadata.New(metadata.Config{Minter: f.iss, Now: f.clock.Now})
	t.Cleanup(func() { f.md.Close() })
	return f
}

func frontend() metadata.Identity {
	return metadata.Identity{
		Key:            project + "/" + region + "/frontend-00001-abc",
		ServiceAccount: saEmail, UniqueID: saID,
		ProjectID: project, Region: region,
		Service: "frontend", Revision: "frontend-00001-abc",
	}
}

// register registers id on a network of its own whose every peer is id's
// instance.
func (f *fixture) register(t *testing.T, id metadata.Identity) *metadata.Registration {
	t.Helper()
	return f.registerOn(t, &metadata.Network{Identify: func(local, remote netip.AddrPort) (string, error) { return id.Key, nil }}, id)
}

func (f *fixture) registerOn(t *testing.T, n *metadata.Network, id metadata.Identity) *metadata.Registration {
	t.Helper()
	reg, err := f.md.Register(n, id)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// refusing is a network that identifies no peer.
func refusing(err error) *metadata.Network {
	return &metadata.Network{Identify: func(local, remote netip.AddrPort) (string, error) { return "", err }}
}

// from is an HTTP client whose connections come from the loopback address ip.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// verify checks an identity token for email and audience.
func (f *fixture) verify(t *testing.T, tok, email, aud string) *authn.Identity {
	t.Helper()
	id, err := f.ver.Verify(strings.TrimSpace(tok))
	if err != nil {
		t.Fatalf("token does not verify: %v (%q)", err, tok)
	}
	if id.Email != email || !id.EmailVerified || !id.HasAudience(aud) || len(id.Audience) != 1 {
		t.Fatalf("token for %q aud %v (verified %v), want %q aud %q", id.Email, id.Audience, id.EmailVerified, email, aud)
	}
	if life := id.Expiry.Sub(id.IssuedAt); life > issuer.MaxTokenLifetime {
		t.Fatalf("token lives %v", life)
	}
	return id
}

type response struct {
	status int
	header http.Header
	body   string
}

var flavor = http.Header{"Metadata-Flavor": {"Google"}}

// get requests path on host with the given headers over a fresh connection.
func get(t *testing.T, host, path string, h http.Header) response {
	t.Helper()
	return do(t, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, http.MethodGet, host, path, h)
}

func do(t *testing.T, c *http.Client, method, host, path string, h http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Header.Get("Metadata-Flavor"); got != "Google" {
		t.Errorf("%s %s: response Metadata-Flavor = %q, want Google", method, path, got)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func TestEndpoints(t *testing.T) {
	f := newFixture(t)
	reg := f.register(t, frontend())
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(reg.Host()) {
		t.Fatalf("Host() = %q, want 127.0.0.1:PORT", reg.Host())
	}
	num := apis.ProjectNumber(project)
	accountListing := "aliases\nemail\nidentity\nscopes\ntoken\n"
	for _, tc := range []struct{ path, want string }{
		{"/", "computeMetadata/\n"},
		{"/computeMetadata/", "v1/\n"},
		{v1, "instance/\nproject/\nuniverse/\n"},
		{"/computeMetadata/v1", "instance/\nproject/\nuniverse/\n"},
		{v1 + "project/", "numeric-project-id\nproject-id\n"},
		{v1 + "project/project-id", project},
		{v1 + "project/numeric-project-id", num},
		{v1 + "instance/", "id\nregion\nservice-accounts/\nzone\n"},
		{v1 + "instance/region", "projects/" + num + "/regions/" + region},
		{v1 + "instance/zone", "projects/" + num + "/zones/" + region + "-1"},
		{v1 + "instance/service-accounts/", "default/\n" + saEmail + "/\n"},
		{v1 + "instance/service-accounts", "default/\n" + saEmail + "/\n"},
		{v1 + "instance/service-accounts/default/", accountListing},
		{v1 + "instance/service-accounts/default", accountListing},
		{v1 + "instance/service-accounts/" + saEmail + "/", accountListing},
		{v1 + "instance/service-accounts/default/email", saEmail},
		{v1 + "instance/service-accounts/" + saEmail + "/email", saEmail},
		{v1 + "instance/service-accounts/default/aliases", "default\n"},
		{v1 + "instance/service-accounts/default/scopes", "https://www.googleapis.com/auth/cloud-platform\n"},
		{v1 + "universe/universe-domain", "googleapis.com"},
		{v1 + "project/project-id?alt=json", `"` + project + `"`},
		{v1 + "project/numeric-project-id?alt=json", num},
		{v1 + "project/?recursive=true", `{"numericProjectId":` + num + `,"projectId":"` + project + `"}`},
		{v1 + "instance/service-accounts/default/?recursive=true",
			`{"aliases":["default"],"email":"` + saEmail + `","scopes":["https://www.googleapis.com/auth/cloud-platform"]}`},
	} {
		r := get(t, reg.Host(), tc.path, flavor)
		if r.status != http.StatusOK || r.body != tc.want {
			t.Errorf("GET %s = %d %q, want 200 %q", tc.path, r.status, r.body, tc.want)
		}
	}

	r := get(t, reg.Host(), v1+"instance/id", flavor)
	if r.status != http.StatusOK || !regexp.MustCompile(`^[1-9]\d{18}$`).MatchString(r.body) {
		t.Errorf("instance/id = %d %q, want a 19-digit number", r.status, r.body)
	}
	if again := get(t, reg.Host(), v1+"instance/id", flavor); again.body != r.body {
		t.Errorf("instance/id changed: %q then %q", r.body, again.body)
	}

	r = get(t, reg.Host(), v1+"instance/service-accounts/?recursive=true", flavor)
	var sas map[string]struct {
		Aliases []string `json:"aliases"`
		Email   string   `json:"email"`
		Scopes  []string `json:"scopes"`
	}
	if err := json.Unmarshal([]byte(r.body), &sas); err != nil || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("service-accounts/?recursive=true: %v %q (%s)", err, r.body, r.header.Get("Content-Type"))
	}
	if len(sas) != 2 || sas["default"].Email != saEmail || sas[saEmail].Email != saEmail {
		t.Errorf("service-accounts/?recursive=true = %+v", sas)
	}
	r = get(t, reg.Host(), v1+"?recursive=true", flavor)
	var all struct {
		Instance struct {
			ID              json.Number `json:"id"`
			Region, Zone    string
			ServiceAccounts map[string]json.RawMessage `json:"serviceAccounts"`
		} `json:"instance"`
		Project struct {
			ProjectID        string      `json:"projectId"`
			NumericProjectID json.Number `json:"numericProjectId"`
		} `json:"project"`
	}
	if err := json.Unmarshal([]byte(r.body), &all); err != nil || all.Project.ProjectID != project ||
		all.Project.NumericProjectID.String() != num || all.Instance.Zone == "" || len(all.Instance.ServiceAccounts) != 2 {
		t.Errorf("?recursive=true = %v %s", err, r.body)
	}

	// Identity tokens, by alias and by email, standard and full.
	const aud = "https://backend-123.us-central1.run.localhost:8080"
	for _, path := range []string{
		v1 + "instance/service-accounts/default/identity?audience=" + url.QueryEscape(aud),
		v1 + "instance/service-accounts/default/identity?audience=" + url.QueryEscape(aud) + "&format=full",
		v1 + "instance/service-accounts/default/identity?audience=" + url.QueryEscape(aud) + "&format=full&licenses=TRUE",
		v1 + "instance/service-accounts/default/identity?format=standard&audience=" + url.QueryEscape(aud),
		v1 + "instance/service-accounts/" + saEmail + "/identity?audience=" + url.QueryEscape(aud),
	} {
		r := get(t, reg.Host(), path, flavor)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d %q", path, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("identity Content-Type = %q", ct)
		}
		id := f.verify(t, r.body, saEmail, aud)
		if id.Subject != saID {
			t.Errorf("identity sub = %q, want %q", id.Subject, saID)
		}
		if !id.IsIdentityToken() || id.HasAudience(issuer.AdminAudience) {
			t.Errorf("identity token looks like an access token: %+v", id)
		}
	}

	// Access tokens.
	for _, tc := range []struct{ query, scope string }{
		{"", "https://www.googleapis.com/auth/cloud-platform"},
		{"?scopes=https://www.googleapis.com/auth/userinfo.email,https://www.googleapis.com/auth/cloud-platform",
			"https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/cloud-platform"},
	} {
		r := get(t, reg.Host(), v1+"instance/service-accounts/default/token"+tc.query, flavor)
		var tok struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
			TokenType   string `json:"token_type"`
		}
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &tok) != nil {
			t.Fatalf("token%s = %d %q", tc.query, r.status, r.body)
		}
		if tok.TokenType != "Bearer" || tok.ExpiresIn <= 3500 || tok.ExpiresIn > 3600 {
			t.Errorf("token%s = %+v", tc.query, tok)
		}
		id := f.verify(t, tok.AccessToken, saEmail, issuer.AdminAudience)
		if id.Scope != tc.scope || id.TokenUse != "access" || id.Subject != saID {
			t.Errorf("access token scope %q use %q sub %q, want %q access %q", id.Scope, id.TokenUse, id.Subject, tc.scope, saID)
		}
	}

	// Errors.
	for _, tc := range []struct {
		path string
		code int
	}{
		{v1 + "instance/service-accounts/default/identity", http.StatusBadRequest},
		{v1 + "instance/service-accounts/default/identity?audience=", http.StatusBadRequest},
		{v1 + "instance/service-accounts/default/identity?audience=a&audience=b", http.StatusBadRequest},
		{v1 + "instance/service-accounts/default/identity?audience=a&format=compact", http.StatusBadRequest},
		{v1 + "instance/service-accounts/default/identity?audience=" + strings.Repeat("a", 3000), http.StatusBadRequest},
		{v1 + "project/project-id?wait_for_change=true", http.StatusBadRequest},
		{v1 + "instance/service-accounts/backend@local-project.iam.gserviceaccount.com/email", http.StatusNotFound},
		{v1 + "instance/service-accounts/backend@local-project.iam.gserviceaccount.com/identity?audience=a", http.StatusNotFound},
		{v1 + "instance/service-accounts/backend@local-project.iam.gserviceaccount.com/token", http.StatusNotFound},
		{v1 + "instance/service-accounts/default/nope", http.StatusNotFound},
		{v1 + "instance/hostname", http.StatusNotFound},
		{v1 + "project/project-id/more", http.StatusNotFound},
		{"/computeMetadata/v2/project/project-id", http.StatusNotFound},
		{"/computeMetadata/v1beta1/", http.StatusNotFound},
		{"/nope", http.StatusNotFound},
	} {
		if r := get(t, reg.Host(), tc.path, flavor); r.status != tc.code || r.body == "" {
			t.Errorf("GET %.120s = %d %q, want %d with a body", tc.path, r.status, r.body, tc.code)
		}
	}
	c := &http.Client{}
	if r := do(t, c, http.MethodPost, reg.Host(), v1+"project/project-id", flavor); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405", r.status)
	}
	if r := do(t, c, http.MethodHead, reg.Host(), v1+"project/project-id", flavor); r.status != http.StatusOK {
		t.Errorf("HEAD = %d, want 200", r.status)
	}
}

func TestRequiresMetadataFlavor(t *testing.T) {
	f := newFixture(t)
	reg := f.register(t, frontend())
	paths := []string{
		"/",
		v1,
		v1 + "project/project-id",
		v1 + "instance/region",
		v1 + "instance/service-accounts/default/email",
		v1 + "instance/service-accounts/default/identity?audience=https://x",
		v1 + "instance/service-accounts/default/token",
		"/nope",
	}
	for _, h := range []http.Header{
		{},
		{"Metadata-Flavor": {"google"}},
		{"Metadata-Flavor": {""}},
		{"Metadata-Flavor": {"Google", "Google"}},
		{"X-Google-Metadata-Request": {"True"}}, // the legacy header is not enough
		{"Metadata-Flavor": {"Google"}, "X-Forwarded-For": {"127.0.0.1"}},
		{"Metadata-Flavor": {"Google"}, "X-Forwarded-For": {""}},
	} {
		for _, p := range paths {
			r := get(t, reg.Host(), p, h)
			if r.status != http.StatusForbidden || strings.TrimSpace(r.body) == "" || strings.Contains(r.body, "eyJ") {
				t.Errorf("GET %s with %v = %d %q, want 403 with a plain body", p, h, r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("403 Content-Type = %q", ct)
			}
		}
	}
	if r := get(t, reg.Host(), v1+"project/project-id", flavor); r.status != http.StatusOK {
		t.Fatalf("with Metadata-Flavor: %d %q", r.status, r.body)
	}
}

func TestPeerRefused(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	var mu sync.Mutex
	var gotLocal, gotRemote netip.AddrPort
	refused := f.registerOn(t, &metadata.Network{Identify: func(local, remote netip.AddrPort) (string, error) {
		calls.Add(1)
		mu.Lock()
		gotLocal, gotRemote = local, remote
		mu.Unlock()
		return "", errors.New("not an instance Usher started")
	}}, frontend())
	panicky := f.registerOn(t, &metadata.Network{Identify: func(local, remote netip.AddrPort) (string, error) { panic("boom") }}, frontend())
	// A peer identified as an instance nobody registered (its revision
	// retired, say) is refused too.
	unregistered := f.registerOn(t, &metadata.Network{Identify: func(local, remote netip.AddrPort) (string, error) { return "p/r/gone-00001-abc", nil }}, frontend())

	for _, reg := range []*metadata.Registration{refused, panicky, unregistered} {
		for _, p := range []string{"/", v1 + "project/project-id", v1 + "instance/service-accounts/default/identity?audience=x", v1 + "instance/service-accounts/default/token"} {
			if r := get(t, reg.Host(), p, flavor); r.status != http.StatusForbidden || strings.Contains(r.body, "eyJ") {
				t.Errorf("%s: GET %s from a refused peer = %d %q, want 403", reg.Host(), p, r.status, r.body)
			}
		}
	}

	// Identify sees the connection as the server does, once per connection.
	calls.Store(0)
	var clientAddr netip.AddrPort
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			clientAddr = c.LocalAddr().(*net.TCPAddr).AddrPort()
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for range 3 {
		if r := do(t, c, http.MethodGet, refused.Host(), v1+"project/project-id", flavor); r.status != http.StatusForbidden {
			t.Fatalf("refused peer got %d", r.status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if gotLocal.String() != refused.Host() || gotRemote != clientAddr {
		t.Errorf("Identify(local %s, remote %s), want (%s, %s)", gotLocal, gotRemote, refused.Host(), clientAddr)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Identify called %d times for one keep-alive connection, want 1", n)
	}
}

// Two revisions' instances share one listener: each is answered as its own
// identity, and only as it.
func TestIdentitiesNeverAnswerAsEachOther(t *testing.T) {
	f := newFixture(t)
	aID := frontend()
	bID := metadata.Identity{
		Key:            "other-project/europe-west1/backend-00001-xyz",
		ServiceAccount: apis.DefaultServiceAccount("other-project"),
		ProjectID:      "other-project", Region: "europe-west1",
		Service: "backend", Revision: "backend-00001-xyz",
	}
	// Instances of a connect from 127.0.0.2, of b from 127.0.0.3.
	network := &metadata.Network{Identify: func(local, remote netip.AddrPort) (string, error) {
		switch remote.Addr().String() {
		case "127.0.0.2":
			return aID.Key, nil
		case "127.0.0.3":
			return bID.Key, nil
		}
		return "", errors.New("not an instance")
	}}
	a := f.registerOn(t, network, aID)
	b := f.registerOn(t, network, bID)
	if a.Host() != b.Host() {
		t.Fatalf("two identities of one network on two listeners: %s, %s", a.Host(), b.Host())
	}
	host := a.Host()
	fromA, fromB := from("127.0.0.2"), from("127.0.0.3")
	const aud = "https://svc.example"
	for _, tc := range []struct {
		c              *http.Client
		email, project string
		other          string
	}{
		{fromA, saEmail, project, bID.ServiceAccount},
		{fromB, bID.ServiceAccount, "other-project", saEmail},
	} {
		if r := do(t, tc.c, http.MethodGet, host, v1+"instance/service-accounts/default/email", flavor); r.body != tc.email {
			t.Errorf("email = %q, want %q", r.body, tc.email)
		}
		if r := do(t, tc.c, http.MethodGet, host, v1+"project/project-id", flavor); r.body != tc.project {
			t.Errorf("project = %q, want %q", r.body, tc.project)
		}
		r := do(t, tc.c, http.MethodGet, host, v1+"instance/service-accounts/default/identity?audience="+aud, flavor)
		f.verify(t, r.body, tc.email, aud)
		for _, leaf := range []string{"email", "identity?audience=" + aud, "token", ""} {
			if r := do(t, tc.c, http.MethodGet, host, v1+"instance/service-accounts/"+tc.other+"/"+leaf, flavor); r.status != http.StatusNotFound {
				t.Errorf("%s answered for the other account (%s): %d %q", tc.email, leaf, r.status, r.body)
			}
		}
		r = do(t, tc.c, http.MethodGet, host, v1+"instance/service-accounts/?recursive=true", flavor)
		if strings.Contains(r.body, tc.other) {
			t.Errorf("%s is listed the other account: %s", tc.email, r.body)
		}
	}
	// Any other peer gets nothing.
	if r := get(t, host, v1+"project/project-id", flavor); r.status != http.StatusForbidden {
		t.Errorf("an unidentified peer: %d %q, want 403", r.status, r.body)
	}
	// The default account (no UniqueID) uses its email as subject.
	r := do(t, fromB, http.MethodGet, host, v1+"instance/service-accounts/default/identity?audience="+aud, flavor)
	if id := f.verify(t, r.body, bID.ServiceAccount, aud); id.Subject != bID.ServiceAccount {
		t.Errorf("sub = %q, want the email", id.Subject)
	}
	if got := b.Identity().ProjectNumber; got != apis.ProjectNumber("other-project") {
		t.Errorf("default ProjectNumber = %q", got)
	}

	// Closing one ends only its identity; the listener stays for the other.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close() // idempotent
	if r := do(t, fromA, http.MethodGet, host, v1+"project/project-id", flavor); r.status != http.StatusForbidden {
		t.Errorf("a after its Close: %d %q, want 403", r.status, r.body)
	}
	if r := do(t, fromB, http.MethodGet, host, v1+"project/project-id", flavor); r.body != "other-project" {
		t.Errorf("b after closing a: %d %q", r.status, r.body)
	}
	// Server.Close closes the listener and refuses new registrations.
	f.md.Close()
	if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Server.Close", host)
	}
	if _, err := f.md.Register(network, frontend()); !errors.Is(err, metadata.ErrClosed) {
		t.Errorf("Register after Close: %v", err)
	}
}

func TestTokenCache(t *testing.T) {
	f := newFixture(t)
	reg := f.register(t, frontend())
	idPath := func(aud string) string {
		return v1 + "instance/service-accounts/default/identity?audience=" + url.QueryEscape(aud)
	}
	token := func(path string) string {
		t.Helper()
		r := get(t, reg.Host(), path, flavor)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d %q", path, r.status, r.body)
		}
		return r.body
	}
	t1 := token(idPath("https://a"))
	if t2 := token(idPath("https://a")); t2 != t1 {
		t.Error("identity token not reused right away")
	}
	// format=full yields the same token.
	if t2 := token(idPath("https://a") + "&format=full"); t2 != t1 {
		t.Error("format=full minted a new token")
	}
	tb := token(idPath("https://b"))
	if tb == t1 {
		t.Fatal("two audiences share a token")
	}
	f.verify(t, tb, saEmail, "https://b")
	f.clock.Advance(3 * time.Minute)
	if t2 := token(idPath("https://a")); t2 != t1 {
		t.Error("identity token not reused after 3 minutes")
	}
	// Libraries assume ~1h of life for an identity token they fetch: after 4
	// minutes a fresh one is minted, so every one served has ≥56 minutes.
	f.clock.Advance(time.Minute + time.Second)
	t3 := token(idPath("https://a"))
	if t3 == t1 {
		t.Error("identity token reused after 4 minutes")
	}
	if id := f.verify(t, t3, saEmail, "https://a"); id.Expiry.Sub(f.clock.Now()) < 56*time.Minute {
		t.Errorf("served identity token expires in %v", id.Expiry.Sub(f.clock.Now()))
	}

	// Access tokens are reused until 5 minutes before expiry, with a
	// decreasing expires_in.
	type access struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	at := func() access {
		t.Helper()
		var a access
		if err := json.Unmarshal([]byte(token(v1+"instance/service-accounts/default/token")), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a1 := at()
	f.clock.Advance(50 * time.Minute)
	a2 := at()
	if a2.AccessToken != a1.AccessToken || a2.ExpiresIn > a1.ExpiresIn-50*60+1 || a2.ExpiresIn < 5*60 {
		t.Errorf("after 50 min: reused %v, expires_in %d (was %d)", a2.AccessToken == a1.AccessToken, a2.ExpiresIn, a1.ExpiresIn)
	}
	f.verify(t, a2.AccessToken, saEmail, issuer.AdminAudience)
	f.clock.Advance(5*time.Minute + time.Second)
	a3 := at()
	if a3.AccessToken == a1.AccessToken || a3.ExpiresIn < 3500 {
		t.Errorf("near expiry: reused %v, expires_in %d", a3.AccessToken == a1.AccessToken, a3.ExpiresIn)
	}
	f.verify(t, a3.AccessToken, saEmail, issuer.AdminAudience)
}

func TestRegisterValidation(t *testing.T) {
	f := newFixture(t)
	for name, mut := range map[string]func(*metadata.Identity){
		"no key":             func(id *metadata.Identity) { id.Key = "" },
		"no account":         func(id *metadata.Identity) { id.ServiceAccount = "" },
		"account not email":  func(id *metadata.Identity) { id.ServiceAccount = "frontend" },
		"account with slash": func(id *metadata.Identity) { id.ServiceAccount = "a/b@c" },
		"no project":         func(id *metadata.Identity) { id.ProjectID = "" },
		"bad number":         func(id *metadata.Identity) { id.ProjectNumber = "12a" },
		"no region":          func(id *metadata.Identity) { id.Region = "" },
	} {
		id := frontend()
		mut(&id)
		if reg, err := f.md.Register(refusing(nil), id); err == nil {
			reg.Close()
			t.Errorf("%s: Register succeeded", name)
		}
	}
	for name, n := range map[string]*metadata.Network{"no network": nil, "no Identify": {}} {
		if reg, err := f.md.Register(n, frontend()); err == nil {
			reg.Close()
			t.Errorf("%s: Register succeeded", name)
		}
	}
	md := metadata.New(metadata.Config{Minter: f.iss, ListenHost: "localhost"})
	defer md.Close()
	if reg, err := md.Register(refusing(nil), frontend()); err == nil {
		reg.Close()
		t.Error("ListenHost localhost (not an IP) accepted")
	}
}

// isolateADC makes sure Google's libraries find no credentials file, so that
// they fall back to the metadata server as inside an instance.
func isolateADC(t *testing.T, host string) {
	dir := t.TempDir()
	t.Setenv("GCE_METADATA_HOST", host)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("HOME", dir)
	t.Setenv("CLOUDSDK_CONFIG", dir)
	t.Setenv("APPDATA", dir)
	t.Setenv("GOOGLE_API_GO_EXPERIMENTAL_ENABLE_NEW_AUTH_LIB", "")
}

func TestComputeMetadataLibrary(t *testing.T) {
	f := newFixture(t)
	reg := f.register(t, frontend())
	isolateADC(t, reg.Host())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c := gcemd.NewClient(&http.Client{})
	if !c.OnGCEWithContext(ctx) || !gcemd.OnGCE() {
		t.Fatal("OnGCE = false")
	}
	check := func(what, got string, err error, want string) {
		t.Helper()
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", what, got, err, want)
		}
	}
	p, err := c.ProjectIDWithContext(ctx)
	check("ProjectID", p, err, project)
	n, err := c.NumericProjectIDWithContext(ctx)
	check("NumericProjectID", n, err, apis.ProjectNumber(project))
	e, err := c.EmailWithContext(ctx, "")
	check("Email", e, err, saEmail)
	e, err = c.EmailWithContext(ctx, saEmail)
	check("Email(email)", e, err, saEmail)
	z, err := c.ZoneWithContext(ctx)
	check("Zone", z, err, region+"-1")
	r, err := c.GetWithContext(ctx, "instance/region")
	check("instance/region", r, err, "projects/"+apis.ProjectNumber(project)+"/regions/"+region)
	scopes, err := c.ScopesWithContext(ctx, "default")
	if err != nil || len(scopes) != 1 || scopes[0] != "https://www.googleapis.com/auth/cloud-platform" {
		t.Errorf("Scopes = %q, %v", scopes, err)
	}
	if id, err := c.InstanceIDWithContext(ctx); err != nil || id == "" {
		t.Errorf("InstanceID = %q, %v", id, err)
	}
	if _, err := c.GetWithContext(ctx, "instance/service-accounts/other@x.iam.gserviceaccount.com/email"); !errors.As(err, new(gcemd.NotDefinedError)) {
		t.Errorf("another account: %v, want NotDefinedError", err)
	}
	const aud = "https://backend-123.us-central1.run.localhost:8080"
	tok, err := c.GetWithContext(ctx, "instance/service-accounts/default/identity?audience="+url.QueryEscape(aud))
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	f.verify(t, tok, saEmail, aud)

	// A refused peer is an error for the library, not a token.
	refused := f.registerOn(t, refusing(errors.New("no")), frontend())
	t.Setenv("GCE_METADATA_HOST", refused.Host())
	_, err = c.GetWithContext(ctx, "instance/service-accounts/default/identity?audience=x")
	var me *gcemd.Error
	if !errors.As(err, &me) || me.Code != http.StatusForbidden {
		t.Errorf("refused peer: %v, want a 403 error", err)
	}
}

// backend is a private service as the gateway sees it: it accepts only
// identity tokens for its own URL, and says who called.
func backend(t *testing.T, f *fixture) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := authn.BearerToken(r.Header.Get("Authorization"))
		if !ok {
			http.Error(w, "no credentials", http.StatusUnauthorized)
			return
		}
		id, err := f.ver.Verify(tok)
		if err != nil || !id.HasAudience(srv.URL) {
			http.Error(w, fmt.Sprintf("invalid token: %v %v", err, id), http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s", id.Email)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestIDTokenLibrary(t *testing.T) {
	f := newFixture(t)
	reg := f.register(t, frontend())
	be := backend(t, f)
	for _, newAuth := range []string{"", "true"} {
		t.Run("new_auth_lib="+newAuth, func(t *testing.T) {
			isolateADC(t, reg.Host())
			t.Setenv("GOOGLE_API_GO_EXPERIMENTAL_ENABLE_NEW_AUTH_LIB", newAuth)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const aud = "https://backend-123.us-central1.run.localhost:8080"
			ts, err := idtoken.NewTokenSource(ctx, aud)
			if err != nil {
				t.Fatalf("idtoken.NewTokenSource: %v", err)
			}
			tok, err := ts.Token()
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			f.verify(t, tok.AccessToken, saEmail, aud)

			// A frontend calls the private backend with nothing but the
			// library.
			hc, err := idtoken.NewClient(ctx, be.URL)
			if err != nil {
				t.Fatalf("idtoken.NewClient: %v", err)
			}
			res, err := hc.Get(be.URL + "/hello")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || string(body) != "hello "+saEmail {
				t.Fatalf("backend answered %d %q", res.StatusCode, body)
			}
		})
	}
}
