package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/ratelimit"
)

// instanceAddr is where the test's "instance of Usher" connects from.
const instanceAddr = "127.77.0.9"

func newIngressGateway(t *testing.T, f *gatewayFixture, denials *[]gateway.Denial) *gateway.Gateway {
	t.Helper()
	proxies, err := ratelimit.ParseProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	internal, err := ratelimit.ParseCIDRs("--internal-cidrs", "192.168.5.0/24")
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		OnDenied:         func(d gateway.Denial) { *denials = append(*denials, d) },
		TrustedProxies:   proxies,
		InternalNetworks: internal,
		FromInstance: func(_ context.Context, a netip.Addr) bool {
			return a == netip.MustParseAddr(instanceAddr)
		},
	})
	public := gatewayFixturePolicy("roles/run.invoker", "allUsers")
	gw.SetTable(gatewayFixtureTable(
		gatewayFixtureService("open", nil, public),
		gatewayFixtureService("internal", map[string]string{apis.AnnotationIngress: apis.IngressInternal}, public),
		gatewayFixtureService("lb", map[string]string{apis.AnnotationIngress: apis.IngressInternalAndLB}, public),
		gatewayFixtureService("private-internal", map[string]string{apis.AnnotationIngress: apis.IngressInternal},
			gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA)),
	))
	return gw
}

// TestIngress: a service with internal ingress answers Usher's instances
// and the operator's internal networks; internal-and-cloud-load-balancing
// also its trusted proxies; everyone else gets 404 before authentication,
// whatever X-Forwarded-For says, and the refusal is explained to OnDenied.
func TestIngress(t *testing.T) {
	f := newGatewayFixture(t, false)
	var denials []gateway.Denial
	gw := newIngressGateway(t, f, &denials)
	tests := []struct {
		service, remote, xff string
		want                 int
	}{
		{"open", "203.0.113.7:1000", "", 200},
		{"internal", instanceAddr + ":1000", "", 200},
		{"internal", "192.168.5.20:1000", "", 200},
		{"internal", "203.0.113.7:1000", "", 404},
		{"internal", "[::ffff:192.168.5.20]:1000", "", 200}, // a v4-mapped peer is its v4 address
		// A trusted proxy is not internal for "internal", whoever it names.
		{"internal", "10.1.2.3:1000", "192.168.5.20", 404},
		{"internal", "10.1.2.3:1000", instanceAddr, 404},
		{"lb", "10.1.2.3:1000", "", 200},
		{"lb", instanceAddr + ":1000", "", 200},
		{"lb", "192.168.5.20:1000", "", 200},
		{"lb", "203.0.113.7:1000", "", 404},
		// The attacker's view: spoofing the forwarding headers from outside.
		{"lb", "203.0.113.7:1000", "10.1.2.3", 404},
		{"internal", "203.0.113.7:1000", "192.168.5.20, " + instanceAddr, 404},
		{"internal", "not-an-address", "", 404},
	}
	for _, tt := range tests {
		denials = nil
		w := anonymousRequest(gw, tt.service, tt.remote, tt.xff, "")
		if w.Code != tt.want {
			t.Errorf("%s from %s (X-Forwarded-For %q): status %d, want %d", tt.service, tt.remote, tt.xff, w.Code, tt.want)
			continue
		}
		if tt.want != 404 {
			continue
		}
		if len(denials) != 1 || denials[0].Status != 404 || denials[0].Target == nil || denials[0].Target.Service != tt.service ||
			!strings.Contains(denials[0].Reason, "ingress is "+apis.IngressInternal) || !strings.Contains(denials[0].Reason, tt.remote) {
			t.Errorf("%s from %s: denials %+v, want one 404 explaining the ingress", tt.service, tt.remote, denials)
		}
		if w.Header().Get("Www-Authenticate") != "" {
			t.Errorf("%s from %s: WWW-Authenticate %q on an ingress refusal, want none", tt.service, tt.remote, w.Header().Get("Www-Authenticate"))
		}
	}

	// Ingress comes before authentication: an outsider with a valid token
	// gets 404, an instance without one 401, and with one 200.
	tok := f.mint(t, gwFixSA, gatewayFixtureURL("private-internal"))
	for _, tt := range []struct {
		remote, authz string
		want          int
	}{
		{"203.0.113.7:1000", "Bearer " + tok, 404},
		{"203.0.113.7:1000", "", 404},
		{instanceAddr + ":1000", "", 401},
		{instanceAddr + ":1000", "Bearer " + tok, 200},
	} {
		if w := anonymousRequest(gw, "private-internal", tt.remote, "", tt.authz); w.Code != tt.want {
			t.Errorf("private-internal from %s (token %v): status %d, want %d", tt.remote, tt.authz != "", w.Code, tt.want)
		}
	}
	for _, d := range denials {
		if d.Status == 404 && d.Principal.Email != "" {
			t.Errorf("an ingress refusal names principal %v, want none (nothing was authenticated)", d.Principal)
		}
	}
}

// TestIngressForwardAuth: forward-auth subrequests are held to the
// service's ingress, judged by the subrequest's connection (the proxy's).
func TestIngressForwardAuth(t *testing.T) {
	f := newGatewayFixture(t, false)
	var denials []gateway.Denial
	gw := newIngressGateway(t, f, &denials)
	h := gw.ForwardAuth(gwFixDomain)
	for _, tt := range []struct {
		service, remote string
		want            int
	}{
		{"lb", "10.1.2.3:1000", 200},
		{"lb", "203.0.113.7:1000", 404},
		{"internal", "10.1.2.3:1000", 404},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://api"+gateway.ForwardAuthPath+gwFixProject+"/"+gwFixRegion+"/"+tt.service, nil)
		r.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("forward-auth %s from %s: status %d, want %d", tt.service, tt.remote, w.Code, tt.want)
		}
	}
	if len(denials) != 2 || !denials[0].ForwardAuth {
		t.Errorf("denials %+v, want two forward-auth refusals", denials)
	}
}

// TestIngressGuardsIAPPaths: the identity-aware proxy's sign-in paths on a
// service host are held to the service's ingress too.
func TestIngressGuardsIAPPaths(t *testing.T) {
	f := newGatewayFixture(t, false)
	var denials []gateway.Denial
	gw := newIngressGateway(t, f, &denials)
	signIn := gw.GuardIngress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "sign in") }))
	for _, tc := range []struct {
		service, remote string
		want            int
	}{
		{"internal", "203.0.113.7:1000", 404},
		{"internal", instanceAddr + ":1000", 200},
		{"open", "203.0.113.7:1000", 200},
		{"no-such-service", "203.0.113.7:1000", 200}, // the sign-in handler's to answer
	} {
		r := httptest.NewRequest(http.MethodGet, "http://"+gatewayFixtureHost(tc.service)+"/_gcp_iap/start", nil)
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		signIn.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("/_gcp_iap/ of %s from %s: %d, want %d", tc.service, tc.remote, w.Code, tc.want)
		}
	}
	if len(denials) != 1 {
		t.Errorf("denials %+v, want one", denials)
	}
}

// BenchmarkPublicInternalIngress is a public service with internal ingress
// called from an instance: the ingress check's share of the hot path.
func BenchmarkPublicInternalIngress(b *testing.B) {
	f := newGatewayFixture(b, false)
	instance := netip.MustParseAddr(instanceAddr)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		InternalNetworks: []netip.Prefix{netip.MustParsePrefix("192.168.5.0/24")},
		FromInstance:     func(_ context.Context, a netip.Addr) bool { return a == instance },
	})
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("internal", map[string]string{apis.AnnotationIngress: apis.IngressInternal},
		gatewayFixturePolicy("roles/run.invoker", "allUsers"))))
	req := newBenchRequest(gatewayFixtureHost("internal"), nil)
	req.RemoteAddr = instanceAddr + ":40000"
	benchRecorderLoop(b, gw, req, http.StatusOK)
}

// BenchmarkDenied404Ingress is an outsider refused by a service's internal
// ingress: the refusal's cost (its explanation is built for OnDenied).
func BenchmarkDenied404Ingress(b *testing.B) {
	f := newGatewayFixture(b, false)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		FromInstance: func(context.Context, netip.Addr) bool { return false },
	})
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("internal", map[string]string{apis.AnnotationIngress: apis.IngressInternal},
		gatewayFixturePolicy("roles/run.invoker", "allUsers"))))
	req := newBenchRequest(gatewayFixtureHost("internal"), nil)
	req.RemoteAddr = "203.0.113.7:40000"
	benchRecorderLoop(b, gw, req, http.StatusNotFound)
}
