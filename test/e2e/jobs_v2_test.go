package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2/apierror"
	"golang.org/x/oauth2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Cloud Run jobs through the v2 API, driven by Google's own Go REST
// clients (cloud.google.com/go/run/apiv2) against the built binary.

// v2Clients are the jobs, executions and tasks clients of one principal.
type v2Clients struct {
	jobs  *run.JobsClient
	execs *run.ExecutionsClient
	tasks *run.TasksClient
}

func (s *server) v2Clients(t *testing.T, token string) v2Clients {
	t.Helper()
	ctx := context.Background()
	opts := []option.ClientOption{option.WithEndpoint(s.serverURL(t)),
		option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"}))}
	jobs, err := run.NewJobsRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	execs, err := run.NewExecutionsRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := run.NewTasksRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobs.Close(); execs.Close(); tasks.Close() })
	return v2Clients{jobs, execs, tasks}
}

// clientError is the HTTP status and message of a client library error.
func clientError(err error) (int, string) {
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		return ae.HTTPCode(), ae.Error()
	}
	return 0, ""
}

func v2JobSpec(tasks, parallelism int32, env map[string]string) *runpb.Job {
	c := &runpb.Container{Image: "file://" + jobtaskBin}
	for k, v := range env {
		c.Env = append(c.Env, &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: v}})
	}
	return &runpb.Job{Template: &runpb.ExecutionTemplate{TaskCount: tasks, Parallelism: parallelism,
		Template: &runpb.TaskTemplate{Containers: []*runpb.Container{c}, Retries: &runpb.TaskTemplate_MaxRetries{MaxRetries: 1},
			Timeout: durationpb.New(5 * time.Minute)}}}
}

func completedState(ex *runpb.Execution) runpb.Condition_State {
	for _, c := range ex.GetConditions() {
		if c.GetType() == "Completed" {
			return c.GetState()
		}
	}
	return runpb.Condition_STATE_UNSPECIFIED
}

func TestV2JobsGoogleClient(t *testing.T) {
	s := startServer(t)
	owner := s.v2Clients(t, s.accessToken(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parent := "projects/" + project + "/locations/" + region
	jobName := parent + "/jobs/v2batch"

	createOp, err := owner.jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: parent, JobId: "v2batch", Job: v2JobSpec(10, 3, map[string]string{"FAIL_ONCE_TASK": "7"})})
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	job, err := createOp.Wait(ctx)
	if err != nil {
		t.Fatalf("CreateJob's operation: %v", err)
	}
	if job.GetName() != jobName || job.GetTemplate().GetTaskCount() != 10 || job.GetTemplate().GetTemplate().GetMaxRetries() != 1 {
		t.Errorf("created job: got %s, %d tasks, %d retries, want %s, 10, 1", job.GetName(), job.GetTemplate().GetTaskCount(), job.GetTemplate().GetTemplate().GetMaxRetries(), jobName)
	}
	if job.GetTemplate().GetTemplate().GetServiceAccount() == "" || job.GetEtag() == "" {
		t.Errorf("created job: got service account %q, etag %q, want both set", job.GetTemplate().GetTemplate().GetServiceAccount(), job.GetEtag())
	}
	found := false
	for it := owner.jobs.ListJobs(ctx, &runpb.ListJobsRequest{Parent: parent}); ; {
		j, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("ListJobs: %v", err)
		}
		found = found || j.GetName() == jobName
	}
	if !found {
		t.Errorf("ListJobs: %s not listed", jobName)
	}

	runOp, err := owner.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: jobName, Overrides: &runpb.RunJobRequest_Overrides{
		ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Env: []*runpb.EnvVar{{Name: "GREETING", Values: &runpb.EnvVar_Value{Value: "v2"}}}}}}})
	if err != nil {
		t.Fatalf("RunJob: %v", err)
	}
	ex, err := runOp.Wait(ctx)
	if err != nil {
		t.Fatalf("RunJob's operation: %v", err)
	}
	if completedState(ex) != runpb.Condition_CONDITION_SUCCEEDED || ex.GetSucceededCount() != 10 || ex.GetRetriedCount() != 1 || ex.GetParallelism() != 3 {
		t.Errorf("execution: got Completed %v, succeeded %d, retried %d, parallelism %d, want SUCCEEDED, 10, 1, 3", completedState(ex), ex.GetSucceededCount(), ex.GetRetriedCount(), ex.GetParallelism())
	}
	if !strings.HasPrefix(ex.GetName(), jobName+"/executions/v2batch-") || ex.GetJob() != "v2batch" {
		t.Errorf("execution name, job: got %s, %s, want %s/executions/v2batch-…, v2batch", ex.GetName(), ex.GetJob(), jobName)
	}

	var listed []string
	for it := owner.execs.ListExecutions(ctx, &runpb.ListExecutionsRequest{Parent: jobName}); ; {
		e, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("ListExecutions: %v", err)
		}
		listed = append(listed, e.GetName())
	}
	if len(listed) != 1 || listed[0] != ex.GetName() {
		t.Errorf("ListExecutions: got %v, want [%s]", listed, ex.GetName())
	}
	var tasks []*runpb.Task
	for it := owner.tasks.ListTasks(ctx, &runpb.ListTasksRequest{Parent: ex.GetName()}); ; {
		tk, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("ListTasks: %v", err)
		}
		tasks = append(tasks, tk)
	}
	if len(tasks) != 10 {
		t.Fatalf("ListTasks: got %d tasks, want 10", len(tasks))
	}
	for _, tk := range tasks {
		want := int32(0)
		if tk.GetIndex() == 7 {
			want = 1
		}
		if tk.GetRetried() != want {
			t.Errorf("task %d: got retried %d, want %d", tk.GetIndex(), tk.GetRetried(), want)
		}
	}
	if got, err := owner.tasks.GetTask(ctx, &runpb.GetTaskRequest{Name: tasks[7].GetName()}); err != nil || got.GetIndex() != 7 {
		t.Errorf("GetTask %s: got %v, %v, want task 7", tasks[7].GetName(), got.GetIndex(), err)
	}

	if got, err := owner.execs.GetExecution(ctx, &runpb.GetExecutionRequest{Name: ex.GetName()}); err != nil || got.GetSucceededCount() != 10 {
		t.Errorf("GetExecution: got %d succeeded, %v, want 10", got.GetSucceededCount(), err)
	}

	t.Run("update with the current etag, then a stale one", func(t *testing.T) {
		current, err := owner.jobs.GetJob(ctx, &runpb.GetJobRequest{Name: jobName})
		if err != nil {
			t.Fatalf("GetJob: %v", err)
		}
		stale := current.GetEtag()
		current.Template.Parallelism = 5
		op, err := owner.jobs.UpdateJob(ctx, &runpb.UpdateJobRequest{Job: current})
		if err == nil {
			current, err = op.Wait(ctx)
		}
		if err != nil || current.GetTemplate().GetParallelism() != 5 || current.GetEtag() == stale {
			t.Fatalf("UpdateJob with the current etag: got parallelism %d, etag %q (was %q), %v", current.GetTemplate().GetParallelism(), current.GetEtag(), stale, err)
		}
		current.Etag = stale
		_, err = owner.jobs.UpdateJob(ctx, &runpb.UpdateJobRequest{Job: current})
		if code, _ := clientError(err); code != 409 {
			t.Errorf("UpdateJob with a stale etag: got %v, want 409 ABORTED", err)
		}
	})

	t.Run("cancel stops a running execution", func(t *testing.T) {
		op, err := owner.jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: parent, JobId: "v2long", Job: v2JobSpec(2, 2, map[string]string{"SLEEP": "10m"})})
		if err == nil {
			_, err = op.Wait(ctx)
		}
		if err != nil {
			t.Fatalf("CreateJob v2long: %v", err)
		}
		runOp, err := owner.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: parent + "/jobs/v2long"})
		if err != nil {
			t.Fatalf("RunJob v2long: %v", err)
		}
		meta, err := runOp.Metadata()
		if err != nil || meta.GetName() == "" {
			t.Fatalf("RunJob's metadata: got %v, %v, want the execution", meta, err)
		}
		if runOp.Done() {
			t.Fatalf("RunJob's operation is done while its tasks sleep 10 minutes")
		}
		cancelOp, err := owner.execs.CancelExecution(ctx, &runpb.CancelExecutionRequest{Name: meta.GetName()})
		if err != nil {
			t.Fatalf("CancelExecution: %v", err)
		}
		got, err := cancelOp.Wait(ctx)
		if err != nil {
			t.Fatalf("CancelExecution's operation: %v", err)
		}
		if got.GetCancelledCount() != 2 || completedState(got) != runpb.Condition_CONDITION_FAILED {
			t.Errorf("cancelled execution: got cancelled %d, Completed %v, want 2, FAILED", got.GetCancelledCount(), completedState(got))
		}
		if _, err := runOp.Wait(ctx); err == nil {
			t.Errorf("the cancelled run's operation: got no error, want the execution's failure")
		}
	})

	t.Run("IAM: run.jobs.run, then roles/run.invoker on the job", func(t *testing.T) {
		runner := s.createSA(t, "v2-runner")
		as := s.v2Clients(t, s.accessToken(t, "--impersonate-service-account="+runner))
		if _, err := as.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: jobName}); !strings.Contains(errText(err), "run.jobs.run") {
			t.Errorf("RunJob without a grant: got %v, want 403 naming run.jobs.run", err)
		} else if code, _ := clientError(err); code != 403 {
			t.Errorf("RunJob without a grant: got HTTP %d, want 403", code)
		}
		pol, err := owner.jobs.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: jobName})
		if err != nil {
			t.Fatalf("GetIamPolicy: %v", err)
		}
		pol.Bindings = append(pol.Bindings, &iampb.Binding{Role: "roles/run.invoker", Members: []string{"serviceAccount:" + runner}})
		if _, err := owner.jobs.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: jobName, Policy: pol}); err != nil {
			t.Fatalf("SetIamPolicy: %v", err)
		}
		op, err := as.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: jobName})
		if err != nil {
			t.Fatalf("RunJob as the job's invoker: %v", err)
		}
		meta, err := op.Metadata()
		if err != nil || !strings.HasPrefix(meta.GetName(), jobName+"/executions/") {
			t.Errorf("RunJob as the job's invoker: got execution %q, %v", meta.GetName(), err)
		}
		for _, tc := range []struct {
			what string
			call func() error
			want string
		}{
			{"overrides need runWithOverrides", func() error {
				_, err := as.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: jobName, Overrides: &runpb.RunJobRequest_Overrides{TaskCount: 1}})
				return err
			}, "run.jobs.runWithOverrides"},
			{"the invoker cannot cancel", func() error {
				_, err := as.execs.CancelExecution(ctx, &runpb.CancelExecutionRequest{Name: meta.GetName()})
				return err
			}, "run.executions.cancel"},
			{"the invoker cannot list tasks", func() error {
				_, err := as.tasks.ListTasks(ctx, &runpb.ListTasksRequest{Parent: meta.GetName()}).Next()
				return err
			}, "run.tasks.list"},
			{"the invoker cannot change the job", func() error {
				_, err := as.jobs.UpdateJob(ctx, &runpb.UpdateJobRequest{Job: &runpb.Job{Name: jobName, Template: v2JobSpec(1, 1, nil).Template}})
				return err
			}, "run.jobs.update"},
			{"the invoker cannot grant itself more", func() error {
				_, err := as.jobs.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: jobName, Policy: pol})
				return err
			}, "run.jobs.setIamPolicy"},
			{"the invoker cannot delete the job", func() error {
				_, err := as.jobs.DeleteJob(ctx, &runpb.DeleteJobRequest{Name: jobName})
				return err
			}, "run.jobs.delete"},
		} {
			err := tc.call()
			if code, _ := clientError(err); code != 403 || !strings.Contains(errText(err), tc.want) {
				t.Errorf("%s: got HTTP %d %v, want 403 naming %s", tc.what, code, err, tc.want)
			}
		}
		forged := s.v2Clients(t, s.idToken(t, runner, s.serverURL(t)))
		if _, err := forged.jobs.RunJob(ctx, &runpb.RunJobRequest{Name: jobName}); func() int { c, _ := clientError(err); return c }() != 401 {
			t.Errorf("RunJob with an identity token instead of an access token: got %v, want 401", err)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		bad := v2JobSpec(1, 1, nil)
		bad.Template.Template.VpcAccess = &runpb.VpcAccess{Connector: "projects/p/locations/l/connectors/c"}
		_, err := owner.jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: parent, JobId: "v2bad", Job: bad})
		if code, _ := clientError(err); code != 400 || !strings.Contains(errText(err), "vpcAccess") {
			t.Errorf("CreateJob with vpcAccess: got HTTP %d %v, want 400 naming vpcAccess", code, err)
		}
		if _, err := owner.jobs.GetJob(ctx, &runpb.GetJobRequest{Name: parent + "/jobs/v2bad"}); func() int { c, _ := clientError(err); return c }() != 404 {
			t.Errorf("GetJob after a refused create: got %v, want 404", err)
		}
	})

	exDel, err := owner.execs.DeleteExecution(ctx, &runpb.DeleteExecutionRequest{Name: ex.GetName()})
	if err == nil {
		_, err = exDel.Wait(ctx)
	}
	if err != nil {
		t.Errorf("DeleteExecution of a finished execution: %v", err)
	}
	if _, err := owner.execs.GetExecution(ctx, &runpb.GetExecutionRequest{Name: ex.GetName()}); func() int { c, _ := clientError(err); return c }() != 404 {
		t.Errorf("GetExecution after its delete: got %v, want 404", err)
	}
	delOp, err := owner.jobs.DeleteJob(ctx, &runpb.DeleteJobRequest{Name: parent + "/jobs/v2long"})
	if err == nil {
		_, err = delOp.Wait(ctx)
	}
	if err != nil {
		t.Errorf("DeleteJob v2long: %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
