package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/jobs"
	"github.com/usher-run/usher/internal/logentries"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/store"
)

// startLogEntries starts the Logging API's store of services' output and
// requests over st, serving trail's admin writes as admin activity. stop
// writes what is still queued; call it before the store closes.
func startLogEntries(st store.Store, trail *audit.Trail, mets *metrics, node string, log *slog.Logger) (book *logentries.Book, stop func()) {
	book = logentries.New(logentries.Config{Store: st, Audit: trail, Log: log})
	mets.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "usher_log_entries_dropped_total",
		ConstLabels: prometheus.Labels{"node": node},
		Help:        "Log entries (instance output, request logs) not stored: the write queue was full, or a batch failed."},
		func() float64 { return float64(book.Dropped()) }))
	ctx, cancel := context.WithCancel(context.Background())
	go book.Run(ctx)
	return book, func() {
		cancel()
		select {
		case <-book.Done():
		case <-time.After(30 * time.Second):
			log.Warn("logs: entries still queued at shutdown were not all written")
		}
	}
}

// logOutput queues each line an instance printed for the Logging API.
func logOutput(book *logentries.Book) func(serviceKey string, e logs.Entry) {
	return func(serviceKey string, e logs.Entry) {
		parts := strings.SplitN(serviceKey, "/", 3)
		if len(parts) != 3 {
			return
		}
		book.Output(parts[0], parts[1], parts[2], e.Revision, e.Instance, e.Time, e.Text, e.Stderr)
	}
}

// logTaskLines queues each line a job's task printed for the Logging API.
func logTaskLines(book *logentries.Book) func(jobs.TaskLine) {
	return func(l jobs.TaskLine) {
		book.JobOutput(l.Project, l.Region, l.Job, l.Execution, l.Task, l.Attempt, l.Time, l.Text, l.Stderr)
	}
}

// logRouted queues each request the gateway answered, then passes it on.
func logRouted(book *logentries.Book, next func(gateway.Routed)) func(gateway.Routed) {
	return func(rt gateway.Routed) {
		if t := rt.Target; t != nil && rt.Request != nil {
			req := requestFields(rt.Request, false, "")
			req.Revision, req.Status, req.Latency = rt.Revision, rt.Status, rt.UsherTime+rt.InstanceTime
			book.Request(t.Project, t.Region, t.Service, req)
		}
		next(rt)
	}
}

// logDenials queues each request the gateway refused, then passes it on.
// Anonymous rate-limit refusals are counted in the metrics only: a flood
// of them would push every other request out of the service's log.
func logDenials(book *logentries.Book, next func(gateway.Denial)) func(gateway.Denial) {
	return func(d gateway.Denial) {
		if t := d.Target; t != nil && d.Request != nil && d.Reason != gateway.ReasonAnonymousRateLimit {
			req := requestFields(d.Request, d.ForwardAuth, d.Host)
			req.Status, req.Reason = d.Status, d.Reason
			if !d.Arrived.IsZero() {
				req.Latency = time.Since(d.Arrived)
			}
			book.Request(t.Project, t.Region, t.Service, req)
		}
		next(d)
	}
}

// requestFields are what a request log says of r: for a forward-auth
// subrequest, of the request the proxy asks about.
func requestFields(r *http.Request, forwardAuth bool, host string) logentries.Request {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	method, uri := r.Method, r.URL.RequestURI()
	if forwardAuth {
		if m := r.Header.Get("X-Forwarded-Method"); m != "" {
			method = m
		}
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		uri = r.Header.Get("X-Forwarded-Uri")
	} else {
		host = r.Host
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	return logentries.Request{Time: time.Now(), Method: method, URL: scheme + "://" + host + uri, RemoteIP: ip, UserAgent: r.UserAgent()}
}
