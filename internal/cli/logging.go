package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/client"
)

func newLoggingCmd(g *globals) *cobra.Command {
	logging := &cobra.Command{Use: "logging", Short: "Read the audit trail: admin writes and refused requests"}
	var (
		service, principal, kind string
		since                    time.Duration
		from, to                 string
		limit                    int
	)
	read := &cobra.Command{
		Use:   "read",
		Short: "Print audit records, newest first",
		Long: `Print the project's audit records, newest first: every deploy, update and
delete, every IAM policy change (with the bindings it added and removed),
service accounts created and deleted, and every request the gateway or the
forward-auth endpoint refused (401 or 403, with the principal and reason).

Filters combine: --service NAME (with --region, only that region's),
--principal (user:EMAIL, serviceAccount:EMAIL, a bare EMAIL, or anonymous),
--kind (exact, or a prefix such as "service" or "invoke"), and a time range:
--since DURATION, or --from and --to (RFC 3339).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if limit < 1 {
				return errors.New("--limit must be at least 1")
			}
			q := url.Values{}
			for name, v := range map[string]string{"service": service, "principal": principal, "kind": kind, "region": g.region} {
				if v != "" {
					q.Set(name, v)
				}
			}
			if since > 0 && from != "" {
				return errors.New("use --since or --from, not both")
			}
			if since > 0 {
				q.Set("startTime", time.Now().Add(-since).UTC().Format(time.RFC3339Nano))
			}
			for name, v := range map[string]string{"startTime": from, "endTime": to} {
				if v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, v)
				if err != nil {
					return fmt.Errorf("--from and --to take RFC 3339 times (2006-01-02T15:04:05Z): %q", v)
				}
				q.Set(name, t.UTC().Format(time.RFC3339Nano))
			}
			records := []audit.Record{}
			for len(records) < limit {
				q.Set("pageSize", strconv.Itoa(min(limit-len(records), audit.MaxPageSize)))
				var page audit.Page
				if err := c.Do(cmd.Context(), http.MethodGet, client.AuditLogsPath(cfg.Project)+"?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				records = append(records, page.Records...)
				if page.NextPageToken == "" {
					break
				}
				q.Set("pageToken", page.NextPageToken)
			}
			return g.print(records, func(w io.Writer) error {
				if len(records) == 0 {
					fmt.Fprintln(g.stderr, "Listed 0 items.")
					return nil
				}
				rows := make([][]string, 0, len(records))
				for _, r := range records {
					who := r.Principal
					if who == "" {
						who = "(no credentials)"
					}
					rows = append(rows, []string{r.Time.Format(time.RFC3339), r.Kind, strconv.Itoa(r.Status), who, r.Resource, recordSummary(r)})
				}
				return table(w, []string{"TIME", "KIND", "STATUS", "PRINCIPAL", "RESOURCE", "DETAILS"}, rows)
			})
		},
	}
	f := read.Flags()
	f.StringVar(&service, "service", "", "only this service's records")
	f.StringVar(&principal, "principal", "", "only this principal's records (user:EMAIL, serviceAccount:EMAIL, EMAIL or anonymous)")
	f.StringVar(&kind, "kind", "", "only records of this kind (service.create, iam.setPolicy, invoke.denied, …) or kind prefix (service, invoke)")
	f.DurationVar(&since, "since", 0, "only records newer than this (e.g. 1h)")
	f.StringVar(&from, "from", "", "only records at or after this time (RFC 3339)")
	f.StringVar(&to, "to", "", "only records at or before this time (RFC 3339)")
	f.IntVar(&limit, "limit", 100, "how many records at most")
	logging.AddCommand(read)
	return logging
}

// recordSummary is the DETAILS column: what changed, or why it was refused.
func recordSummary(r audit.Record) string {
	var parts []string
	if r.Reason != "" {
		parts = append(parts, r.Reason)
	}
	if d := r.Details; d != nil {
		for _, bd := range d.BindingDeltas {
			sign := "+"
			if bd.Action == "REMOVE" {
				sign = "-"
			}
			parts = append(parts, sign+bd.Role+" "+bd.Member)
		}
		if d.Image != "" {
			parts = append(parts, "image "+d.Image)
		}
		if d.Revision != "" {
			parts = append(parts, "revision "+d.Revision)
		}
		if d.Via == "forward-auth" {
			parts = append(parts, "via forward-auth ("+d.Host+")")
		}
	}
	return strings.Join(parts, "; ")
}
