package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestMistakesFailWithSuggestions: a mistyped command or flag exits
// non-zero, naming what was meant, before anything talks to a server.
func TestMistakesFailWithSuggestions(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "deplyo"}, `did you mean "deploy"`},
		{[]string{"run", "deplyo", "x", "--help"}, `did you mean "deploy"`},
		{[]string{"run", "servcies", "list"}, `did you mean "services"`},
		{[]string{"run", "services", "lsit"}, `did you mean "list"`},
		{[]string{"run", "jbos", "list"}, `unknown command "jbos" for "usher run"`},
		{[]string{"sevre"}, "serve"},
		{[]string{"run", "services", "list", "--regoin=x"}, "did you mean --region?"},
		{[]string{"run", "deploy", "x", "--imgae=y"}, "did you mean --image?"},
		{[]string{"run", "services", "list", "--format=value(a[x])"}, "--format=value(a[x])"},
		{[]string{"run", "services", "add-iam-policy-binding", "s", "--member=alluser", "--role=roles/run.invoker"}, `did you mean "allUsers"`},
		{[]string{"run", "services", "add-iam-policy-binding", "s", "--member=allUsers", "--role=run.invoker"}, `did you mean "roles/run.invoker"`},
		{[]string{"run", "services", "add-iam-policy-binding", "s", "--member=allUsers", "--role=roles/run.invokr"}, `did you mean "roles/run.invoker"`},
		{[]string{"run", "services", "add-iam-policy-binding", "s", "--member=usr:a@b.c", "--role=roles/run.invoker"}, `did you mean "user:a@b.c"`},
		{[]string{"run", "deploy", "x", "--image=/usr/bin/hello"}, "file:///usr/bin/hello"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			// A configuration that exists nowhere: any attempt to reach a
			// server fails differently from what is wanted.
			args := append([]string{"--config=/nonexistent/usher.json", "--project=p"}, tt.args...)
			code := Execute(context.Background(), args, &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, errb.String(), tt.want)
			}
		})
	}
}

// TestGroupsWithoutArgsShowHelp: a bare command group still shows its help.
func TestGroupsWithoutArgsShowHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Execute(context.Background(), []string{"run"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "deploy") {
		t.Errorf("usher run: exit %d, stdout %q; want 0 and the help", code, out.String())
	}
}
