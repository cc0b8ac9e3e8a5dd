package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLINeverPrintsControlCharacters: a value someone stored (here an
// environment variable another developer set) carrying an OSC title sequence,
// a CSI and a C1 CSI reaches the reader's terminal escaped in every format,
// and JSON output still decodes to the stored value.
func TestCLINeverPrintsControlCharacters(t *testing.T) {
	s := startServer(t)
	const evil = "x\x1b]0;pwned\x07y\x1b[2Jz\u009b31m\x7f"
	s.deploy(t, "ctl", helloBin, "--update-env-vars=NAME="+evil)

	for _, format := range []string{"yaml", "json", "value(metadata.name,spec.template.spec.containers)"} {
		out := s.mustCLI(t, "run", "services", "describe", "ctl", "--region="+region, "--format="+format).stdout
		if i := strings.IndexFunc(out, func(r rune) bool {
			return (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f)
		}); i >= 0 {
			t.Errorf("--format=%s printed control character %q at %d:\n%q", format, out[i], i, out)
		}
		if format == "json" {
			var svc struct {
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Env []struct{ Name, Value string }
							}
						}
					}
				}
			}
			if err := json.Unmarshal([]byte(out), &svc); err != nil {
				t.Fatalf("--format=json output does not decode: %v\n%s", err, out)
			}
			found := false
			for _, e := range svc.Spec.Template.Spec.Containers[0].Env {
				found = found || (e.Name == "NAME" && e.Value == evil)
			}
			if !found {
				t.Errorf("--format=json env = %+v, want NAME=%q", svc.Spec.Template.Spec.Containers[0].Env, evil)
			}
		}
	}
	list := s.mustCLI(t, "run", "services", "list", "--region="+region).stdout
	if strings.ContainsAny(list, "\x1b\x07") {
		t.Errorf("services list printed a control character:\n%q", list)
	}
}
