package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTrafficSplitAndTags: --no-traffic deploys get nothing, a 50/50 split
// reaches both revisions, a tag URL reaches its revision only, and a revision
// that serves traffic cannot be deleted.
func TestTrafficSplitAndTags(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "split", helloBin, "--allow-unauthenticated")
	first := s.describe(t, "split").Status.LatestReadyRevisionName
	s.mustCLI(t, "run", "deploy", "split", "--region="+region, "--update-env-vars", "NAME=Two", "--no-traffic")
	second := s.describe(t, "split").Status.LatestReadyRevisionName
	if second == first {
		t.Fatalf("--no-traffic deploy made no new revision")
	}
	for range 10 {
		if got := s.get(t, url); got.body != "Hello World!\n" {
			t.Fatalf("after a --no-traffic deploy: %d %q, want the old revision's Hello World!", got.status, got.body)
		}
	}

	s.mustCLI(t, "run", "services", "update-traffic", "split", "--region="+region, "--to-revisions="+first+"=50,"+second+"=50")
	seen := map[string]int{}
	for range 60 {
		seen[s.get(t, url).body]++
	}
	if seen["Hello World!\n"] == 0 || seen["Hello Two!\n"] == 0 || len(seen) != 2 {
		t.Fatalf("60 requests over a 50/50 split: %v, want both revisions", seen)
	}

	out := s.mustCLI(t, "run", "deploy", "split", "--region="+region, "--update-env-vars", "NAME=Canary", "--tag", "canary")
	tagURL := strings.Replace(url, "://", "://canary---", 1)
	if !strings.Contains(out.stdout, tagURL) {
		t.Errorf("deploy --tag output does not give the tag URL %s:\n%s", tagURL, out.stdout)
	}
	for range 5 {
		if got := s.get(t, tagURL); got.body != "Hello Canary!\n" {
			t.Fatalf("tag URL: %d %q, want the tagged revision", got.status, got.body)
		}
	}

	r := s.cli(t, "run", "revisions", "delete", first, "--region="+region, "--quiet")
	if r.code == 0 || !strings.Contains(r.stderr, "FAILED_PRECONDITION") {
		t.Errorf("deleting a revision that serves traffic: %s, want FAILED_PRECONDITION", r)
	}
	s.mustCLI(t, "run", "services", "update-traffic", "split", "--region="+region, "--to-latest")
	for range 10 {
		if got := s.get(t, url); got.body != "Hello Canary!\n" {
			t.Fatalf("after --to-latest: %q, want the latest revision", got.body)
		}
	}
	s.mustCLI(t, "run", "revisions", "delete", first, "--region="+region, "--quiet")
	if r := s.cli(t, "run", "revisions", "describe", first, "--region="+region); r.code == 0 {
		t.Errorf("deleted revision still described: %s", r)
	}
}

// TestGracefulShutdown: SIGTERM lets in-flight requests finish.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "slow", echoBin, "--allow-unauthenticated")
	done := make(chan response, 1)
	go func() { done <- s.get(t, url+"/slow?for=1500ms") }()
	poll(t, 10*time.Second, "the slow request to reach the instance", func() (bool, string) {
		log := s.logSince(0)
		return strings.Contains(log, "echo: GET /slow"), ""
	})
	s.Signal(syscall.SIGTERM)
	got := <-done
	if got.status != 200 || got.body != "slow done\n" {
		t.Fatalf("in-flight request during shutdown: %d %q, want 200 slow done", got.status, got.body)
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("usher serve did not exit after draining")
	}
}

// TestServiceLogs: what instances print is readable per service, tagged by
// revision and instance.
func TestServiceLogs(t *testing.T) {
	s := startServer(t)
	url := s.deploy(t, "chatty", echoBin, "--allow-unauthenticated")
	rev := s.describe(t, "chatty").Status.LatestReadyRevisionName
	s.get(t, url+"/hello-logs")
	var out cliResult
	poll(t, 10*time.Second, "the request's log line", func() (bool, string) {
		out = s.mustCLI(t, "run", "services", "logs", "read", "chatty", "--region="+region)
		return strings.Contains(out.stdout, "echo: GET /hello-logs"), out.stdout
	})
	for _, line := range strings.Split(strings.TrimSpace(out.stdout), "\n") {
		if strings.Contains(line, "/hello-logs") {
			f := strings.Fields(line)
			if len(f) < 4 || f[1] != rev || f[2] == "" || f[2] == "starting" {
				t.Errorf("log line %q: want TIME %s INSTANCE TEXT", line, rev)
			}
		}
	}
	if r := s.cli(t, "run", "services", "logs", "read", "nope", "--region="+region); r.code == 0 {
		t.Errorf("logs of a missing service: %s", r)
	}
}
