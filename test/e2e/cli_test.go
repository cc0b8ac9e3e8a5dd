package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestCLILikeGcloud drives the built CLI as a newcomer would: output
// formats with indexes, revisions newest first with ACTIVE, deletes that
// confirm, and the API root pointing browsers at the console.
func TestCLILikeGcloud(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "fmt", helloBin)
	s.mustCLI(t, "run", "deploy", "fmt", "--region="+region, "--update-env-vars=NAME=Two")

	t.Run("formats", func(t *testing.T) {
		tests := []struct {
			format string
			want   string
		}{
			{"value(spec.template.spec.containers[0].image)", "file://" + helloBin + "\n"},
			{"value(metadata.name,status.url)", "fmt\t" + url + "\n"},
			{"table(metadata.name,status.url:label=ADDRESS)", "NAME"},
			{"csv(metadata.name,status.url)", "name,url\nfmt," + url + "\n"},
		}
		for _, tt := range tests {
			r := s.mustCLI(t, "run", "services", "describe", "fmt", "--region="+region, "--format="+tt.format)
			if !strings.Contains(r.stdout, tt.want) {
				t.Errorf("--format=%s: got %q, want %q in it", tt.format, r.stdout, tt.want)
			}
		}
		r := s.mustCLI(t, "run", "services", "list", "--region="+region, "--format=table(metadata.name,status.url:label=ADDRESS)")
		if !regexp.MustCompile(`NAME +ADDRESS\nfmt +` + regexp.QuoteMeta(url)).MatchString(r.stdout) {
			t.Errorf("list as a table: got %q", r.stdout)
		}
		cliFails(t, s.cli(t, "run", "services", "list", "--region="+region, "--format=value(status.url:sort=1)"))
	})

	t.Run("revisions newest first with ACTIVE", func(t *testing.T) {
		r := s.mustCLI(t, "run", "revisions", "list", "--service=fmt", "--region="+region)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], "ACTIVE") {
			t.Fatalf("revisions list: got %q, want a header and two revisions", r.stdout)
		}
		if !strings.Contains(lines[1], "fmt-00002") || !strings.Contains(lines[1], "yes") || !strings.Contains(lines[2], "fmt-00001") || strings.Contains(lines[2], "yes") {
			t.Errorf("revisions list: got %q, want fmt-00002 (active) above fmt-00001 (not)", r.stdout)
		}
	})

	t.Run("deletes confirm", func(t *testing.T) {
		// The CLI's standard input is not a terminal here: it refuses
		// rather than hang or assume yes.
		line := cliFails(t, s.cli(t, "run", "services", "delete", "fmt", "--region="+region))
		if !strings.Contains(line, "--quiet") {
			t.Errorf("delete without a terminal: got %q, want it to say --quiet", line)
		}
		s.describe(t, "fmt") // still there
		s.mustCLI(t, "run", "services", "delete", "fmt", "--region="+region, "-q")
		if r := s.cli(t, "run", "services", "describe", "fmt", "--region="+region); r.code == 0 {
			t.Errorf("after delete --quiet: %s, want it gone", r)
		}
	})

	t.Run("mistakes", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"run", "deplyo"}, `did you mean "deploy"`},
			{[]string{"run", "jbos", "list"}, `unknown command "jbos"`},
			{[]string{"run", "services", "list", "--regoin=x"}, "--region"},
			{[]string{"run", "deploy", "x", "--image=" + helloBin}, "file://" + helloBin},
		} {
			if line := cliFails(t, s.cli(t, tt.args...)); !strings.Contains(line, tt.want) {
				t.Errorf("usher %s: got %q, want %q in it", strings.Join(tt.args, " "), line, tt.want)
			}
		}
	})

	t.Run("API root", func(t *testing.T) {
		root := s.serverURL(t) + "/"
		page := s.get(t, root, "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		if page.status != 200 || !strings.Contains(page.body, `href="/console/"`) || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
			t.Errorf("browser at /: %d %q, want a page linking /console/", page.status, page.body)
		}
		api := s.get(t, root, "Accept", "application/json")
		if api.status != 401 || !strings.Contains(api.body, `"error"`) {
			t.Errorf("API client at /: %d %q, want a JSON 401", api.status, api.body)
		}
		if log := s.logSince(0); !strings.Contains(log, strings.TrimSuffix(root, "/")+"/console/") {
			t.Errorf("serve's log does not name the console URL:\n%s", log)
		}
	})
}
