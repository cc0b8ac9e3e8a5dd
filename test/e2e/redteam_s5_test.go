package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Red team (session 5): what a project's deletion must stop.

// TestDeletedProjectStopsJobExecutions: deleting a project stops the tasks
// of its running job executions, as it stops its services' instances. A
// project owner (or a deleter) who deletes a project expects nothing of it
// to run; a task that keeps running keeps executing the project's code
// (and keeps its metadata server) long after.
func TestDeletedProjectStopsJobExecutions(t *testing.T) {
	s := startServerWith(t, "--unsandboxed-processes")
	const other = "team-jobs"
	s.mustCLI(t, "projects", "create", other)
	pidDir := t.TempDir()
	s.mustCLI(t, "run", "jobs", "create", "long", "--image=file://"+jobtaskBin, "--region="+region, "--project="+other,
		"--tasks=3", "--parallelism=2", "--update-env-vars=SLEEP=10m,PID_DIR="+pidDir)
	s.mustCLI(t, "run", "jobs", "execute", "long", "--region="+region, "--project="+other)
	pids := pidsOf(t, pidDir, 2)
	s.mustCLI(t, "projects", "delete", other, "--quiet")
	waitGone(t, pids)
	time.Sleep(time.Second)
	if _, err := os.Stat(filepath.Join(pidDir, "task2")); err == nil {
		t.Errorf("task 2 started after its project was deleted")
	}
	if f := cliFails(t, s.cli(t, "run", "jobs", "execute", "long", "--region="+region, "--project="+other)); !strings.Contains(f, "undelete") {
		t.Errorf("executing a job of a deleted project: got %q, want a refusal naming undelete", f)
	}
}
