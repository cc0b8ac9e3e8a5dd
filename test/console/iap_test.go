package console_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// The OpenID provider the IAP test signs in with: zitadel's example server,
// a real provider (authorization code flow, PKCE, consent-free login form),
// with its built-in users.
const (
	opUser      = "test-user@localhost"
	opEmail     = "test-user@zitadel.ch"
	opOtherUser = "test-user2"
	opPassword  = "verysecure"
)

// TestIAPBrowserSignInWithProvider: a person reaches a service deployed with
// --iap by signing in through a real OpenID provider in Chromium, sees the
// app's page, signs out and is sent to sign in again; a person without the
// accessor role sees the 403 page naming them.
func TestIAPBrowserSignInWithProvider(t *testing.T) {
	b := newBrowser(t)
	opPort := freePort(t)
	issuer := "http://localhost:" + opPort + "/"
	dir := t.TempDir()
	issuers := filepath.Join(dir, "issuers.yaml")
	if err := os.WriteFile(issuers, []byte(fmt.Sprintf("- issuer: %s\n  name: Test OP\n  clientID: web\n  clientSecret: secret\n", issuer)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), DropEnv: displayVar, Args: []string{"--trusted-issuers", issuers}})
	s := &server{Server: p, http: p.HTTP}
	startOP(t, opPort, s.base()+"/_iap/oidc/callback")

	s.mustCLI(t, "run", "deploy", "dashboard", "--image=file://"+helloBin, "--region="+region, "--iap")
	svcURL := strings.TrimSpace(s.mustCLI(t, "run", "services", "describe", "dashboard", "--region="+region, "--format=value(status.url)").stdout)
	s.mustCLI(t, "iap", "web", "add-iam-policy-binding", "--resource-type=cloud-run", "--service=dashboard",
		"--member=user:"+opEmail, "--role=roles/iap.httpsResourceAccessor")

	signIn := func(b *browser, user string) {
		t.Helper()
		b.run("open the service", chromedp.Navigate(svcURL+"/"), chromedp.WaitVisible(link("Sign in with Test OP"), chromedp.BySearch))
		b.screenshot("iap-signin.png")
		b.run("pick the provider", chromedp.Click(link("Sign in with Test OP"), chromedp.BySearch),
			chromedp.WaitVisible(`#username`, chromedp.ByQuery))
		b.run("log in at the provider", chromedp.SendKeys(`#username`, user, chromedp.ByQuery),
			chromedp.SendKeys(`#password`, opPassword, chromedp.ByQuery),
			chromedp.Click(button("Login"), chromedp.BySearch),
			chromedp.WaitVisible("body", chromedp.ByQuery))
	}

	signIn(b, opUser)
	var loc string
	b.run("back at the service", chromedp.WaitVisible(`//body[contains(., 'Hello World!')]`, chromedp.BySearch), chromedp.Location(&loc))
	if text := b.text(); !strings.Contains(text, "Hello World!") || !strings.HasPrefix(loc, svcURL) {
		t.Fatalf("after signing in: at %s, page %q; want the app's page", loc, text)
	}
	b.screenshot("iap-app.png")
	if c := b.cookies(svcURL); !strings.Contains(c, "GCP_IAP_AUTH_TOKEN=") {
		t.Errorf("cookies on the service host: got %q, want the IAP session", c)
	}
	if c := b.cookies(s.base()); strings.Contains(c, "GCP_IAP_AUTH_TOKEN=") {
		t.Errorf("cookies on the API host: got %q, want no IAP session there", c)
	}

	b.run("sign out", chromedp.Navigate(svcURL+"/_gcp_iap/clear_login_cookie"), chromedp.WaitVisible("body", chromedp.ByQuery))
	if text := b.text(); !strings.Contains(text, "signed out") {
		t.Errorf("sign-out page: got %q", text)
	}
	b.run("open the service again", chromedp.Navigate(svcURL+"/"), chromedp.WaitVisible(link("Sign in with Test OP"), chromedp.BySearch))

	other := newBrowser(t)
	signIn(other, opOtherUser)
	other.run("the 403 page", chromedp.WaitVisible(`//body[contains(., '403')]`, chromedp.BySearch))
	if text := other.text(); !strings.Contains(text, "403") || !strings.Contains(text, "test-user2@zitadel.ch") || !strings.Contains(text, "roles/iap.httpsResourceAccessor") {
		t.Errorf("a person without the role: got %q, want the 403 page naming them and the role", text)
	}
	other.screenshot("iap-forbidden.png")
}

// startOP runs zitadel's example OpenID provider on port, allowing
// redirectURI, until the test ends.
func startOP(t *testing.T, port, redirectURI string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "op")
	root, err := usherproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, "github.com/zitadel/oidc/v3/example/server")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the OpenID provider: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "REDIRECT_URI="+redirectURI)
	logf, err := os.Create(filepath.Join(t.TempDir(), "op.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("OpenID provider log:\n%s", b)
		}
	})
	usherproc.Poll(t, 30*time.Second, "the OpenID provider answers discovery", func() (bool, string) {
		r, err := http.Get("http://localhost:" + port + "/.well-known/openid-configuration")
		if err != nil {
			return false, err.Error()
		}
		r.Body.Close()
		return r.StatusCode == 200, r.Status
	})
}

// freePort is a TCP port nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// TestIAPConsoleToggle: the Overview shows whether IAP is on and an owner
// turns it on and off there; turning it off on a service allUsers may
// invoke asks first, as granting allUsers does.
func TestIAPConsoleToggle(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "toggled")
	s.mustCLI(t, "run", "services", "add-iam-policy-binding", "toggled", "--region="+region, "--member=allUsers", "--role=roles/run.invoker")
	b := newBrowser(t)
	b.run("sign in", chromedp.Navigate(s.signInLink(t)), chromedp.Click(button("Continue as owner@usher.localhost"), chromedp.BySearch),
		chromedp.WaitVisible(`//h1[normalize-space()='Services']`, chromedp.BySearch))
	page := s.base() + "/console/projects/" + project + "/locations/" + region + "/services/toggled"
	b.run("open the service", chromedp.Navigate(page), chromedp.WaitVisible(button("Turn IAP on"), chromedp.BySearch))
	b.run("turn IAP on", chromedp.Click(button("Turn IAP on"), chromedp.BySearch), chromedp.WaitVisible(button("Turn IAP off"), chromedp.BySearch))
	if text := b.text(); !strings.Contains(text, "Identity-Aware Proxy is on") {
		t.Errorf("after turning IAP on: got %q", text)
	}
	b.screenshot("iap-console-on.png")
	if got := s.members(t, "toggled", "roles/run.invoker"); !strings.Contains(strings.Join(got, ","), "gcp-sa-iap") {
		t.Errorf("invokers after turning IAP on: got %q, want the IAP service agent", got)
	}
	b.run("turn IAP off", chromedp.Click(button("Turn IAP off"), chromedp.BySearch), chromedp.WaitVisible(button("Turn IAP off and make it public"), chromedp.BySearch))
	if text := b.text(); !strings.Contains(text, "public to anyone") {
		t.Errorf("the confirmation: got %q", text)
	}
	b.run("confirm", chromedp.Click(button("Turn IAP off and make it public"), chromedp.BySearch), chromedp.WaitVisible(button("Turn IAP on"), chromedp.BySearch))
}
