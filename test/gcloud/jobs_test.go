package gcloud

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestGcloudRunJobs drives `gcloud run jobs` unchanged against Usher
// (issue 16): create, execute --wait of 10 tasks with parallelism 3 where
// task 7 fails once, the execution's counts and tasks, a failing
// execution, cancel and delete. (The job's IAM as an impersonated invoker
// is tested through Usher's CLI in test/e2e: gcloud calls are slow.)
func TestGcloudRunJobs(t *testing.T) {
	e := newEnv(t)
	const job = "batch"

	step(t, "1 create and execute --wait", func(t *testing.T) {
		e.mustGcloud("run", "jobs", "create", job, "--image=file://"+jobtaskBin, "--region="+region,
			"--tasks=10", "--parallelism=3", "--max-retries=1", "--task-timeout=5m", "--set-env-vars=FAIL_ONCE_TASK=7")
		r := e.mustGcloud("run", "jobs", "execute", job, "--wait", "--region="+region)
		if !strings.Contains(r.out(), "has successfully completed") {
			t.Errorf("%s\nwant it to say the execution completed", r)
		}
	})

	var execution string
	step(t, "2 executions list and tasks", func(t *testing.T) {
		r := e.mustGcloud("run", "jobs", "executions", "list", "--job="+job, "--region="+region, "--format=json")
		var list []struct {
			Metadata struct{ Name string }
			Status   struct{ SucceededCount, RetriedCount, FailedCount int }
		}
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
			t.Fatalf("executions list --format json: %v, %d items\n%s", err, len(list), r.stdout)
		}
		got := list[0].Status
		if got.SucceededCount != 10 || got.RetriedCount != 1 || got.FailedCount != 0 {
			t.Errorf("execution status: got %+v, want 10 succeeded, 1 retried, 0 failed", got)
		}
		execution = list[0].Metadata.Name
		r = e.mustGcloud("run", "jobs", "executions", "tasks", "list", "--execution="+execution, "--region="+region, "--format=value(metadata.name,status.retried)")
		if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 10 {
			t.Errorf("tasks list: got %d lines, want 10:\n%s", len(lines), r.stdout)
		}
		if !strings.Contains(r.stdout, execution+"-task7\t1") {
			t.Errorf("tasks list: want task 7 retried once, got:\n%s", r.stdout)
		}
		r = e.mustGcloud("run", "jobs", "describe", job, "--region="+region)
		if !strings.Contains(r.out(), "Executed 1 time") {
			t.Errorf("describe: %s\nwant it to say the job executed once", r)
		}
	})

	step(t, "2b the tasks' output in the Logging API", func(t *testing.T) {
		var entries []struct {
			LogName  string `json:"logName"`
			Resource struct {
				Type   string            `json:"type"`
				Labels map[string]string `json:"labels"`
			} `json:"resource"`
			Labels      map[string]string `json:"labels"`
			TextPayload string            `json:"textPayload"`
		}
		var last result
		usherproc.Poll(t, 30*time.Second, "the tasks' lines in gcloud logging read", func() (bool, string) {
			last = e.gcloud("logging", "read", `resource.type="cloud_run_job" AND resource.labels.job_name="`+job+`"`, "--limit=200", "--format=json")
			entries = nil
			return last.code == 0 && json.Unmarshal([]byte(last.stdout), &entries) == nil && len(entries) >= 11, last.String()
		})
		retried := false
		for _, en := range entries {
			if en.Resource.Type != "cloud_run_job" || en.Resource.Labels["job_name"] != job || en.Resource.Labels["location"] != region ||
				en.Labels["run.googleapis.com/execution_name"] != execution || !strings.HasSuffix(en.LogName, "run.googleapis.com%2Fstdout") {
				t.Errorf("entry %+v, want a cloud_run_job stdout entry of %s, execution %s", en, job, execution)
			}
			if en.Labels["run.googleapis.com/task_index"] == "7" && en.Labels["run.googleapis.com/task_attempt"] == "1" {
				retried = true
			}
		}
		if !retried {
			t.Errorf("no entry of task 7's second attempt:\n%s", last)
		}
		r := e.mustGcloud("run", "jobs", "logs", "read", job, "--region="+region, "--limit=200")
		for _, want := range []string{"task 7/10 attempt 1", "failing on purpose", "done"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s\nwant %q in gcloud run jobs logs read", r, want)
			}
		}
	})

	step(t, "3 a failing execution fails --wait", func(t *testing.T) {
		e.mustGcloud("run", "jobs", "update", job, "--region="+region, "--max-retries=0", "--tasks=2", "--update-env-vars=FAIL_ONCE_TASK=1")
		r := e.gcloud("run", "jobs", "execute", job, "--wait", "--region="+region)
		if r.code == 0 || !strings.Contains(r.out(), "The execution failed") {
			t.Errorf("%s\nwant gcloud to report the execution failed", r)
		}
	})

	step(t, "4 cancel and delete", func(t *testing.T) {
		e.mustGcloud("run", "jobs", "update", job, "--region="+region, "--tasks=1", "--update-env-vars=SLEEP=10m")
		r := e.mustGcloud("run", "jobs", "execute", job, "--async", "--region="+region, "--format=value(metadata.name)")
		name := strings.TrimSpace(r.stdout)
		e.mustGcloud("run", "jobs", "executions", "cancel", name, "--region="+region, "--quiet")
		usherproc.Poll(t, 60*time.Second, "the cancelled execution", func() (bool, string) {
			r := e.mustGcloud("run", "jobs", "executions", "describe", name, "--region="+region, "--format=json")
			var ex struct {
				Status struct {
					CancelledCount int
					Conditions     []struct{ Type, Reason string }
				}
			}
			if err := json.Unmarshal([]byte(r.stdout), &ex); err != nil {
				return false, err.Error()
			}
			for _, c := range ex.Status.Conditions {
				if c.Type == "Completed" && c.Reason == "Cancelled" && ex.Status.CancelledCount == 1 {
					return true, ""
				}
			}
			return false, r.stdout
		})
		e.mustGcloud("run", "jobs", "delete", job, "--region="+region, "--quiet")
		if r := e.mustGcloud("run", "jobs", "list", "--region="+region, "--format=value(metadata.name)"); strings.TrimSpace(r.stdout) != "" {
			t.Errorf("jobs list after delete: got %q, want none", r.stdout)
		}
	})
}
