package console_test

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestOverviewShowsIngressAndVolumes: a service's Overview shows its
// ingress, a disabled default URL (not "Not serving yet") and its
// in-memory volumes.
func TestOverviewShowsIngressAndVolumes(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "inner")
	s.mustCLI(t, "run", "services", "update", "inner", "--region="+region, "--ingress=internal", "--no-default-url",
		"--add-volume=name=cache,type=in-memory,size-limit=8Mi", "--add-volume-mount=volume=cache,mount-path=/tmp/cache")

	b := newBrowser(t)
	b.run("opening the sign-in link", chromedp.Navigate(s.signInLink(t)),
		chromedp.Click(button("Continue as owner@usher.localhost"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by))
	fact := func(term string) string { return `//dt[normalize-space()='` + term + `']/following-sibling::dd[1]` }
	b.run("the overview", chromedp.Navigate(s.servicePage("inner", "")),
		chromedp.WaitVisible(fact("URL")+`//*[normalize-space()='Disabled']`, by),
		chromedp.WaitVisible(fact("Ingress")+`//*[normalize-space()='internal']`, by),
		chromedp.WaitVisible(fact("Default URL")+`//*[normalize-space()='Disabled']`, by),
		chromedp.WaitVisible(fact("In-memory volume")+`[normalize-space()='cache at /tmp/cache, 8Mi']`, by))
	b.screenshot("overview-ingress-volumes.png")
}
