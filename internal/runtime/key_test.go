package runtime

import (
	"strings"
	"testing"
)

// A job's execution and a revision may bear one name in one project and
// region (service "web" with revision "web-abcde", job "web" whose
// execution drew that suffix, or a revision named after a running
// execution on purpose): their instances must still be told apart, or the
// metadata server answers one's instances with the other's account.
func TestExecutionKeyIsNeverARevisionKey(t *testing.T) {
	if ExecutionKey("p", "us-central1", "web-abcde") == RevisionKey("p", "us-central1", "web-abcde") {
		t.Fatal("an execution and a revision of one name share a runtime key")
	}
}

// FuzzExecutionKeyIsNeverARevisionKey: for any revision name (a DNS label:
// no "/") the keys differ, whatever the execution's name.
func FuzzExecutionKeyIsNeverARevisionKey(f *testing.F) {
	f.Add("web-abcde", "web-abcde")
	f.Add("executions", "x")
	f.Fuzz(func(t *testing.T, revision, execution string) {
		if revision == "" || strings.Contains(revision, "/") {
			return
		}
		if RevisionKey("p", "r", revision) == ExecutionKey("p", "r", execution) {
			t.Fatalf("revision %q and execution %q share a key", revision, execution)
		}
	})
}
