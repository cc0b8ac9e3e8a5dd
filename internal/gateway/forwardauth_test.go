package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/gateway"
)

// forwardAuthDo sends one forward-auth request for service, as a proxy
// would: to the endpoint's path on an API host, the original headers kept.
func forwardAuthDo(gw *gateway.Gateway, method, path string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:8080"+path, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	gw.ForwardAuth(gwFixDomain).ServeHTTP(w, r)
	return w
}

func forwardAuthPath(service string) string {
	return gateway.ForwardAuthPath + gwFixProject + "/" + gwFixRegion + "/" + service
}

// TestForwardAuthDecidesAsTheGateway: for every credential case, the
// endpoint answers what the gateway answers for the same service, with the
// principal on 200 and never the service's body.
func TestForwardAuthDecidesAsTheGateway(t *testing.T) {
	f := newGatewayFixture(t, true)
	invoker := "roles/run.invoker"
	var (
		mu      sync.Mutex
		denials []gateway.Denial
	)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		OnDenied: func(d gateway.Denial) { mu.Lock(); denials = append(denials, d); mu.Unlock() },
	})
	gw.SetTable(gatewayFixtureTable(
		gatewayFixtureService("private", nil, gatewayFixturePolicy(invoker, "serviceAccount:"+gwFixSA, "user:"+gwFixUser)),
		gatewayFixtureService("custom", map[string]string{apis.AnnotationCustomAudiences: `["https://app.example.com"]`},
			gatewayFixturePolicy(invoker, "serviceAccount:"+gwFixSA)),
		gatewayFixtureService("unbound", nil, nil),
		gatewayFixtureService("public", nil, gatewayFixturePolicy(invoker, "allUsers")),
		gatewayFixtureService("noiam", map[string]string{apis.AnnotationInvokerIAMDisabled: "True"}, nil),
	))
	bearer := func(tok string) string { return "Bearer " + tok }
	privateURL := gatewayFixtureURL("private")
	cases := []struct {
		name, service string
		header        map[string]string
		wantStatus    int
		wantPrincipal string
	}{
		{"no credentials", "private", nil, 401, ""},
		{"garbage token", "private", map[string]string{"Authorization": "Bearer garbage"}, 401, ""},
		{"wrong audience", "private", map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, gatewayFixtureURL("unbound")))}, 401, ""},
		{"service account granted", "private", map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, privateURL))}, 200, "serviceAccount:" + gwFixSA},
		{"X-Serverless-Authorization wins", "private", map[string]string{
			"X-Serverless-Authorization": bearer(f.mint(t, gwFixSA, privateURL)), "Authorization": "Bearer garbage"}, 200, "serviceAccount:" + gwFixSA},
		{"user CLI token", "private", map[string]string{"Authorization": bearer(f.mint(t, gwFixUser, gwFixCLIAudience))}, 200, "user:" + gwFixUser},
		{"custom audience (the upstream's URL)", "custom", map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, "https://app.example.com"))}, 200, "serviceAccount:" + gwFixSA},
		{"no binding", "unbound", map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, gatewayFixtureURL("unbound")))}, 403, ""},
		{"allUsers", "public", nil, 200, ""},
		{"invoker check disabled", "noiam", nil, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hits := f.backendHits.Load()
			fa := forwardAuthDo(gw, http.MethodGet, forwardAuthPath(tc.service), tc.header)
			viaGateway := gatewayFixtureDo(gw, gatewayFixtureHost(tc.service), tc.header)
			if fa.Code != tc.wantStatus || viaGateway.Code != tc.wantStatus {
				t.Fatalf("forward-auth %d, gateway %d, want both %d (forward-auth body %q)", fa.Code, viaGateway.Code, tc.wantStatus, fa.Body.String())
			}
			if got, want := fa.Header().Get("Www-Authenticate"), viaGateway.Header().Get("Www-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate: forward-auth %q, gateway %q", got, want)
			}
			if got := fa.Header().Get(gateway.HeaderPrincipal); got != tc.wantPrincipal {
				t.Errorf("%s = %q, want %q", gateway.HeaderPrincipal, got, tc.wantPrincipal)
			}
			if tc.wantStatus == 200 && fa.Body.Len() != 0 {
				t.Errorf("forward-auth 200 body %q, want empty", fa.Body.String())
			}
			if want := int64(0); tc.wantStatus == 200 {
				want = 1 // the gateway's request only
				if got := f.backendHits.Load() - hits; got != want {
					t.Errorf("backend hits %d, want %d: forward-auth must never proxy", got, want)
				}
			}
		})
	}

	t.Run("refusals reach OnDenied marked, with the upstream's host", func(t *testing.T) {
		mu.Lock()
		denials = nil
		mu.Unlock()
		forwardAuthDo(gw, http.MethodPost, forwardAuthPath("private")+"/any/original/path", map[string]string{"X-Forwarded-Host": "app.example.com"})
		mu.Lock()
		defer mu.Unlock()
		if len(denials) != 1 || !denials[0].ForwardAuth || denials[0].Host != "app.example.com" || denials[0].Status != 401 ||
			denials[0].Target == nil || denials[0].Target.Service != "private" {
			t.Fatalf("denials %+v, want one 401 for private, ForwardAuth, host app.example.com", denials)
		}
	})

	t.Run("paths", func(t *testing.T) {
		ok := map[string]string{"Authorization": bearer(f.mint(t, gwFixSA, privateURL))}
		for _, tc := range []struct {
			path string
			want int
		}{
			{forwardAuthPath("private") + "/envoy/appends/the/path", 200},
			{forwardAuthPath("nosuchservice"), 404},
			{gateway.ForwardAuthPath + gwFixProject + "/" + gwFixRegion, 404},
			{gateway.ForwardAuthPath + "other-project/" + gwFixRegion + "/private", 404},
			{gateway.ForwardAuthPath + gwFixProject + "/" + gwFixRegion + "/private.evil", 404},
		} {
			if w := forwardAuthDo(gw, http.MethodGet, tc.path, ok); w.Code != tc.want {
				t.Errorf("%s: got %d, want %d", tc.path, w.Code, tc.want)
			}
		}
	})

	t.Run("no table fails closed", func(t *testing.T) {
		empty := gateway.New(gateway.Config{Verifier: f.verifier, Instances: f.instances})
		if w := forwardAuthDo(empty, http.MethodGet, forwardAuthPath("public"), nil); w.Code != 503 {
			t.Errorf("got %d, want 503", w.Code)
		}
	})
}
