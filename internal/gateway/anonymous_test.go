package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/ratelimit"
)

// anonymousRequest sends one request from remote (host:port) with optional
// X-Forwarded-For and Authorization.
func anonymousRequest(gw http.Handler, service, remote, xff, authz string) *httptest.ResponseRecorder {
	host := gatewayFixtureHost(service)
	r := httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)
	r.Host = host
	r.RemoteAddr = remote
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, r)
	return w
}

// TestAnonymousRateLimit: a public service's anonymous callers are held to
// the annotation's per-address rate (429 with Retry-After), each address
// has its own bucket, a caller with a valid token and a binding of its own
// is not limited, a forged token counts as anonymous, and X-Forwarded-For
// is believed only from a trusted proxy.
func TestAnonymousRateLimit(t *testing.T) {
	f := newGatewayFixture(t, false)
	var denials []gateway.Denial
	proxies, err := ratelimit.ParseProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		OnDenied:       func(d gateway.Denial) { denials = append(denials, d) },
		TrustedProxies: proxies,
		Now:            func() time.Time { return now },
	})
	limited := map[string]string{apis.AnnotationInvokerIAMDisabled: "true", apis.AnnotationAnonymousRateLimit: "0.5,burst=2"}
	// The invoker check is off, yet the service account's own binding still
	// sets it apart from anonymous callers.
	granted := gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA)
	gw.SetTable(gatewayFixtureTable(
		gatewayFixtureService("limited", limited, granted),
		gatewayFixtureService("open", map[string]string{apis.AnnotationInvokerIAMDisabled: "true"}, nil),
	))

	for i := range 2 {
		if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", ""); w.Code != 200 {
			t.Fatalf("request %d within the burst: status %d, want 200", i, w.Code)
		}
	}
	w := anonymousRequest(gw, "limited", "198.51.100.1:1001", "", "")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("request past the burst: status %d, want 429", w.Code)
	}
	secs, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if err != nil || secs < 1 || secs > 2 {
		t.Errorf("Retry-After = %q, want whole seconds in [1,2] at 0.5 rps", w.Header().Get("Retry-After"))
	}
	if len(denials) != 1 || denials[0].Status != 429 || denials[0].Reason != gateway.ReasonAnonymousRateLimit ||
		denials[0].Target == nil || denials[0].Target.Service != "limited" || denials[0].Client != "198.51.100.1" {
		t.Errorf("denials = %+v, want one 429 for limited from 198.51.100.1", denials)
	}

	// Another address has its own bucket; a service without a limit has none.
	if w := anonymousRequest(gw, "limited", "198.51.100.2:1000", "", ""); w.Code != 200 {
		t.Errorf("second address: status %d, want 200", w.Code)
	}
	for range 5 {
		if w := anonymousRequest(gw, "open", "198.51.100.1:1000", "", ""); w.Code != 200 {
			t.Fatalf("unlimited service: status %d, want 200", w.Code)
		}
	}

	// A granted caller is not limited; a forged token is anonymous.
	tok := f.mint(t, gwFixSA, gatewayFixtureURL("limited"))
	for range 5 {
		if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", "Bearer "+tok); w.Code != 200 {
			t.Fatalf("authenticated caller: status %d, want 200", w.Code)
		}
	}
	forged := tok[:len(tok)-4] + "AAAA"
	if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", "Bearer "+forged); w.Code != 429 {
		t.Errorf("forged token: status %d, want 429", w.Code)
	}
	wrongAud := f.mint(t, gwFixSA, gatewayFixtureURL("open"))
	if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", "Bearer "+wrongAud); w.Code != 429 {
		t.Errorf("token for another service: status %d, want 429", w.Code)
	}

	// X-Forwarded-For from an untrusted peer is ignored: the spoofer stays
	// charged to its own, exhausted, address.
	if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "203.0.113.50", ""); w.Code != 429 {
		t.Errorf("spoofed X-Forwarded-For: status %d, want 429", w.Code)
	}
	// Through a trusted proxy, each client has its own bucket.
	for i := range 2 {
		if w := anonymousRequest(gw, "limited", "10.0.0.5:1000", "203.0.113.50", ""); w.Code != 200 {
			t.Fatalf("proxied client request %d: status %d, want 200", i, w.Code)
		}
	}
	if w := anonymousRequest(gw, "limited", "10.0.0.5:1000", "203.0.113.50", ""); w.Code != 429 {
		t.Errorf("proxied client past its burst: status %d, want 429", w.Code)
	}
	if w := anonymousRequest(gw, "limited", "10.0.0.5:1000", "203.0.113.51", ""); w.Code != 200 {
		t.Errorf("another client of the proxy: status %d, want 200", w.Code)
	}

	// Buckets survive a table swap that keeps the limit, and refill in time.
	gw.SetTable(gatewayFixtureTable(
		gatewayFixtureService("limited", limited, granted),
		gatewayFixtureService("open", map[string]string{apis.AnnotationInvokerIAMDisabled: "true"}, nil),
	))
	if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", ""); w.Code != 429 {
		t.Errorf("after a table swap: status %d, want 429 (bucket kept)", w.Code)
	}
	now = now.Add(2 * time.Second)
	if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", ""); w.Code != 200 {
		t.Errorf("after the refill: status %d, want 200", w.Code)
	}
	// Removing the limit lifts it.
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("limited", map[string]string{apis.AnnotationInvokerIAMDisabled: "true"}, nil)))
	for range 5 {
		if w := anonymousRequest(gw, "limited", "198.51.100.1:1000", "", ""); w.Code != 200 {
			t.Fatalf("limit removed: status %d, want 200", w.Code)
		}
	}
}

// TestAnonymousRateLimitExemptsOnlyGrantedCallers: on a service public
// through allUsers, a valid token exempts its holder from the anonymous
// limit only when a binding names the holder (user, service account,
// domain); a token whose principal is let in only by allUsers or
// allAuthenticatedUsers is charged to its address like no token at all,
// and the refusal names the principal.
func TestAnonymousRateLimitExemptsOnlyGrantedCallers(t *testing.T) {
	f := newGatewayFixture(t, false)
	var denials []gateway.Denial
	now := time.Unix(1_800_000_000, 0)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		OnDenied: func(d gateway.Denial) { denials = append(denials, d) },
		Now:      func() time.Time { return now },
	})
	const mallory = "mallory@local-project.iam.gserviceaccount.com"
	const partner = "pat@partner.example"
	policy := gatewayFixturePolicy("roles/run.invoker", "allUsers", "allAuthenticatedUsers",
		"serviceAccount:"+gwFixSA, "user:"+gwFixUser, "domain:partner.example")
	gw.SetTable(gatewayFixtureTable(
		gatewayFixtureService("svc", map[string]string{apis.AnnotationAnonymousRateLimit: "0.5,burst=2"}, policy),
		gatewayFixtureService("other", nil, policy),
	))
	const flooder = "198.51.100.9:4000"
	for range 2 {
		if w := anonymousRequest(gw, "svc", flooder, "", ""); w.Code != 200 {
			t.Fatalf("anonymous request within the burst: %d", w.Code)
		}
	}
	if w := anonymousRequest(gw, "svc", flooder, "", ""); w.Code != 429 {
		t.Fatalf("anonymous request past the burst: %d, want 429", w.Code)
	}

	// The user's view: granted callers, from the very same exhausted
	// address, keep working.
	for name, tok := range map[string]string{
		"bound service account":    f.mint(t, gwFixSA, gatewayFixtureURL("svc")),
		"bound user":               f.mint(t, gwFixUser, gatewayFixtureURL("svc")),
		"bound user, CLI audience": f.mint(t, gwFixUser, gwFixCLIAudience),
		"user of a bound domain":   f.mint(t, partner, gatewayFixtureURL("svc")),
	} {
		for range 5 {
			if w := anonymousRequest(gw, "svc", flooder, "", "Bearer "+tok); w.Code != 200 {
				t.Fatalf("%s under the limit: %d, want 200", name, w.Code)
			}
		}
	}

	// The attacker's view: tokens that prove an account but no grant of
	// its own are charged to the exhausted address.
	denials = nil
	unbound := f.mint(t, mallory, gatewayFixtureURL("svc"))
	sa := f.mint(t, gwFixSA, gatewayFixtureURL("svc"))
	for name, authz := range map[string]string{
		"valid token, only allUsers/allAuthenticatedUsers": "Bearer " + unbound,
		"unbound user, CLI audience":                       "Bearer " + f.mint(t, "eve@example.org", gwFixCLIAudience),
		"forged token of a bound account":                  "Bearer " + sa[:len(sa)-4] + "AAAA",
		"bound account's token for another service":        "Bearer " + f.mint(t, gwFixSA, gatewayFixtureURL("other")),
		"service account token with the CLI audience":      "Bearer " + f.mint(t, gwFixSA, gwFixCLIAudience),
		"not a bearer token":                               "Basic " + unbound,
	} {
		if w := anonymousRequest(gw, "svc", flooder, "", authz); w.Code != 429 {
			t.Errorf("%s: %d, want 429", name, w.Code)
		}
	}
	if w := anonymousRequest(gw, "svc", "198.51.100.10:4000", "", "Bearer "+unbound); w.Code != 200 {
		t.Errorf("unbound token from a fresh address: %d, want 200 (charged like anyone)", w.Code)
	}
	if len(denials) == 0 || denials[0].Reason != gateway.ReasonAnonymousRateLimit {
		t.Fatalf("denials = %+v, want rate-limit refusals", denials)
	}
	named := false
	for _, d := range denials {
		if d.Principal.Email == mallory {
			named = true
		}
	}
	if !named {
		t.Errorf("no refusal names %s, the principal that was charged: %+v", mallory, denials)
	}
}

// TestAnonymousRateLimitForwardedForPorts: behind a trusted proxy that
// writes X-Forwarded-For entries with ports, each client is charged to its
// own address (user's view); entries a client wrote itself change nothing,
// and an entry that does not parse charges the proxy's connection, never a
// fresh bucket (attacker's view).
func TestAnonymousRateLimitForwardedForPorts(t *testing.T) {
	f := newGatewayFixture(t, false)
	var denials []gateway.Denial
	proxies, err := ratelimit.ParseProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		OnDenied:       func(d gateway.Denial) { denials = append(denials, d) },
		TrustedProxies: proxies,
		Now:            func() time.Time { return now },
	})
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("svc",
		map[string]string{apis.AnnotationInvokerIAMDisabled: "true", apis.AnnotationAnonymousRateLimit: "0.01,burst=2,total=100"}, nil)))
	const proxy = "10.0.0.5:1000"
	expect := func(xff string, want int) {
		t.Helper()
		if w := anonymousRequest(gw, "svc", proxy, xff, ""); w.Code != want {
			t.Fatalf("X-Forwarded-For %q: status %d, want %d", xff, w.Code, want)
		}
	}

	// Two clients, written with ports (the port changes per connection):
	// one bucket each, by address.
	expect("203.0.113.50:41000", 200)
	expect("203.0.113.50:41001", 200)
	expect("[2001:db8:1::7]:443", 200)
	expect("203.0.113.50:41002", 429)
	if d := denials[len(denials)-1]; d.Client != "203.0.113.50" {
		t.Errorf("refusal charged %q, want 203.0.113.50", d.Client)
	}
	expect("[2001:db8:1:0:ffff::9]:443, 10.0.0.9:80", 200) // same /64, through a second proxy
	expect("[2001:db8:1::7]:80", 429)

	// The limited client writes its own entries: the proxy appends its real
	// address after them, and that is what is charged.
	expect("198.51.100.77, 203.0.113.50:41003", 429)
	expect("[2001:db8:2::1]:1, 203.0.113.50:41004", 429)

	// Entries that do not parse charge the proxy's own connection: the
	// first two such requests share its bucket, the third is refused.
	expect("203.0.113.50:41005:1", 200)
	expect("[203.0.113.51]:80", 200)
	expect("unknown", 429)
	expect("198.51.100.8:99999", 429)
	if d := denials[len(denials)-1]; d.Client != "10.0.0.5" {
		t.Errorf("refusal for a malformed header charged %q, want the proxy 10.0.0.5", d.Client)
	}
	// A client the proxy names properly is unaffected.
	expect("198.51.100.8:5000", 200)
}

// TestAnonymousRateLimitSurvivesChurn: an attacker rotating through more
// fresh IPv6 /64s than the limiter keeps buckets for cannot reset the
// bucket of a client being limited (it stays refused by its own bucket,
// Retry-After and all), while a granted caller keeps working throughout.
func TestAnonymousRateLimitSurvivesChurn(t *testing.T) {
	f := newGatewayFixture(t, false)
	now := time.Unix(1_800_000_000, 0)
	gw := gateway.New(gateway.Config{
		Verifier: f.verifier, Instances: f.instances, CLIAudience: gwFixCLIAudience,
		Now: func() time.Time { return now },
	})
	// Per address: 2 requests, then one every 1000 s. In all: 3, then one a
	// second, so the attacker's requests are refused cheaply by the overall
	// bucket once it is spent, yet each still draws an address bucket; a
	// refusal by the overall bucket says Retry-After: 1.
	gw.SetTable(gatewayFixtureTable(gatewayFixtureService("svc",
		map[string]string{apis.AnnotationAnonymousRateLimit: "0.001,burst=2,total=1,total-burst=3"},
		gatewayFixturePolicy("roles/run.invoker", "allUsers", "serviceAccount:"+gwFixSA))))
	granted := "Bearer " + f.mint(t, gwFixSA, gatewayFixtureURL("svc"))
	const heavy = "[2001:db8:aaaa:1::1]:5000"
	for range 2 {
		if w := anonymousRequest(gw, "svc", heavy, "", ""); w.Code != 200 {
			t.Fatalf("heavy client's burst: %d", w.Code)
		}
	}
	stillLimited := func(after int) {
		t.Helper()
		w := anonymousRequest(gw, "svc", heavy, "", "")
		secs, _ := strconv.Atoi(w.Header().Get("Retry-After"))
		if w.Code != 429 || secs < 500 {
			t.Fatalf("heavy client after %d fresh /64s: %d, Retry-After %q; want 429 from its own bucket (about 1000 s)", after, w.Code, w.Header().Get("Retry-After"))
		}
	}
	stillLimited(0)
	const churn = 2 * ratelimit.MaxAddresses
	for i := range churn {
		remote := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xbb, byte(i >> 16), byte(i >> 8), byte(i), 15: 1}), 443).String()
		if w := anonymousRequest(gw, "svc", remote, "", ""); w.Code != 200 && w.Code != 429 {
			t.Fatalf("attacker request %d: %d", i, w.Code)
		}
		if i%4096 == 4095 {
			stillLimited(i + 1)
			if w := anonymousRequest(gw, "svc", heavy, "", granted); w.Code != 200 {
				t.Fatalf("granted caller from the heavy client's address after %d fresh /64s: %d", i+1, w.Code)
			}
		}
	}
	stillLimited(churn)
}
