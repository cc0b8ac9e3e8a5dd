package console_test

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestOverviewShowsAnonymousRateLimit: a public service's Overview says
// whether its anonymous callers are limited, and to what, in words.
func TestOverviewShowsAnonymousRateLimit(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "limited")
	s.mustCLI(t, "run", "services", "update", "limited", "--region="+region, "--no-invoker-iam-check", "--anonymous-rate-limit=5,burst=10")
	s.deploy(t, "unlimited")
	s.mustCLI(t, "run", "services", "update", "unlimited", "--region="+region, "--no-invoker-iam-check")

	b := newBrowser(t)
	b.run("opening the sign-in link", chromedp.Navigate(s.signInLink(t)),
		chromedp.Click(button("Continue as owner@usher.localhost"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by))
	fact := `//dt[normalize-space()='Anonymous rate limit']/following-sibling::dd[1]`
	b.run("the limited service's overview", chromedp.Navigate(s.servicePage("limited", "")),
		chromedp.WaitVisible(fact+`//*[normalize-space()='5/s per address (burst 10), 500/s in all (burst 500)']`, by))
	b.screenshot("overview-anonymous-rate-limit.png")
	b.run("the unlimited public service's overview", chromedp.Navigate(s.servicePage("unlimited", "")),
		chromedp.WaitVisible(fact+`//*[normalize-space()='None']`, by),
		chromedp.WaitVisible(fact+`//*[contains(normalize-space(), 'anonymous callers are not limited')]`, by))
}
