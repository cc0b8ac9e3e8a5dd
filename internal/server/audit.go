package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/store"
)

// startAudit starts the audit trail over st. stop writes what is still
// queued and waits for the trail to finish; call it before the store
// closes.
func startAudit(st store.Store, cfg Config, log *slog.Logger) (trail *audit.Trail, stop func()) {
	trail = audit.New(audit.Config{
		Store:      st,
		MaxAge:     cfg.AuditMaxAge,
		MaxRecords: cfg.AuditMaxRecords,
		MaxDenials: cfg.DenialMaxRecords,
		Log:        log,
	})
	ctx, cancel := context.WithCancel(context.Background())
	go trail.Run(ctx)
	return trail, func() {
		cancel()
		select {
		case <-trail.Done():
		case <-time.After(30 * time.Second):
			log.Warn("audit: records still queued at shutdown were not all written")
		}
	}
}

// auditDenials records each refused request on the trail (queued, never
// blocking the gateway), then passes it on to next (the console's ring).
func auditDenials(trail *audit.Trail, next func(gateway.Denial)) func(gateway.Denial) {
	return func(d gateway.Denial) {
		r := audit.Record{
			Kind:       audit.KindInvokeDenied,
			Permission: iam.PermRoutesInvoke,
			Status:     d.Status,
			Reason:     d.Reason,
			Details:    &audit.Details{Host: d.Host, Via: "gateway"},
		}
		if d.ForwardAuth {
			r.Details.Via = "forward-auth"
		}
		if d.Principal.Kind != iam.Anonymous {
			r.Principal = d.Principal.Member()
		}
		if t := d.Target; t != nil {
			r.Project, r.Region, r.Service = t.Project, t.Region, t.Service
			r.Resource = apis.ServiceResource(t.Project, t.Region, t.Service)
		}
		if d.Target != nil { // audit records belong to a project
			trail.Enqueue(r)
		}
		next(d)
	}
}
