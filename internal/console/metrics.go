package console

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/history"
)

// The Metrics tab: a service's history (package history) as charts drawn
// here, as inline SVG (no script, so the strict CSP stays), over 1 h, 6 h,
// 1 d or 7 d. A public service's tab leads with its anonymous traffic.

// chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW = 600
	chartH = 150
)

type metricsView struct {
	Head    serviceHead
	Window  string
	Windows []tab
	Public  bool
	Summary history.Point
	Total   uint64
	// AnonymousRate is anonymous requests per second over the window.
	AnonymousRate string
	Clients       []history.Client
	Charts        []chart
	Nodes         string
}

// chart is one SVG line chart.
type chart struct {
	ID, Title, Unit string
	YMax            string // the top gridline's value
	From, To        string // the x axis' ends
	Lines           []chartLine
	Empty           bool
}

type chartLine struct {
	Label, Class string
	Points       string // SVG polyline points
	Last         string // the last interval's value, for the legend
}

func (c *Console) metrics(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, err := c.loadService(r, s, "metrics")
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	window := r.URL.Query().Get("window")
	if _, ok := history.Windows[window]; !ok {
		window = "1h"
	}
	res, err := ls.b.serviceMetrics(ref.Project, ref.Region, ref.Name, window)
	if err != nil {
		return err
	}
	v := metricsView{Head: ls.Head, Window: window, Public: ls.Head.Auth.Public, Summary: res.Summary,
		Clients: res.BusiestClients, Nodes: strings.Join(res.Nodes, ", ")}
	for _, wd := range []string{"1h", "6h", "1d", "7d"} {
		v.Windows = append(v.Windows, tab{Label: wd, Link: ref.URL("metrics") + "?window=" + wd, Current: wd == window})
	}
	for _, n := range res.Summary.Requests {
		v.Total += n
	}
	span := history.Windows[window]
	v.AnonymousRate = strconv.FormatFloat(float64(res.Summary.Anonymous)/span.Seconds(), 'g', 3, 64)
	v.Charts = charts(res, span, c.cfg.Now())
	return c.pages.render(w, http.StatusOK, "metrics.html", c.newView(s, ref.Project, ls.Service.Metadata.Name+" · Metrics", v))
}

// charts draws res's points over the span ending at now: every interval of
// the window gets a value (zero where nothing happened).
func charts(res history.Result, span time.Duration, now time.Time) []chart {
	step, err := time.ParseDuration(res.Step)
	if err != nil || step <= 0 {
		return nil
	}
	end := now.Truncate(step)
	start := end.Add(-span)
	n := int(span / step)
	at := map[int64]history.Point{}
	for _, p := range res.Points {
		at[p.Start.Unix()] = p
	}
	series := func(f func(history.Point) float64) []float64 {
		vals := make([]float64, n+1)
		for i := range vals {
			if p, ok := at[start.Add(time.Duration(i)*step).Unix()]; ok {
				vals[i] = f(p)
			}
		}
		return vals
	}
	perSec := step.Seconds()
	rate := func(key string) func(history.Point) float64 {
		return func(p history.Point) float64 { return float64(p.Requests[key]) / perSec }
	}
	class := func(key string) func(history.Point) float64 {
		return func(p history.Point) float64 { return float64(p.Classes[key]) / perSec }
	}
	mk := func(id, title, unit string, lines ...struct {
		label, class string
		f            func(history.Point) float64
	}) chart {
		ch := chart{ID: id, Title: title, Unit: unit, From: start.UTC().Format("Jan 2 15:04"), To: end.UTC().Format("Jan 2 15:04 UTC")}
		vals := make([][]float64, len(lines))
		top := 0.0
		for i, l := range lines {
			vals[i] = series(l.f)
			for _, v := range vals[i] {
				top = max(top, v)
			}
		}
		ch.Empty = top == 0
		top = niceCeil(top)
		ch.YMax = strconv.FormatFloat(top, 'g', 3, 64)
		for i, l := range lines {
			var b strings.Builder
			for j, v := range vals[i] {
				x := float64(chartW) * float64(j) / float64(n)
				y := float64(chartH) - float64(chartH)*v/top
				fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
			}
			ch.Lines = append(ch.Lines, chartLine{Label: l.label, Class: l.class, Points: strings.TrimSpace(b.String()),
				Last: strconv.FormatFloat(vals[i][len(vals[i])-1], 'g', 3, 64)})
		}
		return ch
	}
	type line = struct {
		label, class string
		f            func(history.Point) float64
	}
	return []chart{
		mk("anonymous", "Anonymous requests", "per second", line{"anonymous", "s-anon", func(p history.Point) float64 { return float64(p.Anonymous) / perSec }},
			line{"429 rate-limited", "s-429", rate("429")}),
		mk("requests", "Requests by decision", "per second", line{"allowed", "s-ok", rate("allowed")}, line{"401", "s-401", rate("401")},
			line{"403", "s-403", rate("403")}, line{"429", "s-429", rate("429")}, line{"503", "s-503", rate("503")}),
		mk("classes", "Responses of allowed requests", "per second", line{"2xx", "s-ok", class("2xx")}, line{"3xx", "s-3xx", class("3xx")},
			line{"4xx", "s-403", class("4xx")}, line{"5xx", "s-503", class("5xx")}),
		mk("latency", "Request latency", "ms (bucket bound)", line{"p50", "s-ok", func(p history.Point) float64 { return p.LatencyMs.P50 }},
			line{"p95", "s-3xx", func(p history.Point) float64 { return p.LatencyMs.P95 }},
			line{"p99", "s-503", func(p history.Point) float64 { return p.LatencyMs.P99 }},
			line{"Usher's share, p99", "s-anon", func(p history.Point) float64 { return p.UsherLatencyMs.P99 }}),
		mk("instances", "Instances", "at most, all nodes", line{"instances", "s-ok", func(p history.Point) float64 { return float64(p.Instances) }}),
		mk("billable", "Billable instance time", "seconds per interval", line{"billable", "s-3xx", func(p history.Point) float64 { return p.BillableSeconds }}),
	}
}

// niceCeil rounds v up to 1, 2 or 5 × a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
