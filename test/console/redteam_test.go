package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestRedTeamSessionOutlivesRecreatedAccount: a console session is a
// credential like a token; one made for a service account must not act
// as a re-created account of the same email (Google: a re-created account
// is a new principal, and nothing of the old one applies to it).
func TestRedTeamSessionOutlivesRecreatedAccount(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "hello")
	s.mustCLI(t, "iam", "service-accounts", "create", "robot-sa")
	robot := "robot-sa@" + project + ".iam.gserviceaccount.com"
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+robot, "--role=roles/viewer")

	link := s.signInLink(t, "--impersonate-service-account", robot)
	code := strings.TrimPrefix(link, s.base()+"/console/signin?code=")
	signin := s.postForm(t, s.base()+"/console/signin", url.Values{"code": {code}}, "Origin", s.base())
	if signin.status != http.StatusSeeOther {
		t.Fatalf("POST sign-in: got %d\n%s", signin.status, signin.body)
	}
	cookie, _, _ := strings.Cut(signin.header.Get("Set-Cookie"), ";")
	page := s.servicePage("hello", "")
	if got := s.do(t, http.MethodGet, page, nil, "Cookie", cookie); got.status != http.StatusOK {
		t.Fatalf("service page as the robot: got %d, want 200", got.status)
	}

	s.mustCLI(t, "iam", "service-accounts", "delete", robot, "--quiet")
	if got := s.do(t, http.MethodGet, page, nil, "Cookie", cookie); got.status == http.StatusOK {
		t.Errorf("service page with a deleted account's session: got %d, want a refusal", got.status)
	}
	// Someone else re-creates the email and grants the new account viewer.
	s.mustCLI(t, "iam", "service-accounts", "create", "robot-sa")
	s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+robot, "--role=roles/viewer")
	if got := s.do(t, http.MethodGet, page, nil, "Cookie", cookie); got.status == http.StatusOK {
		t.Errorf("service page with the deleted account's session after re-creation: got %d, want a refusal (the session belongs to the old account)", got.status)
	}
}
