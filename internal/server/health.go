package server

import (
	"fmt"
	"net/http"

	"github.com/usher-run/usher/internal/mirror"
)

// readyz answers 200 only while the store answers and the routing table is
// known current (within --max-staleness); /healthz stays plain liveness.
// Load balancers should route by /readyz: a node that fails it also answers
// every gateway request with 503.
func readyz(mir *mirror.Mirror) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case !mir.StoreReachable():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: the store does not answer (state last confirmed %s ago)\n", mir.LastConfirmed().Round(1e6))
		case !mir.Fresh():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: this node cannot confirm its access policies are current (last confirmed %s ago)\n", mir.LastConfirmed().Round(1e6))
		default:
			fmt.Fprintf(w, "ready (revision %d)\n", mir.Revision())
		}
	})
}
