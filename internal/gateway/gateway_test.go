package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/store/bolt"
)

// The gateway fixture below is shared by the tests in this file and the
// benchmarks in gateway_bench_test.go. Its identifiers all start with
// gatewayFixture / gwFix so that tests added here later do not collide.

// Fixture constants: the names `usher serve` uses by default.
const (
	gwFixIssuerURL   = "http://localhost:8080"
	gwFixProject     = "local-project"
	gwFixRegion      = "us-central1"
	gwFixDomain      = "run.localhost"
	gwFixPort        = "8080"
	gwFixCLIAudience = "usher-cli" // api.CLIClientID, not imported to keep the gateway tests light
	gwFixSA          = "invoker@local-project.iam.gserviceaccount.com"
	gwFixUser        = "alice@example.com"
	gwFixBackendBody = "Hello World!\n"
)

// gatewayFixture is a real issuer (keys in a bolt store), a real verifier and
// a real HTTP backend standing in for an instance.
type gatewayFixture struct {
	iss      *issuer.Issuer
	verifier *authn.Verifier
	backend  *httptest.Server
	// instances always answers with the backend's address.
	instances gwFixInstances

	// record makes the backend keep the headers of the last request it got.
	record      bool
	backendHits atomic.Int64
	mu          sync.Mutex
	lastHeader  http.Header
}

// gwFixInstances is a gateway.Instances with one running instance.
type gwFixInstances struct{ addr string }

func (i gwFixInstances) Acquire(context.Context, string, *apis.Revision) (gateway.Lease, error) {
	return gwFixLease(i.addr), nil
}

// gwFixLease is a slot on the fixture's backend; releasing it is free.
type gwFixLease string

func (l gwFixLease) Addr() string { return string(l) }
func (gwFixLease) Release()       {}

// newGatewayFixture starts the backend and the issuer. With record, the
// backend remembers each request's headers (tests); without, it only answers
// (benchmarks).
func newGatewayFixture(tb testing.TB, record bool) *gatewayFixture {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "usher.db"))
	if err != nil {
		tb.Fatalf("bolt.Open: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	iss, err := issuer.New(context.Background(), st, issuer.Config{URL: gwFixIssuerURL})
	if err != nil {
		tb.Fatalf("issuer.New: %v", err)
	}
	f := &gatewayFixture{
		iss:      iss,
		verifier: authn.New(authn.Config{Issuer: gwFixIssuerURL, Keys: iss}),
		record:   record,
	}
	f.backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.record {
			f.backendHits.Add(1)
			f.mu.Lock()
			f.lastHeader = r.Header.Clone()
			f.mu.Unlock()
		}
		io.WriteString(w, gwFixBackendBody)
	}))
	tb.Cleanup(f.backend.Close)
	f.instances = gwFixInstances{addr: strings.TrimPrefix(f.backend.URL, "http://")}
	return f
}

// newGateway returns a gateway wired like internal/server wires it (without a
// table).
func (f *gatewayFixture) newGateway() *gateway.Gateway {
	return gateway.New(gateway.Config{
		Verifier:    f.verifier,
		Instances:   f.instances,
		CLIAudience: gwFixCLIAudience,
	})
}

// mint returns an identity token for email with the given audiences.
func (f *gatewayFixture) mint(tb testing.TB, email string, aud ...string) string {
	tb.Helper()
	tok, err := f.iss.Mint(issuer.Claims{Subject: "sub-" + email, Email: email, EmailVerified: true, Audience: aud})
	if err != nil {
		tb.Fatalf("Mint: %v", err)
	}
	return tok
}

// backendHeader returns the headers of the last request the backend got.
func (f *gatewayFixture) backendHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastHeader
}

// gatewayFixtureHost is the Host header a client sends to the service.
func gatewayFixtureHost(name string) string {
	return apis.ServiceHost(name, gwFixProject, gwFixRegion, gwFixDomain) + ":" + gwFixPort
}

// gatewayFixtureURL is the service's URL, its default token audience.
func gatewayFixtureURL(name string) string {
	return apis.ServiceURL("http", name, gwFixProject, gwFixRegion, gwFixDomain, gwFixPort)
}

// gatewayFixturePolicy binds role to members.
func gatewayFixturePolicy(role string, members ...string) *iam.Policy {
	return &iam.Policy{Version: iam.Version1, Bindings: []iam.Binding{{Role: role, Members: members}}}
}

// gatewayFixtureService is one ready service with its revision, shaped the way
// internal/server's routingState builds it from the store.
func gatewayFixtureService(name string, annotations map[string]string, policy *iam.Policy) routing.ServiceState {
	rev := name + "-00001-abc"
	svc := &apis.Service{
		APIVersion: apis.ServingAPIVersion,
		Kind:       apis.KindService,
		Metadata: apis.ObjectMeta{
			Name:        name,
			Namespace:   gwFixProject,
			Annotations: annotations,
			Labels:      map[string]string{apis.LabelLocation: gwFixRegion},
		},
		Status: apis.ServiceStatus{
			LatestReadyRevisionName:   rev,
			LatestCreatedRevisionName: rev,
			URL:                       gatewayFixtureURL(name),
		},
	}
	r := &apis.Revision{
		APIVersion: apis.ServingAPIVersion,
		Kind:       apis.KindRevision,
		Metadata: apis.ObjectMeta{
			Name:      rev,
			Namespace: gwFixProject,
			Labels: map[string]string{
				apis.LabelService:       name,
				apis.LabelConfiguration: name,
				apis.LabelLocation:      gwFixRegion,
			},
		},
	}
	return routing.ServiceState{
		Project:   gwFixProject,
		Region:    gwFixRegion,
		Service:   svc,
		Revisions: map[string]*apis.Revision{rev: r},
		Policy:    policy,
	}
}

// gatewayFixtureTable builds a routing table the way the server does.
func gatewayFixtureTable(services ...routing.ServiceState) *routing.Table {
	return routing.Build(routing.State{
		Services:        services,
		ProjectPolicies: map[string]*iam.Policy{},
		Roles:           iam.Predefined(),
		Domain:          gwFixDomain,
		Scheme:          "http",
		Port:            gwFixPort,
		Revision:        1,
	})
}

// gatewayFixtureDo sends one request through ServeHTTP.
func gatewayFixtureDo(gw http.Handler, host string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)
	r.Host = host
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, r)
	return w
}

// TestGatewayDecisions drives every route → authn → authz outcome through
// ServeHTTP with a real issuer, verifier and backend.
func TestGatewayDecisions(t *testing.T) {
	f := newGatewayFixture(t, true)
	invoker := "roles/run.invoker"
	table := gatewayFixtureTable(
		gatewayFixtureService("private", nil,
			gatewayFixturePolicy(invoker, "serviceAccount:"+gwFixSA, "user:"+gwFixUser)),
		gatewayFixtureService("custom",
			map[string]string{apis.AnnotationCustomAudiences: `["https://my-aud"]`},
			gatewayFixturePolicy(invoker, "serviceAccount:"+gwFixSA)),
		gatewayFixtureService("unbound", nil, nil),
		gatewayFixtureService("public", nil, gatewayFixturePolicy(invoker, "allUsers")),
		gatewayFixtureService("noiam", map[string]string{apis.AnnotationInvokerIAMDisabled: "True"}, nil),
		gatewayFixtureService("noiammixed", map[string]string{apis.AnnotationInvokerIAMDisabled: "tRuE"}, nil),
		gatewayFixtureService("noiamfalse", map[string]string{apis.AnnotationInvokerIAMDisabled: "False"}, nil),
	)

	bearer := func(tok string) string { return "Bearer " + tok }
	privateURL := gatewayFixtureURL("private")
	customURL := gatewayFixtureURL("custom")
	saPrivate := f.mint(t, gwFixSA, privateURL)
	tampered := saPrivate[:len(saPrivate)-4] + "AAAA"
	if tampered == saPrivate {
		tampered = saPrivate[:len(saPrivate)-4] + "BBBB"
	}
	tagURL := "http://tag---" + strings.TrimPrefix(customURL, "http://")

	const (
		noChallenge = ""
		challenge   = `Bearer`
		invalid     = `Bearer error="invalid_token"`
	)
	cases := []struct {
		name        string
		noTable     bool
		service     string // "" with host set: an unknown host
		host        string
		header      map[string]string
		wantStatus  int
		wantWWWAuth string
	}{
		{name: "no table is 503", noTable: true, service: "private",
			header: map[string]string{"Authorization": bearer(saPrivate)}, wantStatus: 503},
		{name: "unknown host is 404", host: gatewayFixtureHost("nosuchservice"),
			header: map[string]string{"Authorization": bearer(saPrivate)}, wantStatus: 404},
		{name: "private without credentials is 401 with a Bearer challenge", service: "private",
			wantStatus: 401, wantWWWAuth: challenge},
		{name: "garbage bearer token is 401 invalid_token", service: "private",
			header: map[string]string{"Authorization": "Bearer not.a.token"}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "non-bearer credentials are 401 invalid_token", service: "private",
			header: map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "tampered signature is 401 invalid_token", service: "private",
			header: map[string]string{"Authorization": bearer(tampered)}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "wrong audience is 401", service: "private",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, customURL))}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "service URL audience is 200", service: "private",
			header: map[string]string{"Authorization": bearer(saPrivate)}, wantStatus: 200},
		{name: "service URL with trailing slash audience is 200", service: "private",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, privateURL+"/"))}, wantStatus: 200},
		{name: "custom audience is 200", service: "custom",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, "https://my-aud"))}, wantStatus: 200},
		{name: "service URL still accepted beside custom audiences", service: "custom",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, customURL))}, wantStatus: 200},
		{name: "tag URL audience is 401", service: "custom",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, tagURL))}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "service URL plus path audience is 401", service: "custom",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, customURL+"/path"))}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "custom audience plus path is 401", service: "custom",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, "https://my-aud/path"))}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "CLI audience for a bound user is 200", service: "private",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixUser, gwFixCLIAudience))}, wantStatus: 200},
		{name: "CLI audience for a bound service account is 401", service: "private",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, gwFixCLIAudience))}, wantStatus: 401, wantWWWAuth: invalid},
		{name: "CLI audience for an unbound user is 403", service: "unbound",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixUser, gwFixCLIAudience))}, wantStatus: 403},
		{name: "valid token without a binding is 403", service: "unbound",
			header: map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, gatewayFixtureURL("unbound")))}, wantStatus: 403},
		{name: "allUsers is 200 without a token", service: "public", wantStatus: 200},
		{name: "allUsers is 200 with a garbage token", service: "public",
			header: map[string]string{"Authorization": "Bearer garbage"}, wantStatus: 200},
		{name: "invoker IAM disabled (True) is 200 without a token", service: "noiam", wantStatus: 200},
		{name: "invoker IAM disabled (tRuE) is 200 without a token", service: "noiammixed", wantStatus: 200},
		{name: "invoker IAM disabled False stays private", service: "noiamfalse", wantStatus: 401, wantWWWAuth: challenge},
		{name: "valid X-Serverless-Authorization wins over garbage Authorization", service: "private",
			header: map[string]string{
				"X-Serverless-Authorization": bearer(saPrivate),
				"Authorization":              "Bearer garbage",
			}, wantStatus: 200},
		{name: "garbage X-Serverless-Authorization wins over valid Authorization", service: "private",
			header: map[string]string{
				"X-Serverless-Authorization": "Bearer garbage",
				"Authorization":              bearer(saPrivate),
			}, wantStatus: 401, wantWWWAuth: invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := f.newGateway()
			if !tc.noTable {
				gw.SetTable(table)
			}
			host := tc.host
			if host == "" {
				host = gatewayFixtureHost(tc.service)
			}
			hitsBefore := f.backendHits.Load()
			w := gatewayFixtureDo(gw, host, tc.header)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", w.Code, tc.wantStatus, w.Body.String())
			}
			if got := w.Header().Get("Www-Authenticate"); got != tc.wantWWWAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantWWWAuth)
			}
			hits := f.backendHits.Load() - hitsBefore
			if tc.wantStatus == http.StatusOK {
				if hits != 1 {
					t.Errorf("backend hits = %d, want 1", hits)
				}
				if got := w.Body.String(); got != gwFixBackendBody {
					t.Errorf("body = %q, want %q", got, gwFixBackendBody)
				}
			} else if hits != 0 {
				t.Errorf("backend hits = %d, want 0: a refused request reached the instance", hits)
			}
		})
	}
}

// TestGatewayServerlessAuthorizationForwarding checks what reaches the
// instance when both credential headers are present: Authorization untouched,
// X-Serverless-Authorization with its signature removed.
func TestGatewayServerlessAuthorizationForwarding(t *testing.T) {
	f := newGatewayFixture(t, true)
	gw := f.newGateway()
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("private", nil,
		gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA))))
	tok := f.mint(t, gwFixSA, gatewayFixtureURL("private"))
	const appAuth = "Bearer app-level-garbage"

	w := gatewayFixtureDo(gw, gatewayFixtureHost("private"), map[string]string{
		"X-Serverless-Authorization": "Bearer " + tok,
		"Authorization":              appAuth,
	})
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", w.Code, w.Body.String())
	}
	h := f.backendHeader()
	if got := h.Get("Authorization"); got != appAuth {
		t.Errorf("forwarded Authorization = %q, want %q (unaltered)", got, appAuth)
	}
	wantXSA := "Bearer " + tok[:strings.LastIndexByte(tok, '.')+1] + "SIGNATURE_REMOVED_BY_GOOGLE"
	if got := h.Get("X-Serverless-Authorization"); got != wantXSA {
		t.Errorf("forwarded X-Serverless-Authorization = %q, want %q", got, wantXSA)
	}
}

// TestGatewayTableSwapNextRequest checks that SetTable takes effect on the
// very next request, in both directions.
func TestGatewayTableSwapNextRequest(t *testing.T) {
	f := newGatewayFixture(t, true)
	gw := f.newGateway()
	host := gatewayFixtureHost("svc")
	private := gatewayFixtureTable(gatewayFixtureService("svc", nil, nil))
	public := gatewayFixtureTable(gatewayFixtureService("svc", nil, gatewayFixturePolicy("roles/run.invoker", "allUsers")))
	empty := gatewayFixtureTable()

	steps := []struct {
		name  string
		table *routing.Table
		want  int
	}{
		{"private", private, http.StatusUnauthorized},
		{"made public", public, http.StatusOK},
		{"made private again", private, http.StatusUnauthorized},
		{"deleted", empty, http.StatusNotFound},
		{"restored public", public, http.StatusOK},
	}
	for _, s := range steps {
		gw.SetTable(s.table)
		if got := gatewayFixtureDo(gw, host, nil).Code; got != s.want {
			t.Fatalf("after SetTable(%s): status = %d, want %d", s.name, got, s.want)
		}
	}
}

// TestGatewayPublicForwardsCredentialsUntouched checks that a public service
// gets the caller's credentials as sent: no verification, no stripping.
func TestGatewayPublicForwardsCredentialsUntouched(t *testing.T) {
	f := newGatewayFixture(t, true)
	gw := f.newGateway()
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("public", nil,
		gatewayFixturePolicy("roles/run.invoker", "allUsers"))))
	tok := f.mint(t, gwFixSA, gatewayFixtureURL("public"))
	sent := map[string]string{
		"Authorization":              "Bearer " + tok,
		"X-Serverless-Authorization": "Bearer " + tok,
	}
	w := gatewayFixtureDo(gw, gatewayFixtureHost("public"), sent)
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", w.Code, w.Body.String())
	}
	h := f.backendHeader()
	for k, want := range sent {
		if got := h.Get(k); got != want {
			t.Errorf("forwarded %s = %q, want %q (untouched)", k, got, want)
		}
	}
}

// TestGatewayStreamsUnsizedResponses checks that a response without a
// Content-Length (chunked, server-sent events) reaches the client as the
// instance writes it, not when it ends. It guards the proxy's flush settings.
func TestGatewayStreamsUnsizedResponses(t *testing.T) {
	f := newGatewayFixture(t, false)
	for _, contentType := range []string{"text/plain; charset=utf-8", "text/event-stream"} {
		t.Run(contentType, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", contentType)
				io.WriteString(w, "first\n")
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				case <-time.After(10 * time.Second):
				}
				io.WriteString(w, "second\n")
			}))
			defer instance.Close()

			gw := gateway.New(gateway.Config{
				Verifier:  f.verifier,
				Instances: gwFixInstances{addr: strings.TrimPrefix(instance.URL, "http://")},
			})
			gw.SetTable(gatewayFixtureTable(gatewayFixtureService("stream", nil,
				gatewayFixturePolicy("roles/run.invoker", "allUsers"))))
			front := httptest.NewServer(gw)
			defer front.Close()
			defer unblock() // runs first: lets the instance answer so both Closes return

			req, err := http.NewRequest(http.MethodGet, front.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = gatewayFixtureHost("stream")
			// The client gets the headers and the first line while the
			// instance is still blocked; it is released only afterwards.
			type result struct {
				resp  *http.Response
				br    *bufio.Reader
				first string
				err   error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := front.Client().Do(req)
				if err != nil {
					done <- result{err: err}
					return
				}
				br := bufio.NewReader(resp.Body)
				line, err := br.ReadString('\n')
				done <- result{resp: resp, br: br, first: line, err: err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("headers and first line did not arrive while the instance was still writing: the gateway buffers unsized responses")
			}
			if res.resp != nil {
				defer res.resp.Body.Close()
			}
			if res.err != nil {
				t.Fatalf("request: %v", res.err)
			}
			if res.resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.resp.StatusCode)
			}
			if res.first != "first\n" {
				t.Fatalf("first line = %q, want %q", res.first, "first\n")
			}
			br := res.br
			unblock()
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("reading the rest: %v", err)
			}
			if string(rest) != "second\n" {
				t.Errorf("rest = %q, want %q", rest, "second\n")
			}
		})
	}
}

// TestGatewayStripsHeaderAliases: an app that folds "_" and "." into "-"
// (CGI, WSGI, nginx, PHP) must not read a client's alias as an identity or
// forwarding header the gateway removed.
func TestGatewayStripsHeaderAliases(t *testing.T) {
	f := newGatewayFixture(t, true)
	gw := f.newGateway()
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("private", nil,
		gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA))))
	tok := f.mint(t, gwFixSA, gatewayFixtureURL("private"))
	aliases := []string{
		"X_Goog_Authenticated_User_Email", "X.Goog.Authenticated.User.Email",
		"x_goog_authenticated_user_id", "X_Goog_Iap_Jwt_Assertion",
		"x_serverless_authorization", "X.Serverless.Authorization",
		"X_Forwarded_For", "X.Forwarded.Host", "X_Forwarded_Proto", "X_Forwarded_Port",
		"X_Real_IP", "X_Usher_Principal", "X-Forwarded_For",
	}
	header := map[string]string{"X-Serverless-Authorization": "Bearer " + tok, "X_Custom": "kept"}
	for _, a := range aliases {
		header[a] = "evil@x.com"
	}
	if w := gatewayFixtureDo(gw, gatewayFixtureHost("private"), header); w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", w.Code, w.Body.String())
	}
	h := f.backendHeader()
	for k, v := range h {
		if strings.ContainsAny(k, "_.") && k != "X_custom" {
			t.Errorf("backend got %s: %q, want no alias of a stripped header", k, v)
		}
	}
	if got := h.Get("X_Custom"); got != "kept" {
		t.Errorf("backend got X_Custom %q, want %q (an unrelated header is kept)", got, "kept")
	}
}
