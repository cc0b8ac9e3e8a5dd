package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/routing"
)

// TestGatewayStaleFailsClosed: while Config.Fresh is false every request,
// service or forward-auth, gets 503 with the staleness explanation.
func TestGatewayStaleFailsClosed(t *testing.T) {
	var fresh atomic.Bool
	gw := gateway.New(gateway.Config{Fresh: fresh.Load})
	gw.SetTable(routing.Build(routing.State{Domain: "run.localhost"}))
	for _, h := range []struct {
		name string
		h    http.Handler
		path string
	}{{"service", gw, "/"}, {"forward-auth", gw.ForwardAuth("run.localhost"), gateway.ForwardAuthPath + "p/r/s"}} {
		rec := httptest.NewRecorder()
		h.h.ServeHTTP(rec, httptest.NewRequest("GET", "http://x-1.us-central1.run.localhost"+h.path, nil))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), "cannot confirm its access policies are current") {
			t.Errorf("%s while stale: %d %q", h.name, rec.Code, rec.Body.String())
		}
		fresh.Store(true)
		rec = httptest.NewRecorder()
		h.h.ServeHTTP(rec, httptest.NewRequest("GET", "http://x-1.us-central1.run.localhost"+h.path, nil))
		if rec.Code == 503 {
			t.Errorf("%s while fresh: 503 %q", h.name, rec.Body.String())
		}
		fresh.Store(false)
	}
}
