package api

// Cloud Run Admin API v2 jobs: /v2/projects/{p}/locations/{l}/jobs…, their
// executions (with :cancel), tasks, IAM methods and operations, as Google's
// client libraries (cloud.google.com/go/run/apiv2 JobsClient,
// ExecutionsClient, TasksClient) call them.
//
// Like v2 services, v2 jobs are a view of the stored v1 objects
// (apis.JobToV2, ExecutionToV2, TaskToV2): writes go through the admin
// core's WriteJob, RunJob, CancelExecution …, which check the permissions
// (run.jobs.*, run.jobs.run, run.jobs.runWithOverrides, run.executions.*,
// run.tasks.*) exactly as for v1.
//
// Operations are computed as for services (see opRef in v2.go): a job's
// create, update and delete are done at once (a job has nothing to roll
// out); a run's operation is done when its execution completes (response:
// the execution; error: FAILED_PRECONDITION with the Completed message),
// as Google's is; a cancel's when the execution has stopped. Reading a
// job's operation needs run.jobs.get on it; an execution's needs
// run.executions.get on its job. validateOnly is refused (UNIMPLEMENTED):
// Usher has no dry run of a job write, and doing the write would be worse.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

// Operation kinds of jobs and executions.
const (
	opJobCreate       = "job.create"
	opJobUpdate       = "job.update"
	opJobDelete       = "job.delete"
	opJobRun          = "job.run"
	opExecutionCancel = "execution.cancel"
	opExecutionDelete = "execution.delete"
)

// isJobOp reports whether an operation is about a job or its executions.
func isJobOp(kind string) bool {
	switch kind {
	case opJobCreate, opJobUpdate, opJobDelete, opJobRun, opExecutionCancel, opExecutionDelete:
		return true
	}
	return false
}

func (a *API) routesV2Jobs() {
	m := a.mux
	const loc = "/v2/projects/{ns}/locations/{region}"
	m.Handle("GET "+loc+"/jobs", a.authed(a.listJobsV2))
	m.Handle("POST "+loc+"/jobs", a.authed(a.createJobV2))
	m.Handle("GET "+loc+"/jobs/{name}", a.authed(a.jobGetOrPolicyV2))
	m.Handle("POST "+loc+"/jobs/{name}", a.authed(a.jobMethodV2)) // :run, :setIamPolicy, :testIamPermissions
	m.Handle("PATCH "+loc+"/jobs/{name}", a.authed(a.updateJobV2))
	m.Handle("DELETE "+loc+"/jobs/{name}", a.authed(a.deleteJobV2))
	m.Handle("GET "+loc+"/jobs/{name}/executions", a.authed(a.listExecutionsV2))
	m.Handle("GET "+loc+"/jobs/{name}/executions/{execution}", a.authed(a.getExecutionV2))
	m.Handle("POST "+loc+"/jobs/{name}/executions/{execution}", a.authed(a.cancelExecutionV2)) // :cancel
	m.Handle("DELETE "+loc+"/jobs/{name}/executions/{execution}", a.authed(a.deleteExecutionV2))
	m.Handle("GET "+loc+"/jobs/{name}/executions/{execution}/tasks", a.authed(a.listTasksV2))
	m.Handle("GET "+loc+"/jobs/{name}/executions/{execution}/tasks/{task}", a.authed(a.getTaskV2))
}

// jobV2 renders a job read from the core (its resourceVersion is its store revision).
func jobV2(j *apis.Job) *apis.V2Job {
	v := apis.JobToV2(j)
	if rev, err := parseRevision(j.Metadata.ResourceVersion); err == nil {
		v.Etag = iam.Etag(rev)
	}
	return v
}

func refuseValidateOnly(r *http.Request) error {
	v, err := queryBool(r, "validateOnly")
	if err != nil {
		return err
	}
	if v {
		return unimplemented("validateOnly is not supported for jobs by Usher; send the request without it")
	}
	return nil
}

type listJobsV2Response struct {
	Jobs          []*apis.V2Job `json:"jobs"`
	NextPageToken string        `json:"nextPageToken,omitempty"`
}

func (a *API) listJobsV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	jobs, _, err := a.cfg.Core.ListJobs(r.Context(), c, project, listRegion(region))
	if err != nil {
		return err
	}
	page, next, err := pageOf(r, jobs, func(j apis.Job) string { return j.Metadata.Labels[apis.LabelLocation] + "/" + j.Metadata.Name })
	if err != nil {
		return err
	}
	out := listJobsV2Response{Jobs: []*apis.V2Job{}, NextPageToken: next}
	for i := range page {
		out.Jobs = append(out.Jobs, jobV2(&page[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) jobGetOrPolicyV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	if method != "" {
		return a.policyMethod(w, r, c, method, a.jobTarget(r, name))
	}
	project, region := pathScope(r)
	j, err := a.cfg.Core.GetJob(r.Context(), c, project, region, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobV2(j))
}

// parseJobBody turns a v2 Job body into the v1 job to write; the body's
// name, when set, must be the job the request addresses.
func parseJobBody(r *http.Request, project, region, name string) (*apis.Job, string, error) {
	body, err := readBodyV2(r)
	if err != nil {
		return nil, "", err
	}
	v, err := apis.ParseV2Job(body)
	if err != nil {
		return nil, "", invalidArgument("%v", err)
	}
	if v.Name != "" && v.Name != apis.V2JobName(project, region, name) && v.Name != apis.V2JobName(apis.ProjectNumber(project), region, name) {
		return nil, "", invalidArgument("job.name %q does not match the job %q in the path", v.Name, name)
	}
	j, err := apis.JobFromV2(v, project, name)
	if err != nil {
		return nil, "", invalidArgument("%v", err)
	}
	return j, v.Etag, nil
}

func (a *API) createJobV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.URL.Query().Get("jobId")
	if name == "" {
		return invalidArgument("job_id is required: pass ?jobId=NAME")
	}
	if err := apis.ValidateJobName(name); err != nil {
		return invalidArgument("job_id: %v", err)
	}
	if err := refuseValidateOnly(r); err != nil {
		return err
	}
	j, _, err := parseJobBody(r, project, region, name)
	if err != nil {
		return err
	}
	out, err := a.cfg.Core.WriteJob(r.Context(), c, admin.JobWrite{Project: project, Region: region, Name: name, Create: true, Job: j})
	if err != nil {
		return err
	}
	return a.jobOperation(w, out, opJobCreate)
}

// updateJobV2 is PATCH: the body replaces the job (allowMissing: creates
// it when absent). An etag in the body must be current.
func (a *API) updateJobV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name, _ := splitMethod(r.PathValue("name"))
	if err := refuseValidateOnly(r); err != nil {
		return err
	}
	allowMissing, err := queryBool(r, "allowMissing")
	if err != nil {
		return err
	}
	j, etag, err := parseJobBody(r, project, region, name)
	if err != nil {
		return err
	}
	write := admin.JobWrite{Project: project, Region: region, Name: name, Job: j}
	if etag != "" {
		rev, err := iam.ParseEtag(etag)
		if err != nil {
			return invalidArgument("etag %q is not an etag this server issued", etag)
		}
		write.ResourceVersion = formatRevision(rev)
	}
	kind := opJobUpdate
	if allowMissing {
		if _, err := a.cfg.Core.GetJob(r.Context(), c, project, region, name); admin.IsNotFound(err) {
			write.Create, kind = true, opJobCreate
		}
	}
	out, err := a.cfg.Core.WriteJob(r.Context(), c, write)
	if err != nil {
		return err
	}
	return a.jobOperation(w, out, kind)
}

func (a *API) deleteJobV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name, _ := splitMethod(r.PathValue("name"))
	if err := refuseValidateOnly(r); err != nil {
		return err
	}
	j, err := a.cfg.Core.DeleteJob(r.Context(), c, project, region, name)
	if err != nil {
		return err
	}
	return a.jobOperation(w, j, opJobDelete)
}

// jobOperation answers a job write with its (finished) operation.
func (a *API) jobOperation(w http.ResponseWriter, j *apis.Job, kind string) error {
	v := jobV2(j)
	if kind == opJobDelete {
		v.DeleteTime = a.cfg.Core.Now().UTC().Format(time.RFC3339)
	}
	body, err := apis.V2AnyJSON(apis.V2JobTypeURL, v)
	if err != nil {
		return err
	}
	ref := opRef{Kind: kind, Job: j.Metadata.Name, UID: j.Metadata.UID}
	op := &apis.V2Operation{Name: ref.name(j.Metadata.Namespace, j.Metadata.Labels[apis.LabelLocation]), Metadata: body, Done: true, Response: body}
	return writeJSON(w, http.StatusOK, op)
}

// jobMethodV2 serves NAME:run and the job's IAM methods.
func (a *API) jobMethodV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	if method != "run" {
		return a.policyMethod(w, r, c, method, a.jobTarget(r, name))
	}
	project, region := pathScope(r)
	body, err := readBodyV2(r)
	if err != nil {
		return err
	}
	req, overrides, err := apis.ParseV2RunJob(body)
	if err != nil {
		return invalidArgument("%v", err)
	}
	if req.ValidateOnly {
		return unimplemented("validateOnly is not supported for jobs by Usher; send the request without it")
	}
	if req.Etag != "" {
		j, err := a.cfg.Core.GetJob(r.Context(), c, project, region, name)
		if err != nil {
			return err
		}
		if jobV2(j).Etag != req.Etag {
			return admin.Aborted("The job '%s' has changed since etag %s was read. Read it again and retry.", name, req.Etag)
		}
	}
	ex, err := a.cfg.Core.RunJob(r.Context(), c, project, region, name, overrides)
	if err != nil {
		return err
	}
	ref := opRef{Kind: opJobRun, Job: name, Execution: ex.Metadata.Name, UID: ex.Metadata.UID}
	return a.executionOperation(w, r, c, ex.Metadata.Namespace, ex.Metadata.Labels[apis.LabelLocation], ref, ex)
}

// executionOf reads the execution in the path and checks it belongs to the
// path's job (else NOT_FOUND, as Google answers).
func (a *API) executionOf(r *http.Request, c *caller) (*apis.Execution, error) {
	project, region := pathScope(r)
	job := r.PathValue("name")
	exName, _ := splitMethod(r.PathValue("execution"))
	ex, err := a.cfg.Core.GetExecution(r.Context(), c, project, region, exName)
	if err != nil {
		return nil, err
	}
	if ex.Metadata.Labels[apis.LabelJob] != job {
		return nil, notFound("Resource '%s' of kind 'EXECUTION' in region '%s' in project '%s' does not exist.", exName, region, project)
	}
	return ex, nil
}

type listExecutionsV2Response struct {
	Executions    []*apis.V2Execution `json:"executions"`
	NextPageToken string              `json:"nextPageToken,omitempty"`
}

func (a *API) listExecutionsV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	job := r.PathValue("name")
	items, err := a.cfg.Core.ListExecutions(r.Context(), c, project, region, job)
	if err != nil {
		return err
	}
	// Newest first, as the core lists them; page tokens key on that order.
	keyed := make([]int, len(items))
	for i := range keyed {
		keyed[i] = i
	}
	page, next, err := pageOf(r, keyed, func(i int) string { return pageKey(i) })
	if err != nil {
		return err
	}
	out := listExecutionsV2Response{Executions: []*apis.V2Execution{}, NextPageToken: next}
	for _, i := range page {
		out.Executions = append(out.Executions, apis.ExecutionToV2(&items[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

// pageKey orders positions as strings do.
func pageKey(i int) string { return fmt.Sprintf("%010d", i) }

func (a *API) getExecutionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, method := splitMethod(r.PathValue("execution")); method != "" {
		return notFound("no method %q on executions", method)
	}
	ex, err := a.executionOf(r, c)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apis.ExecutionToV2(ex))
}

func (a *API) cancelExecutionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	exName, method := splitMethod(r.PathValue("execution"))
	if method != "cancel" {
		return notFound("no method %q on executions", method)
	}
	var req struct {
		ValidateOnly bool   `json:"validateOnly"`
		Etag         string `json:"etag"`
		Name         string `json:"name"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.ValidateOnly {
		return unimplemented("validateOnly is not supported for executions by Usher; send the request without it")
	}
	if _, err := a.executionOf(r, c); err != nil && !isPermissionDenied(err) {
		return err
	}
	project, region := pathScope(r)
	ex, err := a.cfg.Core.CancelExecution(r.Context(), c, project, region, exName)
	if err != nil {
		return err
	}
	ref := opRef{Kind: opExecutionCancel, Job: r.PathValue("name"), Execution: exName, UID: ex.Metadata.UID}
	return a.executionOperation(w, r, c, ex.Metadata.Namespace, ex.Metadata.Labels[apis.LabelLocation], ref, ex)
}

// isPermissionDenied lets a canceller who may not read executions (only
// cancel them) reach the core's own check, which names the permission.
func isPermissionDenied(err error) bool {
	ae, ok := err.(*admin.Error)
	return ok && ae.Status == "PERMISSION_DENIED"
}

func (a *API) deleteExecutionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := refuseValidateOnly(r); err != nil {
		return err
	}
	if _, err := a.executionOf(r, c); err != nil && !isPermissionDenied(err) {
		return err
	}
	project, region := pathScope(r)
	exName, _ := splitMethod(r.PathValue("execution"))
	ex, err := a.cfg.Core.DeleteExecution(r.Context(), c, project, region, exName)
	if err != nil {
		return err
	}
	body, err := apis.V2AnyJSON(apis.V2ExecutionTypeURL, apis.ExecutionToV2(ex))
	if err != nil {
		return err
	}
	ref := opRef{Kind: opExecutionDelete, Job: r.PathValue("name"), Execution: exName, UID: ex.Metadata.UID}
	return writeJSON(w, http.StatusOK, &apis.V2Operation{Name: ref.name(ex.Metadata.Namespace, ex.Metadata.Labels[apis.LabelLocation]), Metadata: body, Done: true, Response: body})
}

type listTasksV2Response struct {
	Tasks         []*apis.V2Task `json:"tasks"`
	NextPageToken string         `json:"nextPageToken,omitempty"`
}

func (a *API) listTasksV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, err := a.executionOf(r, c); err != nil && !isPermissionDenied(err) {
		return err
	}
	project, region := pathScope(r)
	tasks, err := a.cfg.Core.ListTasks(r.Context(), c, project, region, r.PathValue("execution"))
	if err != nil {
		return err
	}
	page, next, err := pageOf(r, tasks, func(t apis.Task) string { return pageKey(int(t.Status.Index)) })
	if err != nil {
		return err
	}
	out := listTasksV2Response{Tasks: []*apis.V2Task{}, NextPageToken: next}
	for i := range page {
		out.Tasks = append(out.Tasks, apis.TaskToV2(&page[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getTaskV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, err := a.executionOf(r, c); err != nil && !isPermissionDenied(err) {
		return err
	}
	project, region := pathScope(r)
	task, _ := splitMethod(r.PathValue("task"))
	exName := r.PathValue("execution")
	if len(task) <= len(exName) || task[:len(exName)] != exName {
		return notFound("Resource '%s' of kind 'TASK' does not exist.", task)
	}
	t, err := a.cfg.Core.GetTask(r.Context(), c, project, region, task)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apis.TaskToV2(t))
}

// ---- operations of jobs ----

// executionOperation answers with an execution's operation as it stands.
func (a *API) executionOperation(w http.ResponseWriter, r *http.Request, c *caller, project, region string, ref opRef, ex *apis.Execution) error {
	op, err := executionOpState(project, region, ref, ex)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, op)
}

// executionOpState computes a run's or cancel's operation from its execution.
func executionOpState(project, region string, ref opRef, ex *apis.Execution) (*apis.V2Operation, error) {
	op := &apis.V2Operation{Name: ref.name(project, region)}
	var err error
	if op.Metadata, err = apis.V2AnyJSON(apis.V2ExecutionTypeURL, apis.ExecutionToV2(ex)); err != nil {
		return nil, err
	}
	for _, cond := range ex.Status.Conditions {
		if cond.Type != apis.ConditionCompleted {
			continue
		}
		switch {
		case cond.Status == apis.StatusTrue, cond.Status == apis.StatusFalse && ref.Kind == opExecutionCancel:
			op.Done, op.Response = true, op.Metadata
		case cond.Status == apis.StatusFalse:
			op.Done = true
			op.Error = &apis.V2Status{Code: rpcFailedPrecondition, Message: cond.Message}
		}
	}
	return op, nil
}

// jobOperationState computes an operation of a job or execution (isJobOp).
func (a *API) jobOperationState(ctx context.Context, c *caller, project, region string, ref opRef) (*apis.V2Operation, error) {
	switch ref.Kind {
	case opJobRun, opExecutionCancel:
		ex, err := a.cfg.Core.GetExecution(ctx, c, project, region, ref.Execution)
		if admin.IsNotFound(err) || (err == nil && ex.Metadata.UID != ref.UID) {
			return &apis.V2Operation{Name: ref.name(project, region), Done: true,
				Error: &apis.V2Status{Code: rpcNotFound, Message: "Execution '" + ref.Execution + "' was deleted before the operation completed."}}, nil
		}
		if err != nil {
			return nil, err
		}
		return executionOpState(project, region, ref, ex)
	case opExecutionDelete:
		body, err := apis.V2AnyJSON(apis.V2ExecutionTypeURL, &apis.V2Execution{Name: apis.V2ExecutionName(project, region, ref.Job, ref.Execution), UID: ref.UID})
		if err != nil {
			return nil, err
		}
		return &apis.V2Operation{Name: ref.name(project, region), Metadata: body, Done: true, Response: body}, nil
	}
	v := &apis.V2Job{Name: apis.V2JobName(project, region, ref.Job), UID: ref.UID}
	if ref.Kind != opJobDelete {
		j, err := a.cfg.Core.GetJob(ctx, c, project, region, ref.Job)
		if err != nil && !admin.IsNotFound(err) {
			return nil, err
		}
		if err == nil && j.Metadata.UID == ref.UID {
			v = jobV2(j)
		}
	}
	body, err := apis.V2AnyJSON(apis.V2JobTypeURL, v)
	if err != nil {
		return nil, err
	}
	return &apis.V2Operation{Name: ref.name(project, region), Metadata: body, Done: true, Response: body}, nil
}

// authorizeJobOperation checks that c may read the operation's job (job
// operations) or its executions (run and cancel).
func (a *API) authorizeJobOperation(ctx context.Context, c *caller, project, region string, ref opRef) (string, string, error) {
	perm := iam.PermJobsGet
	if ref.Execution != "" {
		perm = iam.PermExecutionsGet
	}
	return a.cfg.Core.AuthorizeJob(ctx, c, perm, project, region, ref.Job)
}

// waitJobOperation polls an execution's operation until it is done or ctx
// ends; job operations are always done.
func (a *API) waitJobOperation(ctx context.Context, c *caller, project, region string, ref opRef) (*apis.V2Operation, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		op, err := a.jobOperationState(context.WithoutCancel(ctx), c, project, region, ref)
		if err != nil || op.Done {
			return op, err
		}
		select {
		case <-ctx.Done():
			return op, nil
		case <-tick.C:
		}
	}
}

func parseRevision(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

func formatRevision(rev int64) string { return strconv.FormatInt(rev, 10) }
