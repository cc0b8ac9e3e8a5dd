package server

import (
	"os"
	"strings"
	"testing"
)

// TestProcessConfigFlags: the sandbox flags of `usher serve` as the process
// runtime gets them; bad values are one clear error, nothing started.
func TestProcessConfigFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        Config
		wantEgress bool
		wantUID    int
		wantErr    string
	}{
		// Egress by default only as root (filtered); pasta's is asked for.
		{"Defaults", Config{}, os.Geteuid() == 0, 0, ""},
		{"EgressAll", Config{InstanceEgress: "all"}, true, 0, ""},
		{"EgressNatAlias", Config{InstanceEgress: "nat"}, true, 0, ""},
		{"EgressNone", Config{InstanceEgress: "none"}, false, 0, ""},
		{"EgressBogus", Config{InstanceEgress: "some"}, false, 0, `--instance-egress "some": want internet, all or none`},
		{"User", Config{InstanceUser: "1000:1000"}, true, 1000, ""},
		{"UserRoot", Config{InstanceUser: "0"}, false, 0, "not root"},
		{"UserJunk", Config{InstanceUser: "nobody"}, false, 0, "want UID[:GID]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.DataDir = t.TempDir()
			pc, err := processConfig(tc.cfg, "127.0.0.1:8080")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("got %v, want one line containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sb := pc.Sandbox
			if sb == nil || sb.Egress != tc.wantEgress || sb.UID != tc.wantUID {
				t.Fatalf("got sandbox %+v, want egress %v uid %d", sb, tc.wantEgress, tc.wantUID)
			}
			hidden := false
			for _, p := range sb.Hide {
				hidden = hidden || p == tc.cfg.DataDir
			}
			if !hidden {
				t.Errorf("data dir %s not hidden: %v", tc.cfg.DataDir, sb.Hide)
			}
		})
	}
}

// TestProcessConfigEgressPrivate: only --instance-egress=all lets instances
// into private networks; the default and internet keep them out, and
// internet without root is refused (pasta filters no destination).
func TestProcessConfigEgressPrivate(t *testing.T) {
	for _, tc := range []struct {
		egress      string
		wantPrivate bool
	}{{"", false}, {"internet", false}, {"all", true}, {"nat", true}, {"none", false}} {
		pc, err := processConfig(Config{DataDir: t.TempDir(), InstanceEgress: tc.egress}, "127.0.0.1:8080")
		if tc.egress == "internet" && os.Geteuid() != 0 {
			if err == nil || !strings.Contains(err.Error(), "needs root") {
				t.Errorf("internet without root: %v, want refused", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.egress, err)
		}
		if pc.Sandbox.EgressPrivate != tc.wantPrivate {
			t.Errorf("--instance-egress=%q: EgressPrivate %v, want %v", tc.egress, pc.Sandbox.EgressPrivate, tc.wantPrivate)
		}
	}
}
