package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	s := startServer(t)
	r := s.mustCLI(t, "version")
	if !strings.HasPrefix(r.stdout, "usher ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("usher version: got %q, want \"usher VERSION\" and the Go version", r.stdout)
	}
}

// --metrics-addr serves /metrics on its own listener, with the Go runtime
// and process collectors, and only series that have something to say; API
// hosts then have no /metrics.
func TestMetricsAddr(t *testing.T) {
	addr := "127.0.0.1:" + freePort(t)
	s := startServerWith(t, "--metrics-addr", addr)
	u := s.deploy(t, "counted", echoBin, "--allow-unauthenticated")
	if r := s.get(t, u); r.status != 200 {
		t.Fatalf("GET %s: got %d, want 200", u, r.status)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{"go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_open_fds ", `usher_gateway_requests_total{code="200"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics on --metrics-addr lacks %q", want)
		}
	}
	for _, unwanted := range []string{`code="418"`, `code="599"`} {
		if strings.Contains(body, unwanted) {
			t.Errorf("/metrics has a series for a status never answered: %s", unwanted)
		}
	}
	if r := s.get(t, s.serverURL(t)+"/metrics"); r.status == 200 {
		t.Errorf("/metrics on the API host with --metrics-addr: got 200, want it served only on %s", addr)
	}
}
