package server

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/history"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/store/bolt"
)

// BenchmarkMetricsRouted is what per-service metrics add to each request
// the gateway answers (Prometheus series plus the history): compare it
// with the gateway's own per-request cost (internal/gateway benchmarks,
// bench/compare.sh) to see its share of the gateway/nginx ratio.
func BenchmarkMetricsRouted(b *testing.B) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "usher.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	m := newMetrics("bench")
	m.hist = history.New(st, "bench")
	r := gateway.Routed{Target: &routing.Target{Project: "p", Region: "us-central1", Service: "hello"}, Revision: "hello-00001-abc",
		Status: 200, Forwarded: true, UsherTime: 200 * time.Microsecond, InstanceTime: 2 * time.Millisecond,
		Anonymous: true, Client: netip.MustParseAddr("192.0.2.1")}
	m.routed(r)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.routed(r)
	}
}
