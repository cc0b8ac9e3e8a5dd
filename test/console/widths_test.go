package console_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestReadableAtTwoWidths: the services table, a service's overview and its
// Permissions tab fit a 1024 px and a 1440 px window (no sideways scrolling
// of the page), with long names, URLs and service-account emails;
// screenshots of each.
func TestReadableAtTwoWidths(t *testing.T) {
	s := startServer(t)
	const name = "a-service-with-a-rather-long-name-for-layout"
	s.deploy(t, name)
	s.deploy(t, "short")
	s.mustCLI(t, "iam", "service-accounts", "create", "a-long-service-account-name")
	s.mustCLI(t, "run", "services", "add-iam-policy-binding", name, "--region="+region,
		"--member=serviceAccount:a-long-service-account-name@"+project+".iam.gserviceaccount.com", "--role=roles/run.invoker")

	b := newBrowser(t)
	b.run("signing in", chromedp.Navigate(s.signInLink(t)),
		chromedp.Click(button("Continue as owner@usher.localhost"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by))
	for _, page := range []struct{ shot, url, ready string }{
		{"services", s.base() + "/console/projects/" + project + "/services", `//h1[normalize-space()='Services']`},
		{"overview", s.servicePage(name, ""), `//h1[normalize-space()='` + name + `']`},
		{"permissions", s.servicePage(name, "permissions"), `//h1[normalize-space()='` + name + `']`},
	} {
		for _, w := range []int64{1024, 1440} {
			b.run(fmt.Sprintf("%s at %d px", page.shot, w), chromedp.EmulateViewport(w, 900),
				chromedp.Navigate(page.url), chromedp.WaitVisible(page.ready, by))
			var overflow bool
			b.run("measuring", chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow))
			if overflow {
				t.Errorf("%s at %d px scrolls sideways", page.shot, w)
			}
			b.screenshot(fmt.Sprintf("%s-%d.png", page.shot, w))
		}
	}
}
