package console_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// screenshotDir is where the tests leave screenshots for people to look at
// (gitignored). -update-docs also copies the Permissions tab to docs/.
const screenshotDir = "screenshots"

var updateDocs = flag.Bool("update-docs", false, "copy the Permissions tab screenshot to docs/console-permissions.png")

// chromiumPath finds Debian's chromium (or another Chromium-based browser).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab with its own cookies.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts headless Chromium for the test. Without a Chromium it
// skips loudly, except in CI, where the browser tests must run.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		msg := "\n\n" + strings.Repeat("*", 78) + "\n*** NO CHROMIUM FOUND: the web console's BROWSER TESTS DID NOT RUN.\n" +
			"*** Install Debian's chromium (apt-get install -y chromium; .ci/run does).\n" + strings.Repeat("*", 78) + "\n"
		fmt.Fprint(os.Stderr, msg)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1440, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("proxy-server", "direct://"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// Chromium reports CSP violations (an inline script or style, say) and
	// script errors as log entries and exceptions: any is a failure.
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError && !strings.Contains(ev.Entry.Text, "Failed to load resource") {
				msg = ev.Entry.Text
			}
		case *runtime.EventExceptionThrown:
			msg = ev.ExceptionDetails.Error()
		}
		if msg != "" {
			mu.Lock()
			problems = append(problems, msg)
			mu.Unlock()
		}
	})
	// The first Run starts the browser; it must not carry a timeout, or the
	// browser would end with it.
	if err := chromedp.Run(ctx, cdplog.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("the browser reported: %s", p)
		}
	})
	return &browser{t: t, ctx: ctx}
}

// run runs actions; on failure it saves a screenshot and the page's text.
func (b *browser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var loc, text string
		var png []byte
		dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer dcancel()
		chromedp.Run(dctx, chromedp.Location(&loc), chromedp.Text("body", &text, chromedp.ByQuery), chromedp.FullScreenshot(&png, 100))
		if len(png) > 0 {
			b.save("failure-"+strings.ReplaceAll(b.t.Name(), "/", "-")+".png", png)
		}
		b.t.Fatalf("%s: %v\npage %s:\n%s", what, err, loc, text)
	}
}

// text returns the visible text of the page.
func (b *browser) text() string {
	b.t.Helper()
	var s string
	b.run("reading the page", chromedp.Text("body", &s, chromedp.ByQuery))
	return s
}

// count returns how many nodes an XPath matches.
func (b *browser) count(xpath string) int {
	b.t.Helper()
	var n int
	b.run("counting "+xpath, chromedp.Evaluate(
		fmt.Sprintf(`document.evaluate(%q, document, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null).snapshotLength`, xpath), &n))
	return n
}

// screenshot saves the whole page as name in the screenshot folder.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	var png []byte
	b.run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
	return b.save(name, png)
}

func (b *browser) save(name string, png []byte) string {
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(screenshotDir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	b.t.Logf("screenshot: %s", abs)
	return path
}

// cookies returns the browser's cookies for url as a Cookie header value.
func (b *browser) cookies(url string) string {
	b.t.Helper()
	var parts []string
	b.run("reading cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		cs, err := network.GetCookies().WithURLs([]string{url}).Do(ctx)
		for _, c := range cs {
			parts = append(parts, c.Name+"="+c.Value)
		}
		return err
	}))
	return strings.Join(parts, "; ")
}

// XPaths that find controls the way assistive technology does: by their
// visible label or text.
func button(text string) string {
	return fmt.Sprintf(`//button[normalize-space()=%q]`, text)
}

func link(text string) string {
	return fmt.Sprintf(`//a[normalize-space()=%q]`, text)
}

// labelled is the form control whose <label> reads text.
func labelled(tag, text string) string {
	return fmt.Sprintf(`//%s[@id=//label[normalize-space()=%q]/@for]`, tag, text)
}

const grantAccess = `//a[contains(normalize-space(), 'Grant Access')]`

// by finds nodes by XPath (DOM.performSearch).
var by = chromedp.BySearch

// signIn opens a sign-in link and continues to the services list.
func (b *browser) signIn(link string, email string) {
	b.t.Helper()
	b.run("signing in",
		chromedp.Navigate(link),
		chromedp.WaitVisible(button("Continue as "+email), by),
		chromedp.Click(button("Continue as "+email), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by),
	)
}

// chooseRole picks a role in Select a role by its title.
func (b *browser) chooseRole(title string) {
	b.t.Helper()
	sel := labelled("select", "Select a role")
	var value string
	var ok bool
	b.run("finding role "+title,
		chromedp.AttributeValue(sel+fmt.Sprintf(`//option[normalize-space()=%q]`, title), "value", &value, &ok, by))
	if !ok || value == "" {
		b.t.Fatalf("Select a role has no option titled %q", title)
	}
	b.run("choosing "+title, chromedp.SetValue(sel, value, by))
}

// TestGrantPublicAccessInTheBrowser is Cloud Run's own flow: Permissions →
// Grant Access → allUsers → Cloud Run Invoker → Save → confirm, and back.
func TestGrantPublicAccessInTheBrowser(t *testing.T) {
	s := startServer(t)
	helloURL := s.deploy(t, "hello")
	if got := s.invoke(t, helloURL); got.status != http.StatusUnauthorized {
		t.Fatalf("before granting: GET %s: got %d, want 401", helloURL, got.status)
	}
	b := newBrowser(t)
	b.run("opening the sign-in link", chromedp.Navigate(s.signInLink(t)),
		chromedp.WaitVisible(button("Continue as owner@usher.localhost"), by))
	b.screenshot("signin.png")
	b.run("continuing", chromedp.Click(button("Continue as owner@usher.localhost"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, by))

	row := `//tr[.//a[normalize-space()='hello']]`
	b.run("the services list",
		chromedp.WaitVisible(row+`//*[normalize-space()='Require authentication']`, by),
		chromedp.WaitVisible(row+`//*[normalize-space()='us-central1']`, by),
		chromedp.WaitVisible(row+fmt.Sprintf(`//a[normalize-space()=%q]`, helloURL), by),
	)
	for _, col := range []string{"Name", "URL", "Region", "Last deployed", "Authentication"} {
		if b.count(fmt.Sprintf(`//th[normalize-space()=%q]`, col)) != 1 {
			t.Errorf("services list has no %q column", col)
		}
	}
	b.screenshot("services-list.png")

	b.run("opening the service's Permissions tab",
		chromedp.Click(link("hello"), by),
		chromedp.WaitVisible(`//h1[normalize-space()='hello']`, by),
		chromedp.Click(`//nav[@aria-label='Service']//a[normalize-space()='Permissions']`, by),
		chromedp.WaitVisible(`//h2[normalize-space()='Permissions']`, by),
		chromedp.WaitVisible(`//*[contains(@class,'role-title') and normalize-space()='Owner']`, by),
	)
	if !strings.Contains(b.text(), "Inherited") {
		t.Errorf("Permissions tab does not show the project's owner grant as inherited:\n%s", b.text())
	}

	principals := labelled("textarea", "New principals")
	b.run("Grant Access with mistakes",
		chromedp.Click(grantAccess, by),
		chromedp.WaitVisible(principals, by),
		chromedp.SendKeys(principals, "allusers, alice@example.com", by),
	)
	b.chooseRole("Cloud Run Invoker")
	b.run("Save shows what is wrong, inline",
		chromedp.Click(button("Save"), by),
		chromedp.WaitVisible(`//ul[@id='members-errors']/li[contains(., 'did you mean "allUsers"')]`, by),
		chromedp.WaitVisible(`//ul[@id='members-errors']/li[contains(., 'did you mean "user:alice@example.com"')]`, by),
		chromedp.WaitVisible(principals+`[@aria-invalid='true' and contains(@aria-describedby, 'members-errors')]`, by),
	)
	b.screenshot("grant-errors.png")
	b.run("Grant Access → allUsers",
		chromedp.Clear(principals, by),
		chromedp.SendKeys(principals, "allUsers", by),
		chromedp.WaitVisible(`//*[@id='public-hint']`, by),
	)
	b.chooseRole("Cloud Run Invoker")
	b.screenshot("grant-access.png")
	b.run("Save asks to confirm",
		chromedp.Click(button("Save"), by),
		chromedp.WaitVisible(`//h2[normalize-space()='Make hello public?']`, by),
	)
	if txt := b.text(); !strings.Contains(txt, "anyone on the internet") {
		t.Errorf("confirmation page does not say what allUsers means:\n%s", txt)
	}
	if got := s.members(t, "hello", "roles/run.invoker"); len(got) != 0 {
		t.Fatalf("before confirming: invokers %v, want none", got)
	}
	b.screenshot("confirm-public.png")

	removeAllUsers := `//button[@aria-label='Remove allUsers from Cloud Run Invoker']`
	b.run("confirming",
		chromedp.Click(button("Allow public access"), by),
		chromedp.WaitVisible(removeAllUsers, by),
		chromedp.WaitVisible(`//*[@role='status' and contains(., 'Granted Cloud Run Invoker')]`, by),
	)
	perms := b.screenshot("permissions.png")
	if *updateDocs {
		copyFile(t, perms, filepath.Join("..", "..", "docs", "console-permissions.png"))
	}
	if got := s.members(t, "hello", "roles/run.invoker"); !sameMembers(got, []string{"allUsers"}) {
		t.Fatalf("after confirming: invokers %v, want [allUsers]", got)
	}
	if got := s.invoke(t, helloURL); got.status != http.StatusOK || got.body != "Hello World!\n" {
		t.Fatalf("public: GET %s: got %d %q, want 200 \"Hello World!\"", helloURL, got.status, got.body)
	}

	b.run("removing allUsers",
		chromedp.Click(removeAllUsers, by),
		chromedp.WaitVisible(`//*[@role='status' and contains(., 'Removed allUsers from Cloud Run Invoker')]`, by),
	)
	if b.count(removeAllUsers) != 0 {
		t.Errorf("allUsers still listed after removing it")
	}
	if got := s.invoke(t, helloURL); got.status != http.StatusUnauthorized {
		t.Fatalf("after removing allUsers: GET %s: got %d, want 401", helloURL, got.status)
	}

	// The other tabs render what the API reports.
	for _, tc := range []struct{ tab, heading, shot string }{
		{"Overview", "Traffic", "overview.png"},
		{"Revisions", "Revisions", "revisions.png"},
		{"Logs", "Denied requests", "logs.png"},
	} {
		b.run("the "+tc.tab+" tab",
			chromedp.Click(`//nav[@aria-label='Service']//a[normalize-space()='`+tc.tab+`']`, by),
			chromedp.WaitVisible(`//h2[normalize-space()='`+tc.heading+`']`, by),
		)
		b.screenshot(tc.shot)
	}
	// What the instance printed on start (examples/hello logs its port), and
	// the requests the gateway refused, with the reason (the anonymous 401s
	// above).
	if txt := b.text(); !strings.Contains(txt, "hello: listening on") || !strings.Contains(txt, "no credentials") {
		t.Errorf("Logs tab: want the instance's output and the refused requests with their reason, got:\n%s", txt)
	}
}

// TestViewerCannotGrant: a run.viewer sees the policy, gets no Grant Access
// button, and the server refuses its POSTs.
func TestViewerCannotGrant(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "hello")
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=user:viewer@example.com", "--role=roles/run.viewer")
	link := s.signInLink(t, "--as", "user:viewer@example.com")

	b := newBrowser(t)
	b.signIn(link, "viewer@example.com")
	b.run("the viewer's Permissions tab",
		chromedp.Navigate(s.servicePage("hello", "permissions")),
		chromedp.WaitVisible(`//h2[normalize-space()='Permissions']`, by),
		chromedp.WaitVisible(`//*[contains(., 'You can view these permissions but not change them')]`, by),
	)
	b.screenshot("permissions-viewer.png")
	if n := b.count(grantAccess); n != 0 {
		t.Errorf("viewer sees %d Grant Access controls, want none", n)
	}
	if n := b.count(`//button[starts-with(@aria-label, 'Remove ')]`); n != 0 {
		t.Errorf("viewer sees %d Remove buttons, want none", n)
	}
	var principal string
	b.run("reading who is signed in", chromedp.Text(`.appbar-email`, &principal, chromedp.ByQuery))
	if principal != "user:viewer@example.com" {
		t.Errorf("signed in as %q, want user:viewer@example.com", principal)
	}

	// The form is refused too, and so are POSTs made with the viewer's own
	// session and CSRF token.
	b.run("opening the grant form by URL", chromedp.Navigate(s.servicePage("hello", "permissions/grant")),
		chromedp.WaitVisible(`//h1[normalize-space()="You don't have permission"]`, by))
	b.screenshot("forbidden.png")
	var csrf string
	b.run("reading the CSRF token", chromedp.Value(`input[name=csrf]`, &csrf, chromedp.ByQuery))
	cookie := b.cookies(s.base() + "/console/")
	etag := s.policyEtag(t, "hello")
	for _, tc := range []struct {
		path string
		form map[string]string
	}{
		{"permissions/grant", map[string]string{"members": "user:viewer@example.com", "role": "roles/run.invoker", "confirm_public": "yes"}},
		{"permissions/grant", map[string]string{"members": "allUsers", "role": "roles/run.invoker", "confirm_public": "yes"}},
		{"permissions/remove", map[string]string{"member": "user:owner@usher.localhost", "role": "roles/owner"}},
	} {
		form := urlValues(tc.form)
		form.Set("csrf", csrf)
		form.Set("etag", etag)
		got := s.postForm(t, s.servicePage("hello", tc.path), form, "Cookie", cookie, "Origin", s.base())
		if got.status != http.StatusForbidden {
			t.Errorf("viewer POST %s %v: got %d, want 403\n%s", tc.path, tc.form, got.status, got.body)
		}
	}
	if got := s.members(t, "hello", "roles/run.invoker"); len(got) != 0 {
		t.Errorf("after the viewer's POSTs: invokers %v, want none", got)
	}
}

// TestStaleFormConflict: a form saved after someone else changed the policy
// reports the conflict and writes nothing; saving again applies it.
func TestStaleFormConflict(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "hello")
	b := newBrowser(t)
	b.signIn(s.signInLink(t), "owner@usher.localhost")

	b.run("opening Grant Access",
		chromedp.Navigate(s.servicePage("hello", "permissions")),
		chromedp.Click(grantAccess, by),
		chromedp.WaitVisible(labelled("textarea", "New principals"), by),
		chromedp.SendKeys(labelled("textarea", "New principals"), "user:alice@example.com", by),
	)
	b.chooseRole("Cloud Run Invoker")
	// Meanwhile, someone else grants bob.
	s.mustCLI(t, "run", "services", "add-iam-policy-binding", "hello", "--member=user:bob@example.com", "--role=roles/run.invoker", "--region="+region)

	b.run("saving the stale form",
		chromedp.Click(button("Save"), by),
		chromedp.WaitVisible(`//*[@role='alert' and contains(., 'The policy changed while you were editing')]`, by),
		chromedp.WaitVisible(`//*[contains(@class,'principal') and normalize-space()='bob@example.com']`, by),
	)
	b.screenshot("conflict.png")
	if got := s.members(t, "hello", "roles/run.invoker"); !sameMembers(got, []string{"user:bob@example.com"}) {
		t.Fatalf("after the stale save: invokers %v, want only bob (nothing overwritten, nothing added)", got)
	}
	var kept string
	b.run("reading the kept form", chromedp.Value(labelled("textarea", "New principals"), &kept, by))
	if strings.TrimSpace(kept) != "user:alice@example.com" {
		t.Errorf("the form lost its input: New principals = %q", kept)
	}

	b.run("saving again",
		chromedp.Click(button("Save"), by),
		chromedp.WaitVisible(`//button[@aria-label='Remove user:alice@example.com from Cloud Run Invoker']`, by),
	)
	if got := s.members(t, "hello", "roles/run.invoker"); !sameMembers(got, []string{"user:alice@example.com", "user:bob@example.com"}) {
		t.Fatalf("after saving again: invokers %v, want alice and bob", got)
	}

	// A Remove button rendered before a change is stale the same way.
	s.mustCLI(t, "run", "services", "remove-iam-policy-binding", "hello", "--member=user:bob@example.com", "--role=roles/run.invoker", "--region="+region)
	b.run("removing with a stale page",
		chromedp.Click(`//button[@aria-label='Remove user:alice@example.com from Cloud Run Invoker']`, by),
		chromedp.WaitVisible(`//*[@role='alert' and contains(., 'Conflict: nothing was changed')]`, by),
	)
	if got := s.members(t, "hello", "roles/run.invoker"); !sameMembers(got, []string{"user:alice@example.com"}) {
		t.Fatalf("after the stale remove: invokers %v, want alice still there", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("updated %s", to)
}
