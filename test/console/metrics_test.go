package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestMetricsTab: a public service's Metrics tab leads with its anonymous
// traffic and busiest clients, then charts every kind of request, drawn as
// inline SVG under the strict CSP; screenshots at 1024 and 1440 px.
func TestMetricsTab(t *testing.T) {
	s := startServer(t)
	svcURL := s.deploy(t, "charted")
	s.mustCLI(t, "run", "services", "update", "charted", "--region="+region, "--no-invoker-iam-check", "--anonymous-rate-limit=0.01,burst=4")
	for range 6 {
		s.invoke(t, svcURL) // 4 served, 2 rate-limited
	}
	s.deploy(t, "private-charted")

	b := newBrowser(t)
	b.run("signing in", chromedp.Navigate(s.signInLink(t)),
		chromedp.Click(button("Continue as owner@usher.localhost"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by))
	b.run("the Metrics tab", chromedp.Navigate(s.servicePage("charted", "")),
		chromedp.Click(`//nav[@aria-label='Service']//a[normalize-space()='Metrics']`, by),
		chromedp.WaitVisible(`//h2[normalize-space()='Anonymous traffic']`, by))
	text := strings.ToLower(b.text())
	for _, want := range []string{"anonymous requests", "6 (", "rate-limited (429)", "127.0.0.1", "requests by decision", "request latency", "instances", "billable instance time"} {
		if !strings.Contains(text, want) {
			t.Errorf("Metrics tab lacks %q:\n%s", want, text)
		}
	}
	if n := b.count(`//*[local-name()='svg' and contains(@class,'chart-svg')]/*[local-name()='polyline']`); n < 10 {
		t.Errorf("%d chart lines drawn, want at least 10", n)
	}
	for _, w := range []int64{1024, 1440} {
		b.run("resizing", chromedp.EmulateViewport(w, 900))
		// Nothing is wider than the window: the page does not scroll sideways.
		var overflow bool
		b.run("measuring", chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow))
		if overflow {
			t.Errorf("at %d px the Metrics tab scrolls sideways", w)
		}
		b.screenshot("metrics-" + map[int64]string{1024: "1024", 1440: "1440"}[w] + ".png")
	}
	b.run("the 7-day window", chromedp.Click(`//a[normalize-space()='Last 7d']`, by),
		chromedp.WaitVisible(`//h2[normalize-space()='Last 7d']`, by))

	// A private service's tab has no anonymous section.
	b.run("a private service's Metrics tab", chromedp.Navigate(s.servicePage("private-charted", "metrics")),
		chromedp.WaitVisible(`//h2[starts-with(normalize-space(), 'Requests by decision')]`, by))
	if n := b.count(`//h2[normalize-space()='Anonymous traffic']`); n != 0 {
		t.Error("a private service's Metrics tab shows anonymous traffic")
	}
}
