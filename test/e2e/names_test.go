package e2e

import (
	"strings"
	"testing"
)

// TestTagSeparatorRefused: "---" joins a tag to its service in tag hosts, so
// a service "blue---api" would answer on tag "blue" of service "api". The
// attacker's names and tags are refused as Cloud Run refuses them, and
// nothing is created.
func TestTagSeparatorRefused(t *testing.T) {
	s := startServer(t)
	image := "--image=file://" + helloBin
	for _, tt := range []struct {
		desc string
		args []string
	}{
		{"service name", []string{"run", "deploy", "blue---api", image, "--region=" + region}},
		{"tag", []string{"run", "deploy", "api", image, "--region=" + region, "--tag=a---b"}},
	} {
		r := s.cli(t, tt.args...)
		if r.code == 0 || !strings.Contains(r.stderr, "ERROR: INVALID_ARGUMENT") || !strings.Contains(r.stderr, `"---"`) {
			t.Errorf("%s with \"---\": got %s\nwant exit 1 and INVALID_ARGUMENT naming \"---\"", tt.desc, r)
		}
	}
	if out := s.mustCLI(t, "run", "services", "list", "--region="+region, "--format=json").stdout; strings.Contains(out, "---") {
		t.Errorf("a refused deploy created a service:\n%s", out)
	}
}
