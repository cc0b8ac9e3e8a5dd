package console_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// jobPage is a job's console page, plus an optional sub-path.
func (s *server) jobPage(name, sub string) string {
	u := s.base() + "/console/projects/" + project + "/locations/" + region + "/jobs/" + name
	if sub != "" {
		u += "/" + sub
	}
	return u
}

// TestJobsPageInTheBrowser: Jobs → a job's executions → one execution's
// tasks and logs → Permissions → Grant Access to a runner, who can then run
// the job; a public grant is refused; the page keeps the strict CSP (the
// browser reports any violation as a failure).
func TestJobsPageInTheBrowser(t *testing.T) {
	s := startServer(t)
	s.mustCLI(t, "run", "jobs", "create", "nightly", "--image=file://"+jobtaskBin, "--region="+region,
		"--tasks=3", "--parallelism=2", "--max-retries=1", "--update-env-vars=FAIL_ONCE_TASK=1")
	execution := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "execute", "nightly", "--wait", "--region="+region).stdout)
	runner := strings.TrimSpace(s.mustCLI(t, "iam", "service-accounts", "create", "runner", "--format", "value(email)").stdout)
	if !strings.Contains(runner, "@") {
		runner = "runner@" + project + ".iam.gserviceaccount.com"
	}

	b := newBrowser(t)
	b.signIn(s.signInLink(t), "owner@usher.localhost")
	row := `//tr[.//a[normalize-space()='nightly']]`
	b.run("the jobs list",
		chromedp.Click(`//nav[@aria-label='Products']//a[normalize-space()='Jobs']`, by),
		chromedp.WaitVisible(`//h1[normalize-space()='Jobs']`, by),
		chromedp.WaitVisible(row+`//*[normalize-space()='Succeeded']`, by),
		chromedp.WaitVisible(row+fmt.Sprintf(`//a[normalize-space()=%q]`, execution), by),
	)
	b.screenshot("jobs-list.png")

	b.run("the job's executions",
		chromedp.Click(link("nightly"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='nightly']`, by),
		chromedp.WaitVisible(`//h2[normalize-space()='Executions']`, by),
		chromedp.WaitVisible(`//tr[.//a[normalize-space()=`+fmt.Sprintf("%q", execution)+`]]//*[contains(., '3 / 3 succeeded') and contains(., '1 retried')]`, by),
	)
	b.screenshot("job-executions.png")

	b.run("one execution's tasks and logs",
		chromedp.Click(link(execution), by),
		chromedp.WaitVisible(`#tasks-table`, chromedp.ByQuery),
		chromedp.WaitVisible(`#execution-logs`, chromedp.ByQuery),
	)
	if n := b.count(`//table[@id='tasks-table']/tbody/tr`); n != 3 {
		t.Errorf("tasks table: got %d rows, want 3", n)
	}
	if n := b.count(`//table[@id='tasks-table']/tbody/tr[th[normalize-space()='1']]/td[2][normalize-space()='1']`); n != 1 {
		t.Errorf("task 1's retries: want one row showing 1 retry")
	}
	var logs string
	b.run("reading the logs", chromedp.Text(`#execution-logs`, &logs, chromedp.ByQuery))
	for _, want := range []string{"task 1/3 attempt 0", "failing on purpose", "task 1/3 attempt 1", "task 2/3 attempt 0"} {
		if !strings.Contains(logs, want) {
			t.Errorf("execution logs: want a line containing %q, got:\n%s", want, logs)
		}
	}
	b.screenshot("job-execution.png")

	principals := labelled("textarea", "New principals")
	b.run("the job's Permissions tab",
		chromedp.Click(`//nav[@aria-label='Job']//a[normalize-space()='Permissions']`, by),
		chromedp.WaitVisible(`//h2[normalize-space()='Permissions']`, by),
		chromedp.WaitVisible(`//*[contains(@class,'role-title') and normalize-space()='Owner']`, by),
		chromedp.Click(grantAccess, by),
		chromedp.WaitVisible(principals, by),
		chromedp.SendKeys(principals, "allUsers", by),
	)
	b.chooseRole("Cloud Run Invoker")
	b.run("a public grant is refused",
		chromedp.Click(button("Save"), by),
		chromedp.WaitVisible(`//*[contains(., 'cannot be granted on a job from the console')]`, by),
	)
	if got := s.jobMembers(t, "nightly", "roles/run.invoker"); len(got) != 0 {
		t.Errorf("after refusing allUsers: invokers %v, want none", got)
	}
	b.run("granting the runner",
		chromedp.SetValue(principals, "serviceAccount:"+runner, by),
	)
	b.chooseRole("Cloud Run Invoker")
	b.screenshot("job-grant-access.png")
	b.run("saving",
		chromedp.Click(button("Save"), by),
		chromedp.WaitVisible(`//*[contains(., 'Granted Cloud Run Invoker')]`, by),
		chromedp.WaitVisible(fmt.Sprintf(`//*[contains(@class,'principal') and normalize-space()=%q]`, runner), by),
	)
	b.screenshot("job-permissions.png")
	if got := s.jobMembers(t, "nightly", "roles/run.invoker"); len(got) != 1 || got[0] != "serviceAccount:"+runner {
		t.Errorf("after Grant Access: invokers %v, want [serviceAccount:%s]", got, runner)
	}
	if r := s.cli(t, "run", "jobs", "execute", "nightly", "--region="+region, "--impersonate-service-account="+runner); r.code != 0 {
		t.Errorf("the runner executes the job after the grant: %s", r)
	}

	t.Run("a viewer cannot grant", func(t *testing.T) {
		s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=user:viewer@example.com", "--role=roles/run.viewer")
		vb := newBrowser(t)
		vb.signIn(s.signInLink(t, "--as", "user:viewer@example.com"), "viewer@example.com")
		vb.run("the viewer's job Permissions tab",
			chromedp.Navigate(s.jobPage("nightly", "permissions")),
			chromedp.WaitVisible(`//*[contains(., 'You can view these permissions but not change them')]`, by))
		if n := vb.count(grantAccess); n != 0 {
			t.Errorf("viewer sees %d Grant Access controls, want none", n)
		}
		vb.run("opening the grant form by URL", chromedp.Navigate(s.jobPage("nightly", "permissions/grant")),
			chromedp.WaitVisible(`//h1[normalize-space()="You don't have permission"]`, by))
		var csrf string
		vb.run("reading the CSRF token", chromedp.Value(`input[name=csrf]`, &csrf, chromedp.ByQuery))
		form := urlValues(map[string]string{"members": "user:viewer@example.com", "role": "roles/run.admin", "csrf": csrf})
		got := s.postForm(t, s.jobPage("nightly", "permissions/grant"), form, "Cookie", vb.cookies(s.base()+"/console/"), "Origin", s.base())
		if got.status != http.StatusForbidden {
			t.Errorf("viewer POST grant: got %d, want 403", got.status)
		}
		if got := s.jobMembers(t, "nightly", "roles/run.admin"); len(got) != 0 {
			t.Errorf("after the viewer's POST: admins %v, want none", got)
		}
	})
}

// jobMembers returns who holds role on job name, per the CLI.
func (s *server) jobMembers(t *testing.T, name, role string) []string {
	t.Helper()
	r := s.mustCLI(t, "run", "jobs", "get-iam-policy", name, "--region="+region, "--format", "json")
	var p struct {
		Bindings []struct {
			Role    string   `json:"role"`
			Members []string `json:"members"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("jobs get-iam-policy --format json: %v\n%s", err, r.stdout)
	}
	var out []string
	for _, b := range p.Bindings {
		if b.Role == role {
			out = append(out, b.Members...)
		}
	}
	return out
}
