package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/routing"
)

// metrics are served at /metrics on API hosts (Prometheus text format).
type metrics struct {
	reg         *prometheus.Registry
	propagation prometheus.Histogram
	requests    *prometheus.CounterVec
	// codes holds each status code's counter once it has been seen: no
	// label lookup per request, and no series for codes never answered.
	codes [600]atomic.Value // prometheus.Counter
	// rateLimited counts anonymous requests refused by a service's rate
	// limit; its series are deleted when the service is (forgetServices).
	rateLimited *prometheus.CounterVec
	mu          sync.Mutex // guards limitedSeries
	// limitedSeries holds the label values of rateLimited's series.
	limitedSeries map[[3]string]bool
}

func newMetrics(node string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	labels := prometheus.Labels{"node": node}
	m.propagation = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "usher_mirror_apply_seconds",
		Help:        "Time from a watch batch arriving from the store to the routing table built from it being in force.",
		ConstLabels: labels,
		Buckets:     prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "usher_gateway_requests_total",
		Help:        "Requests to service hosts, by response status code.",
		ConstLabels: labels,
	}, []string{"code"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "usher_anonymous_rate_limited_total",
		Help:        "Anonymous requests to a public service refused (429) by its usher.dev/anonymous-rate-limit.",
		ConstLabels: labels,
	}, []string{"project", "region", "service"})
	m.limitedSeries = map[[3]string]bool{}
	m.reg.MustRegister(m.propagation, m.requests, m.rateLimited,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watch registers the gauges read from the mirror at scrape time.
func (m *metrics) watch(mir *mirror.Mirror, node string) {
	labels := prometheus.Labels{"node": node}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "usher_mirror_seconds_since_current", ConstLabels: labels,
			Help: "Seconds since this node last confirmed its routing table reflects the store (-1: never)."},
			func() float64 {
				d := mir.LastConfirmed()
				if d < 0 {
					return -1
				}
				return d.Seconds()
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "usher_mirror_fresh", ConstLabels: labels,
			Help: "1 while the routing table is within --max-staleness of confirmed current; 0 while the gateway answers 503."},
			func() float64 { return b(mir.Fresh()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "usher_store_up", ConstLabels: labels,
			Help: "1 while the store answers this node's heartbeats."},
			func() float64 { return b(mir.StoreReachable()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "usher_mirror_revision", ConstLabels: labels,
			Help: "Store revision the routing table reflects."},
			func() float64 { return float64(mir.Revision()) }),
	)
}

func (m *metrics) applied(d time.Duration) { m.propagation.Observe(d.Seconds()) }

// limited counts one rate-limited request to project/region/service.
func (m *metrics) limited(project, region, service string) {
	k := [3]string{project, region, service}
	m.mu.Lock()
	m.limitedSeries[k] = true
	m.mu.Unlock()
	m.rateLimited.WithLabelValues(project, region, service).Inc()
}

// forgetServices deletes the per-service series of services t no longer
// routes: a deleted service leaves no series behind.
func (m *metrics) forgetServices(t *routing.Table) {
	live := map[[3]string]bool{}
	t.Each(func(tgt *routing.Target) { live[[3]string{tgt.Project, tgt.Region, tgt.Service}] = true })
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.limitedSeries {
		if !live[k] {
			m.rateLimited.DeleteLabelValues(k[0], k[1], k[2])
			delete(m.limitedSeries, k)
		}
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// countRequests counts h's responses by status code.
func (m *metrics) countRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		if code >= 100 && code < len(m.codes) {
			m.code(code).Inc()
		}
	})
}

func (m *metrics) code(code int) prometheus.Counter {
	if c := m.codes[code].Load(); c != nil {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(strconv.Itoa(code)) // the same counter if two race here
	m.codes[code].Store(c)
	return c
}

// statusWriter records the status; Unwrap keeps Flush and Hijack working
// through http.ResponseController (the reverse proxy uses it).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveMetrics serves /metrics alone on addr (--metrics-addr).
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	go srv.Serve(ln)
	log.Info("metrics serving", "metrics_addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
