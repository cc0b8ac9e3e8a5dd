package gcloud

import (
	"strings"
	"testing"
)

// TestGcloudServices: step 1 of every quickstart, and its neighbours.
func TestGcloudServices(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		args []string
		ok   bool
		want string // in the output
	}{
		{[]string{"services", "enable", "run.googleapis.com"}, true, ""},
		{[]string{"services", "enable", "run.googleapis.com", "iam.googleapis.com"}, true, ""},
		{[]string{"services", "enable", "compute.googleapis.com"}, false, "Usher does not serve compute.googleapis.com"},
		{[]string{"services", "disable", "run.googleapis.com", "--force"}, false, "cannot be disabled"},
		{[]string{"services", "disable", "compute.googleapis.com"}, true, ""},
		{[]string{"services", "list"}, true, "run.googleapis.com"},
		{[]string{"services", "list", "--enabled", "--format=value(config.name)"}, true, "iam.googleapis.com\niamcredentials.googleapis.com"},
		{[]string{"services", "list", "--available"}, true, "Cloud Run Admin API"},
	}
	for _, tt := range tests {
		r := e.gcloud(tt.args...)
		if (r.code == 0) != tt.ok || !strings.Contains(r.out(), tt.want) {
			t.Errorf("%s\nwant success %v and %q in the output", r, tt.ok, tt.want)
		}
	}
}
