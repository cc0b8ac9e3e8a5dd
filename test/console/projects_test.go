package console_test

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestProjectPicker: the appbar's project leads to the projects the
// signed-in principal may see; picking one shows its services. A principal
// with a role on one project sees that one only.
func TestProjectPicker(t *testing.T) {
	s := startServer(t)
	s.mustCLI(t, "projects", "create", "team-b", "--name", "Team B")
	s.mustCLI(t, "run", "deploy", "team-b-hello", "--image=file://"+helloBin, "--region="+region, "--project=team-b")
	s.mustCLI(t, "projects", "add-iam-policy-binding", "team-b", "--member=user:viewer@example.com", "--role=roles/viewer")

	b := newBrowser(t)
	b.signIn(s.signInLink(t), "owner@usher.localhost")
	b.run("the picker",
		chromedp.Click(`//header//a[contains(@class,'appbar-project')]`, by),
		chromedp.WaitVisible(`//h1[normalize-space()='Projects']`, by),
		chromedp.WaitVisible(`//table[@id='projects-table']//tr[.//*[normalize-space()='`+project+`']]//*[normalize-space()='Current']`, by),
	)
	if n := b.count(`//table[@id='projects-table']/tbody/tr`); n != 2 {
		t.Errorf("owner's projects: got %d rows, want 2", n)
	}
	b.screenshot("projects.png")
	b.run("picking team-b",
		chromedp.Click(link("Team B"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by),
		chromedp.WaitVisible(link("team-b-hello"), by),
		chromedp.WaitVisible(`//header//a[contains(@class,'appbar-project') and contains(., 'team-b')]`, by),
	)

	v := newBrowser(t)
	v.run("the viewer signs in to the picker (no role on the first project)",
		chromedp.Navigate(s.signInLink(t, "--as", "user:viewer@example.com")),
		chromedp.Click(button("Continue as viewer@example.com"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Projects']`, by),
		chromedp.WaitVisible(link("Team B"), by),
	)
	if n := v.count(`//table[@id='projects-table']/tbody/tr`); n != 1 {
		t.Errorf("viewer's projects: got %d rows, want only team-b", n)
	}
}
