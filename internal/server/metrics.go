package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/history"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/pool"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/state"
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
	// requestCount is Cloud Run's request_count: per service and revision,
	// by response class and by the gateway's decision (never principals or
	// paths, so its cardinality is bounded by the services that exist).
	requestCount *prometheus.CounterVec
	// latencies is Cloud Run's request_latencies, split by share: "total",
	// "usher" (arrival to forwarding, cold starts included) and "instance".
	latencies *prometheus.HistogramVec
	// coldStarts is the duration of each instance start (a count of cold
	// starts too), per revision.
	coldStarts *prometheus.HistogramVec
	// hist keeps each service's recent history for the console and CLI
	// (package history); nil until set.
	hist *history.Recorder
	mu   sync.Mutex // guards routedServices; never taken by requests
	// routedServices are the services of the table in force, so that the
	// next table tells which were deleted (forgetServices).
	routedServices map[[3]string]bool
}

func newMetrics(node string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), routedServices: map[[3]string]bool{}}
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
	m.requestCount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "usher_run_request_count",
		Help:        "Requests to a service (Cloud Run's request_count), by revision, response class and the gateway's decision: allowed, 401, 403, 429 (rate limit or overload), 503.",
		ConstLabels: labels,
	}, []string{"project", "region", "service", "revision", "response_code_class", "decision"})
	m.latencies = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "usher_run_request_latencies_seconds",
		Help:        "Latency of requests an instance answered (Cloud Run's request_latencies), by share: total, usher (arrival to forwarding: routing, authorization, the wait for an instance and cold starts) and instance (forwarding to the answer written).",
		ConstLabels: labels,
		Buckets:     prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
	}, []string{"project", "region", "service", "revision", "share"})
	m.coldStarts = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "usher_run_cold_start_seconds",
		Help:        "Instance starts on this node and how long each took (start to ready), per revision; _count is the number of cold starts.",
		ConstLabels: labels,
		Buckets:     prometheus.ExponentialBuckets(0.01, 2, 12), // 10 ms to 20 s
	}, []string{"project", "region", "service", "revision"})
	m.reg.MustRegister(m.propagation, m.requests, m.rateLimited, m.requestCount, m.latencies, m.coldStarts,
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
	m.rateLimited.WithLabelValues(project, region, service).Inc()
}

// counted counts one request in request_count.
func (m *metrics) counted(project, region, service, revision string, status int, decision string) {
	m.requestCount.WithLabelValues(project, region, service, revision, responseClass(status), decision).Inc()
}

// routed counts a request that passed authorization.
func (m *metrics) routed(r gateway.Routed) {
	decision := "allowed"
	if !r.Forwarded {
		switch r.Status {
		case http.StatusTooManyRequests:
			decision = "429"
		case http.StatusServiceUnavailable:
			decision = "503"
		}
	}
	m.counted(r.Target.Project, r.Target.Region, r.Target.Service, r.Revision, r.Status, decision)
	if m.hist != nil {
		d := history.Allowed
		switch decision {
		case "429":
			d = history.Limited
		case "503":
			d = history.Unavailable
		}
		m.hist.Record(history.Key{Project: r.Target.Project, Region: r.Target.Region, Service: r.Target.Service}, history.Sample{
			Decision: d, Status: r.Status, Anonymous: r.Anonymous, Client: r.Client,
			Forwarded: r.Forwarded, Total: r.UsherTime + r.InstanceTime, Usher: r.UsherTime,
		})
	}
	if r.Forwarded {
		t := r.Target
		m.latencies.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "total").Observe((r.UsherTime + r.InstanceTime).Seconds())
		m.latencies.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "usher").Observe(r.UsherTime.Seconds())
		m.latencies.WithLabelValues(t.Project, t.Region, t.Service, r.Revision, "instance").Observe(r.InstanceTime.Seconds())
	}
}

// denied counts a request the gateway refused (401, 403, 429).
func (m *metrics) denied(d gateway.Denial) {
	if d.Target == nil || d.ForwardAuth {
		return
	}
	m.counted(d.Target.Project, d.Target.Region, d.Target.Service, "", d.Status, strconv.Itoa(d.Status))
	if m.hist == nil {
		return
	}
	smp := history.Sample{Status: d.Status}
	switch d.Status {
	case http.StatusUnauthorized:
		smp.Decision = history.Unauthenticated
	case http.StatusForbidden:
		smp.Decision = history.Forbidden
	case http.StatusTooManyRequests:
		// Refused by the anonymous rate limit: charged to its client.
		smp.Decision, smp.Anonymous = history.Limited, true
		smp.Client, _ = netip.ParseAddr(d.Client)
	default:
		return
	}
	m.hist.Record(history.Key{Project: d.Target.Project, Region: d.Target.Region, Service: d.Target.Service}, smp)
}

// coldStart records one instance start of revision of serviceKey
// (PROJECT/REGION/SERVICE).
func (m *metrics) coldStart(serviceKey, revision string, took time.Duration) {
	parts := strings.SplitN(serviceKey, "/", 3)
	if len(parts) != 3 {
		return
	}
	m.coldStarts.WithLabelValues(parts[0], parts[1], parts[2], revision).Observe(took.Seconds())
}

// responseClass is Cloud Run's response_code_class: "2xx", "4xx", ….
func responseClass(status int) string {
	if status < 100 || status > 599 {
		return "unknown"
	}
	return responseClasses[status/100]
}

var responseClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// forgetServices deletes the per-service series of services t no longer
// routes: a deleted service leaves no series behind. keys are the store keys
// that changed (nil: anything may have), so a write to one service looks at
// that service alone.
func (m *metrics) forgetServices(t *routing.Table, keys []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if keys == nil {
		live := map[[3]string]bool{}
		t.Each(func(_ string, tgt *routing.Target) { live[[3]string{tgt.Project, tgt.Region, tgt.Service}] = true })
		for k := range m.routedServices {
			if !live[k] {
				m.deleteSeries(k)
			}
		}
		m.routedServices = live
		return
	}
	for _, key := range keys {
		p := state.SplitKey(key, state.ServicesPrefix, 3)
		if p == nil {
			continue
		}
		k := [3]string{p[0], p[1], p[2]}
		if t.HasService(routing.ServiceKey{Project: k[0], Region: k[1], Service: k[2]}) {
			m.routedServices[k] = true
		} else if m.routedServices[k] {
			delete(m.routedServices, k)
			m.deleteSeries(k)
		}
	}
}

// deleteSeries drops every series of service k (project, region, name).
func (m *metrics) deleteSeries(k [3]string) {
	svc := prometheus.Labels{"project": k[0], "region": k[1], "service": k[2]}
	m.rateLimited.DeletePartialMatch(svc)
	m.requestCount.DeletePartialMatch(svc)
	m.latencies.DeletePartialMatch(svc)
	m.coldStarts.DeletePartialMatch(svc)
	if m.hist != nil {
		m.hist.Forget(history.Key{Project: k[0], Region: k[1], Service: k[2]})
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

// instanceCollector reports Cloud Run's container/instance_count per
// revision of the routing table in force, read from the pool at scrape
// time: series exist only for revisions that are routed, so a deleted
// service's disappear with it.
type instanceCollector struct {
	table    func() *routing.Table
	stats    func(key string) pool.Stats
	usage    func(key string) []pool.InstanceUsage
	desc     *prometheus.Desc
	billable *prometheus.Desc
	cpu      *prometheus.Desc
	memory   *prometheus.Desc
}

func newInstanceCollector(node string, table func() *routing.Table, stats func(key string) pool.Stats, usage func(key string) []pool.InstanceUsage) *instanceCollector {
	perInstance := []string{"project", "region", "service", "revision", "instance"}
	return &instanceCollector{table: table, stats: stats, usage: usage,
		cpu: prometheus.NewDesc("usher_run_container_cpu_seconds_total",
			"CPU time a live instance has used (from its cgroup: sandboxed process instances and containers on a local engine).",
			perInstance, prometheus.Labels{"node": node}),
		memory: prometheus.NewDesc("usher_run_container_memory_bytes",
			"Memory a live instance uses now, as its cgroup counts it (page cache included).",
			perInstance, prometheus.Labels{"node": node}),
		desc: prometheus.NewDesc("usher_run_container_instance_count",
			"Instances of a routed revision on this node (Cloud Run's container/instance_count), by state: active (serving a request), idle, starting.",
			[]string{"project", "region", "service", "revision", "state"}, prometheus.Labels{"node": node}),
		billable: prometheus.NewDesc("usher_run_container_billable_instance_time_seconds_total",
			"Seconds this node's instances of a routed revision held at least one request (Cloud Run's container/billable_instance_time).",
			[]string{"project", "region", "service", "revision"}, prometheus.Labels{"node": node})}
}

func (c *instanceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.billable
	ch <- c.cpu
	ch <- c.memory
}

func (c *instanceCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.table()
	if t == nil {
		return
	}
	seen := map[string]bool{}
	t.Each(func(_ string, tgt *routing.Target) {
		for _, route := range tgt.Routes {
			if seen[route.Key] {
				continue
			}
			seen[route.Key] = true
			st := c.stats(route.Key)
			active := 0
			for _, in := range st.Instances {
				if in.InFlight > 0 {
					active++
				}
			}
			rev := route.Revision.Metadata.Name
			for _, u := range c.usage(route.Key) {
				ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, u.CPUSeconds, tgt.Project, tgt.Region, tgt.Service, rev, u.ID)
				ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(u.MemoryBytes), tgt.Project, tgt.Region, tgt.Service, rev, u.ID)
			}
			ch <- prometheus.MustNewConstMetric(c.billable, prometheus.CounterValue, st.Billable.Seconds(), tgt.Project, tgt.Region, tgt.Service, rev)
			for state, n := range map[string]int{"active": active, "idle": len(st.Instances) - active, "starting": st.Starting} {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), tgt.Project, tgt.Region, tgt.Service, rev, state)
			}
		}
	})
}

// keepHistory feeds the history the instance counts and billable time of
// every routed service every 10 s, writes it to the store every 30 s, and
// once more when ctx ends.
func keepHistory(ctx context.Context, h *history.Recorder, table func() *routing.Table, stats func(key string) pool.Stats, log *slog.Logger) {
	sample := time.NewTicker(10 * time.Second)
	defer sample.Stop()
	flush := time.NewTicker(30 * time.Second)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := h.Flush(fctx); err != nil {
				log.Warn("metrics history: last write failed", "err", err)
			}
			cancel()
			return
		case <-flush.C:
			if err := h.Flush(ctx); err != nil && ctx.Err() == nil {
				log.Warn("metrics history: write failed; retried in 30s", "err", err)
			}
		case <-sample.C:
			t := table()
			if t == nil {
				continue
			}
			// A service has several hosts (tags): each revision once.
			revisions := map[history.Key]map[string]bool{}
			t.Each(func(_ string, tgt *routing.Target) {
				k := history.Key{Project: tgt.Project, Region: tgt.Region, Service: tgt.Service}
				if revisions[k] == nil {
					revisions[k] = map[string]bool{}
				}
				for _, route := range tgt.Routes {
					revisions[k][route.Key] = true
				}
			})
			for k, keys := range revisions {
				instances, billable := 0, time.Duration(0)
				for key := range keys {
					st := stats(key)
					instances += len(st.Instances) + st.Starting
					billable += st.Billable
				}
				h.Instances(k, instances, billable)
			}
		}
	}
}
