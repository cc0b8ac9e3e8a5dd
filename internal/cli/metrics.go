package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/history"
)

// newServiceMetricsCmd is `usher run services metrics NAME`: the numbers of
// the console's Metrics tab.
func newServiceMetricsCmd(g *globals) *cobra.Command {
	var window string
	cmd := &cobra.Command{
		Use:   "metrics NAME",
		Short: "Print a service's recent requests, latencies, instances and billable time",
		Long: "Print a service's history over --window (1h, 6h, 1d or 7d), every node's share merged: requests by the\n" +
			"gateway's decision (allowed, 401, 403, 429, 503) and response class, latency p50/p95/p99 (total and\n" +
			"Usher's share), the most instances at once, billable instance time, anonymous requests and the\n" +
			"busiest anonymous clients. --format json prints every interval.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var res history.Result
			path := client.ServicePath(cfg.Project, cfg.Region, args[0]) + ":metrics?" + url.Values{"window": {window}}.Encode()
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &res); err != nil {
				return err
			}
			return g.print(res, func(w io.Writer) error { return printMetrics(w, args[0], res) })
		},
	}
	cmd.Flags().StringVar(&window, "window", "1h", "how far back: 1h, 6h, 1d or 7d")
	return cmd
}

func printMetrics(out io.Writer, name string, res history.Result) error {
	s := res.Summary
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	total := uint64(0)
	for _, n := range s.Requests {
		total += n
	}
	fmt.Fprintf(w, "SERVICE\t%s (last %s, %d points of %s, nodes %s)\n", name, res.Window, len(res.Points), res.Step, strings.Join(res.Nodes, ","))
	fmt.Fprintf(w, "REQUESTS\t%d: allowed %d, 401 %d, 403 %d, 429 %d, 503 %d\n", total,
		s.Requests["allowed"], s.Requests["401"], s.Requests["403"], s.Requests["429"], s.Requests["503"])
	fmt.Fprintf(w, "RESPONSES\t2xx %d, 3xx %d, 4xx %d, 5xx %d\n", s.Classes["2xx"], s.Classes["3xx"], s.Classes["4xx"], s.Classes["5xx"])
	fmt.Fprintf(w, "ANONYMOUS\t%d\n", s.Anonymous)
	fmt.Fprintf(w, "LATENCY\tp50 %s, p95 %s, p99 %s\n", ms(s.LatencyMs.P50), ms(s.LatencyMs.P95), ms(s.LatencyMs.P99))
	fmt.Fprintf(w, "USHER'S SHARE\tp50 %s, p95 %s, p99 %s\n", ms(s.UsherLatencyMs.P50), ms(s.UsherLatencyMs.P95), ms(s.UsherLatencyMs.P99))
	fmt.Fprintf(w, "INSTANCES\t%d at most\n", s.Instances)
	fmt.Fprintf(w, "BILLABLE\t%.1f instance-seconds\n", s.BillableSeconds)
	for i, c := range res.BusiestClients {
		label := ""
		if i == 0 {
			label = "BUSIEST ANONYMOUS CLIENTS"
		}
		fmt.Fprintf(w, "%s\t%s %d\n", label, c.Address, c.Requests)
	}
	return w.Flush()
}

// ms prints a histogram bound: "≤4ms", or "-" when nothing was measured.
func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("≤%gms", v)
}
