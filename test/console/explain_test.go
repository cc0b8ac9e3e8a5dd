package console_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestDenialLinksToItsExplanation: a request refused with 403 is on the
// Logs tab with a "Why?" link, which explains the refusal (the principal
// lacks run.routes.invoke, which roles would grant it) and, once granted,
// names the binding.
func TestDenialLinksToItsExplanation(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "hello")
	s.mustCLI(t, "iam", "service-accounts", "create", "why-robot")
	sa := "why-robot@" + project + ".iam.gserviceaccount.com"
	tok := strings.TrimSpace(s.mustCLI(t, "auth", "print-identity-token", "--impersonate-service-account", sa, "--audiences", url).stdout)
	if r := s.do(t, http.MethodGet, url+"/", nil, "Authorization", "Bearer "+tok); r.status != http.StatusForbidden {
		t.Fatalf("ungranted token: got %d, want 403", r.status)
	}

	b := newBrowser(t)
	b.run("signing in", chromedp.Navigate(s.signInLink(t)),
		chromedp.Click(button("Continue as owner@usher.localhost"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by))
	why := `//tr[.//*[normalize-space()='serviceAccount:` + sa + `']]//a[normalize-space()='Why?']`
	b.run("the Logs tab lists the 403 with a Why? link",
		chromedp.Navigate(s.servicePage("hello", "logs")),
		chromedp.WaitVisible(`//h2[normalize-space()='Denied requests']`, by),
		chromedp.WaitVisible(why, by),
	)
	b.run("following it", chromedp.Click(why, by), chromedp.WaitVisible(`//*[@id='troubleshoot-access']`, by))
	b.screenshot("troubleshoot.png")
	txt := b.text()
	for _, want := range []string{"NOT_GRANTED", "does not have run.routes.invoke", "roles/run.invoker", "is not among those members"} {
		if !strings.Contains(txt, want) {
			t.Errorf("explanation page lacks %q:\n%s", want, txt)
		}
	}

	s.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=serviceAccount:"+sa, "--role=roles/run.invoker", "--region="+region)
	b.run("reloading after the grant", chromedp.Reload(), chromedp.WaitVisible(`//*[@id='troubleshoot-access' and normalize-space()='GRANTED']`, by))
	if txt := b.text(); !strings.Contains(txt, "holds run.routes.invoke through roles/run.invoker granted to serviceAccount:"+sa) {
		t.Errorf("explanation after the grant does not name the binding:\n%s", txt)
	}
}
