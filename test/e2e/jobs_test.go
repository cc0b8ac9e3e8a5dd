package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime/docker/dockertest"
)

// Cloud Run jobs (issue 16) through Usher's CLI: tasks, retries,
// parallelism, the job's IAM, cancel, and a crash during an execution.

// execution is the part of a v1 Execution the tests read.
type execution struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Parallelism int `json:"parallelism"`
		TaskCount   int `json:"taskCount"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
		SucceededCount int `json:"succeededCount"`
		FailedCount    int `json:"failedCount"`
		CancelledCount int `json:"cancelledCount"`
		RetriedCount   int `json:"retriedCount"`
		RunningCount   int `json:"runningCount"`
	} `json:"status"`
}

// completed is the execution's Completed condition: status, reason, message.
func (e execution) completed() (status, reason, message string) {
	for _, c := range e.Status.Conditions {
		if c.Type == "Completed" {
			return c.Status, c.Reason, c.Message
		}
	}
	return "", "", ""
}

type task struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		Index             int `json:"index"`
		Retried           int `json:"retried"`
		LastAttemptResult *struct {
			ExitCode int `json:"exitCode"`
		} `json:"lastAttemptResult"`
	} `json:"status"`
}

func (s *server) describeExecution(t *testing.T, name string) execution {
	t.Helper()
	r := s.mustCLI(t, "run", "jobs", "executions", "describe", name, "--region="+region, "--format=json")
	var ex execution
	if err := json.Unmarshal([]byte(r.stdout), &ex); err != nil {
		t.Fatalf("executions describe --format json: %v\n%s", err, r.stdout)
	}
	return ex
}

func (s *server) tasks(t *testing.T, executionName string) []task {
	t.Helper()
	r := s.mustCLI(t, "run", "jobs", "tasks", "list", "--execution="+executionName, "--region="+region, "--format=json")
	var ts []task
	if err := json.Unmarshal([]byte(r.stdout), &ts); err != nil {
		t.Fatalf("tasks list --format json: %v\n%s", err, r.stdout)
	}
	return ts
}

// waitCompleted polls an execution until its Completed condition is True or False.
func (s *server) waitCompleted(t *testing.T, name string) execution {
	t.Helper()
	var ex execution
	poll(t, 60*time.Second, "execution "+name+" completed", func() (bool, string) {
		ex = s.describeExecution(t, name)
		st, reason, msg := ex.completed()
		return st == "True" || st == "False", st + " " + reason + " " + msg
	})
	return ex
}

func TestJobTasksRetriesAndLogs(t *testing.T) {
	s := startServer(t)
	s.mustCLI(t, "run", "jobs", "create", "batch", "--image=file://"+jobtaskBin, "--region="+region,
		"--tasks=10", "--parallelism=3", "--max-retries=1", "--task-timeout=5m", "--update-env-vars=FAIL_ONCE_TASK=7")
	r := s.mustCLI(t, "run", "jobs", "execute", "batch", "--wait", "--region="+region)
	name := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(name, "batch-") {
		t.Fatalf("execute --wait stdout: got %q, want the execution's name batch-…", r.stdout)
	}
	if !strings.Contains(r.stderr, "10 / 10 tasks succeeded") {
		t.Errorf("execute --wait stderr: got %q, want it to report 10 / 10 tasks succeeded", r.stderr)
	}
	ex := s.describeExecution(t, name)
	if st, reason, msg := ex.completed(); st != "True" {
		t.Errorf("Completed: got %s %s %q, want True", st, reason, msg)
	}
	if got := [...]int{ex.Spec.TaskCount, ex.Spec.Parallelism, ex.Status.SucceededCount, ex.Status.FailedCount, ex.Status.RetriedCount}; got != [...]int{10, 3, 10, 0, 1} {
		t.Errorf("taskCount, parallelism, succeeded, failed, retried: got %v, want [10 3 10 0 1]", got)
	}
	tasks := s.tasks(t, name)
	if len(tasks) != 10 {
		t.Fatalf("tasks: got %d, want 10", len(tasks))
	}
	for _, tk := range tasks {
		want := 0
		if tk.Status.Index == 7 {
			want = 1
		}
		if tk.Status.Retried != want || tk.Metadata.Labels["run.googleapis.com/runningState"] != "Succeeded" {
			t.Errorf("task %d: got retried %d, state %q, want retried %d, Succeeded", tk.Status.Index, tk.Status.Retried, tk.Metadata.Labels["run.googleapis.com/runningState"], want)
		}
	}
	logs := s.mustCLI(t, "run", "jobs", "logs", "read", "batch", "--region="+region, "--limit=1000").stdout
	for _, want := range []string{
		"job batch execution " + name + " task 7/10 attempt 0", "failing on purpose",
		"job batch execution " + name + " task 7/10 attempt 1", "task 0/10 attempt 0", "task 9/10 attempt 0",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("jobs logs read: want a line containing %q, got:\n%s", want, logs)
		}
	}

	t.Run("a task that keeps failing fails the execution", func(t *testing.T) {
		s.mustCLI(t, "run", "jobs", "update", "batch", "--region="+region, "--max-retries=0")
		r := s.cli(t, "run", "jobs", "execute", "batch", "--wait", "--region="+region)
		line := cliFails(t, r)
		if !strings.Contains(line, "Task 7") || !strings.Contains(line, "1 failed") {
			t.Errorf("execute --wait of a failing job: got %q, want it to name task 7 and 1 failed", line)
		}
	})

	t.Run("overrides change one execution", func(t *testing.T) {
		r := s.mustCLI(t, "run", "jobs", "execute", "batch", "--wait", "--region="+region, "--tasks=2", "--update-env-vars=FAIL_ONCE_TASK=none")
		ex := s.describeExecution(t, strings.TrimSpace(r.stdout))
		if ex.Spec.TaskCount != 2 || ex.Status.SucceededCount != 2 {
			t.Errorf("overridden execution: got taskCount %d, succeeded %d, want 2 and 2", ex.Spec.TaskCount, ex.Status.SucceededCount)
		}
	})

	t.Run("delete takes the job's executions", func(t *testing.T) {
		s.mustCLI(t, "run", "jobs", "delete", "batch", "--region="+region)
		if r := s.mustCLI(t, "run", "jobs", "executions", "list", "--region="+region, "--format=json"); strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("executions after the job's delete: got %s, want none", r.stdout)
		}
		line := cliFails(t, s.cli(t, "run", "jobs", "executions", "describe", name, "--region="+region))
		if !strings.Contains(line, "NOT_FOUND") {
			t.Errorf("describe a deleted job's execution: got %q, want NOT_FOUND", line)
		}
	})

	t.Run("invalid jobs are refused with the field", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--tasks=10001"}, "taskCount"},
			{[]string{"--parallelism=-2"}, "parallelism"},
			{[]string{"--max-retries=11"}, "maxRetries"},
			{[]string{"--update-env-vars=CLOUD_RUN_TASK_INDEX=3"}, "CLOUD_RUN_TASK_INDEX"},
		} {
			args := append([]string{"run", "jobs", "create", "bad", "--image=file://" + jobtaskBin, "--region=" + region}, tc.args...)
			line := cliFails(t, s.cli(t, args...))
			if !strings.Contains(line, tc.want) {
				t.Errorf("create %v: got %q, want it to name %s", tc.args, line, tc.want)
			}
		}
	})
}

// TestJobRunPermission: executing needs run.jobs.run on the job
// (roles/run.invoker), executing with overrides run.jobs.runWithOverrides
// as well; and a job is written only by who may act as its account and
// run its executable.
func TestJobRunPermission(t *testing.T) {
	s := startServer(t)
	s.mustCLI(t, "run", "jobs", "create", "nightly", "--image=file://"+jobtaskBin, "--region="+region)
	s.mustCLI(t, "run", "jobs", "create", "other", "--image=file://"+jobtaskBin, "--region="+region)
	runner := s.createSA(t, "job-runner")
	as := "--impersonate-service-account=" + runner

	line := cliFails(t, s.cli(t, "run", "jobs", "execute", "nightly", "--region="+region, as))
	if !strings.Contains(line, "run.jobs.run") {
		t.Errorf("execute without a grant: got %q, want PERMISSION_DENIED naming run.jobs.run", line)
	}

	s.mustCLI(t, "run", "jobs", "add-iam-policy-binding", "nightly", "--member=serviceAccount:"+runner, "--role=roles/run.invoker", "--region="+region)
	r := s.mustCLI(t, "run", "jobs", "execute", "nightly", "--region="+region, as)
	name := strings.TrimSpace(r.stdout)
	if st, _, msg := s.waitCompleted(t, name).completed(); st != "True" {
		t.Errorf("execution run by the invoker: got Completed %s %q, want True", st, msg)
	}

	for _, tc := range []struct {
		what string
		args []string
		want string
	}{
		{"the grant is on one job only", []string{"run", "jobs", "execute", "other"}, "run.jobs.run"},
		{"overrides need runWithOverrides", []string{"run", "jobs", "execute", "nightly", "--update-env-vars=A=B"}, "run.jobs.runWithOverrides"},
		{"the invoker cannot read executions", []string{"run", "jobs", "executions", "describe", name}, "run.executions.get"},
		{"the invoker cannot cancel", []string{"run", "jobs", "executions", "cancel", name}, "run.executions.cancel"},
		{"the invoker cannot change the job", []string{"run", "jobs", "update", "nightly", "--tasks=2"}, "run.jobs.get"}, // the CLI reads the job first
		{"the invoker cannot grant itself more", []string{"run", "jobs", "add-iam-policy-binding", "nightly", "--member=serviceAccount:" + runner, "--role=roles/run.admin"}, "run.jobs.getIamPolicy"},
	} {
		args := append(append([]string{}, tc.args...), "--region="+region, as)
		if line := cliFails(t, s.cli(t, args...)); !strings.Contains(line, tc.want) {
			t.Errorf("%s: got %q, want it to name %s", tc.what, line, tc.want)
		}
	}

	t.Run("the API refuses the invoker's writes", func(t *testing.T) {
		tok := s.accessToken(t, as)
		base := "/v1/projects/" + project + "/locations/" + region
		job := map[string]any{"metadata": map[string]any{"name": "nightly"}, "spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"taskCount": 1, "template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "file:///bin/sh"}}}}}}}}
		policy := map[string]any{"policy": map[string]any{"bindings": []any{map[string]any{"role": "roles/run.admin", "members": []string{"serviceAccount:" + runner}}}}}
		for _, tc := range []struct {
			method, path string
			body         any
			want         string
		}{
			{"PUT", base + "/jobs/nightly", job, "run.jobs.update"},
			{"POST", base + "/jobs/nightly:setIamPolicy", policy, "run.jobs.setIamPolicy"},
			{"DELETE", base + "/jobs/nightly", nil, "run.jobs.delete"},
			{"DELETE", base + "/executions/" + name, nil, "run.executions.delete"},
			{"GET", "/apis/run.googleapis.com/v1/namespaces/" + project + "/jobs", nil, "run.jobs.list"},
		} {
			r := s.apiCall(t, tok, tc.method, tc.path, tc.body)
			if r.status != 403 || !strings.Contains(r.body, tc.want) {
				t.Errorf("%s %s as the invoker: got %d %s, want 403 naming %s", tc.method, tc.path, r.status, r.body, tc.want)
			}
		}
	})

	t.Run("a deleted and re-created account inherits no grant on the job", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "delete", runner, "--quiet")
		s.mustCLI(t, "iam", "service-accounts", "create", "job-runner")
		if line := cliFails(t, s.cli(t, "run", "jobs", "execute", "nightly", "--region="+region, as)); !strings.Contains(line, "run.jobs.run") {
			t.Errorf("execute as the re-created account: got %q, want PERMISSION_DENIED naming run.jobs.run", line)
		}
		if r := s.mustCLI(t, "run", "jobs", "get-iam-policy", "nightly", "--region="+region); !strings.Contains(r.stdout, "deleted:serviceAccount:"+runner) {
			t.Errorf("job policy after the account's delete: got %s, want the member rewritten to deleted:serviceAccount:…", r.stdout)
		}
	})

	t.Run("a developer must be allowed what the job does", func(t *testing.T) {
		_, dev := s.developer(t, "job-dev")
		stranger := s.createSA(t, "stranger")
		for _, tc := range []struct {
			what, image, sa, want string
		}{
			{"acting as an account without actAs", "docker.io/library/busybox", stranger, "iam.serviceAccounts.actAs"},
			{"running a host executable", "file://" + jobtaskBin, "", "usher.hostExecutables.run"},
		} {
			args := []string{"run", "jobs", "create", "devjob", "--image=" + tc.image, "--region=" + region, dev}
			if tc.sa != "" {
				args = append(args, "--service-account="+tc.sa)
			}
			if line := cliFails(t, s.cli(t, args...)); !strings.Contains(line, tc.want) {
				t.Errorf("%s: got %q, want it to name %s", tc.what, line, tc.want)
			}
		}
	})
}

// pidsOf waits until n tasks wrote their PID under dir and returns them.
func pidsOf(t *testing.T, dir string, n int) []int {
	t.Helper()
	var pids []int
	poll(t, 30*time.Second, strconv.Itoa(n)+" running tasks", func() (bool, string) {
		pids = pids[:0]
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if pid, err := strconv.Atoi(string(b)); err == nil {
				pids = append(pids, pid)
			}
		}
		return len(pids) == n, strconv.Itoa(len(pids)) + " PID files"
	})
	return pids
}

// waitGone polls until no process has any of pids.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	poll(t, 30*time.Second, "task processes gone", func() (bool, string) {
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				return false, "process " + strconv.Itoa(pid) + " still exists"
			}
		}
		return true, ""
	})
}

func TestJobCancelStopsTasks(t *testing.T) {
	// The test watches the tasks' host PIDs: run them unsandboxed (the
	// sandbox gives tasks their own PID namespace and a private /tmp).
	s := startServerWith(t, "--unsandboxed-processes")
	pidDir := t.TempDir()
	s.mustCLI(t, "run", "jobs", "create", "long", "--image=file://"+jobtaskBin, "--region="+region,
		"--tasks=3", "--parallelism=2", "--update-env-vars=SLEEP=10m,PID_DIR="+pidDir)
	name := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "execute", "long", "--region="+region).stdout)
	pids := pidsOf(t, pidDir, 2)
	s.mustCLI(t, "run", "jobs", "executions", "cancel", name, "--region="+region)
	ex := s.waitCompleted(t, name)
	if st, reason, _ := ex.completed(); st != "False" || reason != "Cancelled" {
		t.Errorf("Completed after cancel: got %s %s, want False Cancelled", st, reason)
	}
	if ex.Status.CancelledCount != 3 || ex.Status.SucceededCount != 0 {
		t.Errorf("after cancel: got cancelled %d, succeeded %d, want 3 and 0", ex.Status.CancelledCount, ex.Status.SucceededCount)
	}
	waitGone(t, pids)
	if logs := s.mustCLI(t, "run", "jobs", "logs", "read", "long", "--region="+region).stdout; strings.Count(logs, "got SIGTERM") != 2 {
		t.Errorf("logs after cancel: want two tasks to say they got SIGTERM, got:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(pidDir, "task2")); err == nil {
		t.Errorf("task 2 started after the cancel, want it never started")
	}
	line := cliFails(t, s.cli(t, "run", "jobs", "executions", "cancel", name, "--region="+region))
	if !strings.Contains(line, "already finished") {
		t.Errorf("cancelling twice: got %q, want it to say the execution already finished", line)
	}
	s.mustCLI(t, "run", "jobs", "executions", "delete", name, "--region="+region)
	s.mustCLI(t, "run", "jobs", "delete", "long", "--region="+region)
}

func TestJobCrashFailsExecution(t *testing.T) {
	// The test watches the tasks' host PIDs: run them unsandboxed (the
	// sandbox gives tasks their own PID namespace and a private /tmp).
	s := startServerWith(t, "--unsandboxed-processes")
	pidDir := t.TempDir()
	s.mustCLI(t, "run", "jobs", "create", "crashy", "--image=file://"+jobtaskBin, "--region="+region,
		"--tasks=1", "--update-env-vars=SLEEP=10m,PID_DIR="+pidDir)
	name := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "execute", "crashy", "--region="+region).stdout)
	pids := pidsOf(t, pidDir, 1)
	line := cliFails(t, s.cli(t, "run", "jobs", "delete", "crashy", "--region="+region))
	if !strings.Contains(line, "running execution") {
		t.Errorf("deleting a job with a running execution: got %q, want it refused", line)
	}
	s.crash()
	waitGone(t, pids) // Pdeathsig: a task's main process dies with Usher
	s.restart(t, "")
	ex := s.describeExecution(t, name) // failed before the server answers
	st, reason, msg := ex.completed()
	if st != "False" || reason != "NodeRestarted" || !strings.Contains(msg, "stopped or crashed") {
		t.Errorf("execution after a crash: got Completed %s %s %q, want False NodeRestarted and the reason", st, reason, msg)
	}
	if ex.Status.RunningCount != 0 || ex.Status.FailedCount != 1 {
		t.Errorf("after a crash: got running %d, failed %d, want 0 and 1", ex.Status.RunningCount, ex.Status.FailedCount)
	}
	// The job still runs after the restart.
	os.RemoveAll(pidDir)
	s.mustCLI(t, "run", "jobs", "update", "crashy", "--region="+region, "--update-env-vars=SLEEP=0s,PID_DIR=")
	s.mustCLI(t, "run", "jobs", "execute", "crashy", "--wait", "--region="+region)
}

// TestDockerJob: the same job as TestJobTasksRetriesAndLogs from a FROM
// scratch image on the local Docker engine.
func TestDockerJob(t *testing.T) {
	ctx := context.Background()
	c := dockertest.Engine(t, "jobs on the Docker runtime end to end")
	var b [4]byte
	rand.Read(b[:])
	ref := "usher-e2e/jobtask:" + hex.EncodeToString(b[:])
	if err := dockertest.BuildScratchImage(ctx, c, "github.com/usher-run/usher/test/e2e/testdata/jobtask", ref); err != nil {
		t.Fatal(err)
	}
	defer c.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})

	s := startServer(t)
	s.mustCLI(t, "run", "jobs", "create", "boxed", "--image="+ref, "--region="+region,
		"--tasks=10", "--parallelism=3", "--max-retries=1", "--update-env-vars=FAIL_ONCE_TASK=7")
	name := strings.TrimSpace(s.mustCLI(t, "run", "jobs", "execute", "boxed", "--wait", "--region="+region).stdout)
	ex := s.describeExecution(t, name)
	if ex.Status.SucceededCount != 10 || ex.Status.RetriedCount != 1 {
		t.Errorf("container execution: got succeeded %d, retried %d, want 10 and 1", ex.Status.SucceededCount, ex.Status.RetriedCount)
	}
	if logs := s.mustCLI(t, "run", "jobs", "logs", "read", "boxed", "--region="+region, "--limit=1000").stdout; !strings.Contains(logs, "task 7/10 attempt 1") {
		t.Errorf("container task logs: want task 7's second attempt, got:\n%s", logs)
	}
}
