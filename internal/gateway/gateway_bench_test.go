package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/routing"
)

// Benchmarks of the gateway's hot path. They reuse the fixture of
// gateway_test.go: a real issuer and verifier, routing.Build tables and a real
// loopback backend answering "Hello World!".
//
// Allocation counts are process-wide, so every proxied benchmark also counts
// the in-process backend's own allocations (its http.Server side).
// BenchmarkGatewayBaselineDirect measures a keep-alive client talking to that
// backend without the gateway; subtract it to see what the gateway adds.
//
// Run: go test -run='^$' -bench=. -benchmem ./internal/gateway/

// benchGateway is a gateway with a table holding a private service (one
// service-account invoker), a public one (allUsers) and an unbound one.
type benchGateway struct {
	f        *gatewayFixture
	gw       *gateway.Gateway
	token    string // the invoker's token for "private"
	tokenFor string // the invoker's token for "unbound"
	privHost string
	pubHost  string
	unbdHost string
	// limHost is a public service with an anonymous rate limit too high
	// to refuse anything: the limiter's cost alone.
	limHost string
	// limToken is the invoker's token for "limited", where it holds its
	// own binding: a caller exempt from the anonymous limit.
	limToken string
}

func newBenchGateway(b *testing.B) *benchGateway {
	b.Helper()
	f := newGatewayFixture(b, false)
	table := gatewayFixtureTable(
		gatewayFixtureService("private", nil, gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA)),
		gatewayFixtureService("public", nil, gatewayFixturePolicy("roles/run.invoker", "allUsers")),
		gatewayFixtureService("unbound", nil, nil),
		gatewayFixtureService("limited", map[string]string{apis.AnnotationInvokerIAMDisabled: "true",
			apis.AnnotationAnonymousRateLimit: "1000000,burst=1000000"}, gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA)),
	)
	gw := f.newGateway()
	gw.SetTable(table)
	return &benchGateway{
		f:        f,
		gw:       gw,
		token:    f.mint(b, gwFixSA, gatewayFixtureURL("private")),
		tokenFor: f.mint(b, gwFixSA, gatewayFixtureURL("unbound")),
		privHost: gatewayFixtureHost("private"),
		pubHost:  gatewayFixtureHost("public"),
		unbdHost: gatewayFixtureHost("unbound"),
		limHost:  gatewayFixtureHost("limited"),
		limToken: f.mint(b, gwFixSA, gatewayFixtureURL("limited")),
	}
}

// benchWriter is a reusable http.ResponseWriter (and Flusher, which the
// gateway's streaming proxy uses) that keeps the status and discards the
// body, so recorder benchmarks count the gateway's allocations rather than a
// recorder's buffers.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *benchWriter) Flush() {}

func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// benchRecorderLoop serves req through h b.N times and checks every answer.
func benchRecorderLoop(b *testing.B, h http.Handler, req *http.Request, want int) {
	b.Helper()
	w := &benchWriter{h: make(http.Header)}
	// Warm up: the first private request does the RSA verification and fills
	// the token cache; the first proxied one opens the backend connection.
	h.ServeHTTP(w, req)
	if w.status != want {
		b.Fatalf("warm-up status = %d, want %d", w.status, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.status != want {
			b.Fatalf("status = %d, want %d", w.status, want)
		}
	}
}

func newBenchRequest(host string, header map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)
	r.Host = host
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

// BenchmarkPrivateValidTokenRecorder is the full private path in process:
// lookup, cached token verification, audience, Decide, proxy to the backend.
func BenchmarkPrivateValidTokenRecorder(b *testing.B) {
	bg := newBenchGateway(b)
	req := newBenchRequest(bg.privHost, map[string]string{"Authorization": "Bearer " + bg.token})
	benchRecorderLoop(b, bg.gw, req, http.StatusOK)
}

// benchLoopbackClient is a keep-alive client for one server.
func benchLoopbackClient(b *testing.B) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, ForceAttemptHTTP2: false}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// benchLoopbackGet sends one request and drains the answer so the connection
// is reused.
func benchLoopbackGet(c *http.Client, req *http.Request) (int, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// BenchmarkPrivateValidTokenLoopback is the private path as a client sees it:
// a keep-alive client → a real loopback HTTP server running the gateway →
// the backend. Includes both HTTP hops and the client.
func BenchmarkPrivateValidTokenLoopback(b *testing.B) {
	bg := newBenchGateway(b)
	srv := httptest.NewServer(bg.gw)
	b.Cleanup(srv.Close)
	c := benchLoopbackClient(b)
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Host = bg.privHost
	req.Header.Set("Authorization", "Bearer "+bg.token)
	if code, err := benchLoopbackGet(c, req); err != nil || code != http.StatusOK {
		b.Fatalf("warm-up: status %d, err %v; want 200", code, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		code, err := benchLoopbackGet(c, req)
		if err != nil || code != http.StatusOK {
			b.Fatalf("status %d, err %v; want 200", code, err)
		}
	}
}

// BenchmarkPrivateValidTokenLoopbackParallel is the loopback benchmark with
// GOMAXPROCS concurrent clients: throughput rather than latency, closest to
// what bench/compare.sh measures with wrk.
func BenchmarkPrivateValidTokenLoopbackParallel(b *testing.B) {
	bg := newBenchGateway(b)
	srv := httptest.NewServer(bg.gw)
	b.Cleanup(srv.Close)
	c := benchLoopbackClient(b)
	newReq := func() *http.Request {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Host = bg.privHost
		req.Header.Set("Authorization", "Bearer "+bg.token)
		return req
	}
	if code, err := benchLoopbackGet(c, newReq()); err != nil || code != http.StatusOK {
		b.Fatalf("warm-up: status %d, err %v; want 200", code, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := newReq()
		for pb.Next() {
			code, err := benchLoopbackGet(c, req)
			if err != nil || code != http.StatusOK {
				b.Errorf("status %d, err %v; want 200", code, err)
				return
			}
		}
	})
}

// BenchmarkGatewayBaselineDirect is the ceiling and the allocation baseline:
// the same keep-alive client straight to the backend, no gateway.
func BenchmarkGatewayBaselineDirect(b *testing.B) {
	f := newGatewayFixture(b, false)
	c := benchLoopbackClient(b)
	req, err := http.NewRequest(http.MethodGet, f.backend.URL+"/", nil)
	if err != nil {
		b.Fatal(err)
	}
	if code, err := benchLoopbackGet(c, req); err != nil || code != http.StatusOK {
		b.Fatalf("warm-up: status %d, err %v; want 200", code, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		code, err := benchLoopbackGet(c, req)
		if err != nil || code != http.StatusOK {
			b.Fatalf("status %d, err %v; want 200", code, err)
		}
	}
}

// BenchmarkPublic is an allUsers service: no authentication, straight to the
// proxy.
func BenchmarkPublic(b *testing.B) {
	bg := newBenchGateway(b)
	benchRecorderLoop(b, bg.gw, newBenchRequest(bg.pubHost, nil), http.StatusOK)
}

// BenchmarkPublicAnonymousLimited is a public service whose anonymous
// rate limit admits every request: the limiter's share of the hot path.
func BenchmarkPublicAnonymousLimited(b *testing.B) {
	bg := newBenchGateway(b)
	benchRecorderLoop(b, bg.gw, newBenchRequest(bg.limHost, nil), http.StatusOK)
}

// BenchmarkPublicAnonymousLimitedGranted is a caller of that service with
// a token and a binding of its own, which exempt it from the limit: the
// cost of telling it apart from an anonymous caller.
func BenchmarkPublicAnonymousLimitedGranted(b *testing.B) {
	bg := newBenchGateway(b)
	req := newBenchRequest(bg.limHost, map[string]string{"Authorization": "Bearer " + bg.limToken})
	benchRecorderLoop(b, bg.gw, req, http.StatusOK)
}

// BenchmarkPublicCounted is BenchmarkPublic with a per-service request
// counter and latency histograms on OnRouted, shaped like the server's
// usher_run_request_count and usher_run_request_latencies_seconds: the
// metrics' share of the hot path.
func BenchmarkPublicCounted(b *testing.B) {
	bg := newBenchGateway(b)
	counts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bench_request_count"},
		[]string{"project", "region", "service", "revision", "response_code_class", "decision"})
	latencies := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bench_request_latencies", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)},
		[]string{"project", "region", "service", "revision", "share"})
	gw := gateway.New(gateway.Config{
		Verifier: bg.f.verifier, Instances: bg.f.instances, CLIAudience: gwFixCLIAudience,
		OnRouted: func(r gateway.Routed) {
			t := r.Target
			counts.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "2xx", "allowed").Inc()
			latencies.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "total").Observe((r.UsherTime + r.InstanceTime).Seconds())
			latencies.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "usher").Observe(r.UsherTime.Seconds())
			latencies.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "instance").Observe(r.InstanceTime.Seconds())
		},
	})
	gw.SetTable(bg.gw.Table())
	benchRecorderLoop(b, gw, newBenchRequest(bg.pubHost, nil), http.StatusOK)
}

// BenchmarkDenied401NoToken is a private service without credentials.
func BenchmarkDenied401NoToken(b *testing.B) {
	bg := newBenchGateway(b)
	benchRecorderLoop(b, bg.gw, newBenchRequest(bg.privHost, nil), http.StatusUnauthorized)
}

// BenchmarkDenied403 is a valid, cached token for the right audience whose
// principal holds no invoker binding.
func BenchmarkDenied403(b *testing.B) {
	bg := newBenchGateway(b)
	req := newBenchRequest(bg.unbdHost, map[string]string{"Authorization": "Bearer " + bg.tokenFor})
	benchRecorderLoop(b, bg.gw, req, http.StatusForbidden)
}

// BenchmarkTableLookup looks hosts up in a table of 1000 services, cycling
// through all of them; hosts carry the port as clients send it.
func BenchmarkTableLookup(b *testing.B) {
	const n = 1000
	services := make([]routing.ServiceState, n)
	hosts := make([]string, n)
	for i := range services {
		name := fmt.Sprintf("svc-%04d", i)
		services[i] = gatewayFixtureService(name, nil, gatewayFixturePolicy("roles/run.invoker", "serviceAccount:"+gwFixSA))
		hosts[i] = gatewayFixtureHost(name)
	}
	table := gatewayFixtureTable(services...)
	if table.Len() != n {
		b.Fatalf("table.Len() = %d, want %d", table.Len(), n)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if table.Lookup(hosts[i]) == nil {
			b.Fatalf("Lookup(%q) = nil", hosts[i])
		}
		i++
		if i == n {
			i = 0
		}
	}
}

// BenchmarkDecide is the invoker decision on a compiled policy with 100
// service-account members, 100 users and a domain, for an allowed and a
// denied principal.
func BenchmarkDecide(b *testing.B) {
	members := []string{"domain:example.org"}
	for i := range 100 {
		members = append(members,
			fmt.Sprintf("serviceAccount:sa-%d@%s.iam.gserviceaccount.com", i, gwFixProject),
			fmt.Sprintf("user:user-%d@example.com", i))
	}
	members = append(members, "serviceAccount:"+gwFixSA)
	table := gatewayFixtureTable(gatewayFixtureService("private", nil, gatewayFixturePolicy("roles/run.invoker", members...)))
	tgt := table.Lookup(gatewayFixtureHost("private"))
	if tgt == nil {
		b.Fatal("no target")
	}
	for _, c := range []struct {
		name  string
		p     iam.Principal
		allow bool
	}{
		{"allowed", iam.NewPrincipal(gwFixSA), true},
		{"denied", iam.NewPrincipal("stranger@" + gwFixProject + ".iam.gserviceaccount.com"), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := tgt.Invokers.Decide(c.p); d.Allowed != c.allow {
					b.Fatalf("Decide(%s).Allowed = %v, want %v", c.p, d.Allowed, c.allow)
				}
			}
		})
	}
}
