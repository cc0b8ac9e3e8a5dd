package admin

// Cloud Run jobs (issue 16): a job is a template of executions; running it
// stores an execution with its tasks, which a node's job runner (package
// jobs) claims and runs. Permissions are Google's, checked on the job's
// policy under its project's:
//
//   - run.jobs.create/get/list/update/delete, getIamPolicy, setIamPolicy;
//   - run.jobs.run to execute it (roles/run.invoker holds it), and
//     run.jobs.runWithOverrides as well to execute it with overrides;
//   - run.executions.get/list/cancel/delete and run.tasks.get/list on its
//     executions and their tasks.
//
// A job runs as its service account and may name a file:// image: creating
// or changing it checks what a service write checks (checkActAs,
// checkHostExecutable). Running it checks only run.jobs.run: the job's
// writer was checked for what the job does, as Google does.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Audit kinds of job writes.
const (
	KindJobCreate       = "job.create"
	KindJobReplace      = "job.replace"
	KindJobDelete       = "job.delete"
	KindJobRun          = "job.run"
	KindExecutionCancel = "execution.cancel"
	KindExecutionDelete = "execution.delete"
)

// jobScope resolves the project and region of a request about one job.
func (c *Core) jobScope(ctx context.Context, project, region, name string) (state.Project, string, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return p, "", err
	}
	if region, err = c.Region(region, false); err != nil {
		return p, "", err
	}
	if err := apis.ValidateJobName(name); err != nil {
		return p, "", InvalidField(err)
	}
	return p, region, nil
}

// jobLevels are the policies in force on a job: its project's, then its own.
func (c *Core) jobLevels(ctx context.Context, project, region, name string) ([]iam.Level, error) {
	proj, err := c.projectLevel(ctx, project)
	if err != nil {
		return nil, err
	}
	pol, _, err := c.readPolicy(ctx, state.JobPolicyKey(project, region, name))
	if err != nil {
		return nil, err
	}
	return []iam.Level{proj, {Resource: apis.JobResource(project, region, name), Policy: pol}}, nil
}

// authorizeJob checks that caller holds perm on a job (which need not
// exist: then its project's policy decides).
func (c *Core) authorizeJob(ctx context.Context, caller *Caller, perm, project, region, name string) error {
	levels, err := c.jobLevels(ctx, project, region, name)
	if err != nil {
		return err
	}
	return c.authorize(caller, perm, "namespaces/"+project+"/jobs/"+name, levels...)
}

// JobTarget is a job's policy.
func (c *Core) JobTarget(ctx context.Context, project, region, name string) (*Target, error) {
	p, region, err := c.jobScope(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	proj, err := c.projectLevel(ctx, p.ProjectID)
	if err != nil {
		return nil, err
	}
	return &Target{
		key:      state.JobPolicyKey(p.ProjectID, region, name),
		Resource: apis.JobResource(p.ProjectID, region, name),
		parents:  []iam.Level{proj},
		getPerm:  iam.PermJobsGetIamPolicy,
		setPerm:  iam.PermJobsSetIamPolicy,
		scope:    iam.ScopeService,
		exists: func(ctx context.Context) error {
			_, _, err := c.readJob(ctx, p.ProjectID, region, name)
			return err
		},
	}, nil
}

func (c *Core) readJob(ctx context.Context, project, region, name string) (*apis.Job, int64, error) {
	var j apis.Job
	rev, err := state.Get(ctx, c.cfg.Store, state.JobKey(project, region, name), &j)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, NotFound("Resource '%s' of kind 'JOB' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return nil, 0, err
	}
	return &j, rev, nil
}

func decorateJob(j *apis.Job, rev int64) {
	j.Metadata.ResourceVersion = revisionString(rev)
	j.Metadata.SelfLink = "/apis/run.googleapis.com/v1/namespaces/" + j.Metadata.Namespace + "/jobs/" + j.Metadata.Name
}

// ListJobs lists a project's jobs in region (AllRegions: every region).
func (c *Core) ListJobs(ctx context.Context, caller *Caller, project, region string) ([]apis.Job, int64, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermJobsList)
	if err != nil {
		return nil, 0, err
	}
	if region, err = c.Region(region, true); err != nil {
		return nil, 0, err
	}
	prefix := state.JobsPrefix + p.ProjectID + "/"
	if region != AllRegions {
		prefix += region + "/"
	}
	entries, listRev, err := c.cfg.Store.List(ctx, prefix)
	if err != nil {
		return nil, 0, err
	}
	out := []apis.Job{}
	for _, e := range entries {
		var j apis.Job
		if err := json.Unmarshal(e.Value, &j); err != nil {
			return nil, 0, err
		}
		decorateJob(&j, e.Revision)
		out = append(out, j)
	}
	return out, listRev, nil
}

// GetJob reads a job for holders of run.jobs.get.
func (c *Core) GetJob(ctx context.Context, caller *Caller, project, region, name string) (*apis.Job, error) {
	p, region, err := c.jobScope(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	if err := c.authorizeJob(ctx, caller, iam.PermJobsGet, p.ProjectID, region, name); err != nil {
		return nil, err
	}
	j, rev, err := c.readJob(ctx, p.ProjectID, region, name)
	if err != nil {
		return nil, err
	}
	decorateJob(j, rev)
	return j, nil
}

// JobWrite is one create or replace of a job.
type JobWrite struct {
	Project, Region, Name string
	// Create makes a new job (one that exists is ALREADY_EXISTS); else the
	// job must exist.
	Create bool
	Job    *apis.Job
	// ResourceVersion, when set, must be the stored job's.
	ResourceVersion string
}

// WriteJob creates or replaces a job, checking what the job would run as
// and what it would run.
func (c *Core) WriteJob(ctx context.Context, caller *Caller, w JobWrite) (*apis.Job, error) {
	p, region, err := c.jobScope(ctx, w.Project, w.Region, w.Name)
	if err != nil {
		return nil, err
	}
	project := p.ProjectID
	perm := iam.PermJobsUpdate
	if w.Create {
		perm = iam.PermJobsCreate
	}
	if err := c.authorizeJob(ctx, caller, perm, project, region, w.Name); err != nil {
		return nil, err
	}
	old, rev, err := c.readJob(ctx, project, region, w.Name)
	switch {
	case err == nil && w.Create:
		return nil, AlreadyExists("Resource '%s' already exists.", w.Name)
	case IsNotFound(err) && w.Create:
		old = nil
	case err != nil:
		return nil, err
	}
	if w.ResourceVersion != "" && old != nil && w.ResourceVersion != revisionString(rev) {
		return nil, Aborted("The job '%s' was modified concurrently (resourceVersion %s is stale). Read it again and retry.", w.Name, w.ResourceVersion)
	}
	j := w.Job
	if j.Kind != "" && j.Kind != apis.KindJob {
		return nil, InvalidArgument("kind %q is not supported; use %s", j.Kind, apis.KindJob)
	}
	if ns := j.Metadata.Namespace; ns != "" && ns != project && ns != apis.ProjectNumber(project) {
		return nil, InvalidArgument("metadata.namespace %q does not match the project %q in the request", ns, project)
	}
	j.Metadata.Name = w.Name
	j.SetDefaults(project, apis.DefaultServiceAccount(project))
	if err := j.Validate(); err != nil {
		return nil, InvalidField(err)
	}
	now := c.cfg.Now().UTC().Format(time.RFC3339)
	if j.Metadata.Labels == nil {
		j.Metadata.Labels = map[string]string{}
	}
	j.Metadata.Labels[apis.LabelLocation] = region
	if j.Metadata.Annotations == nil {
		j.Metadata.Annotations = map[string]string{}
	}
	j.Metadata.Annotations[apis.AnnotationRunLastModifier] = caller.Principal.Email
	if old == nil {
		j.Metadata.UID, j.Metadata.Generation, j.Metadata.CreationTimestamp = newUID(), 1, now
		j.Metadata.Annotations[apis.AnnotationRunCreator] = caller.Principal.Email
		j.Status = apis.JobStatus{}
	} else {
		j.Metadata.UID, j.Metadata.CreationTimestamp = old.Metadata.UID, old.Metadata.CreationTimestamp
		if cr := old.Metadata.Annotations[apis.AnnotationRunCreator]; cr != "" {
			j.Metadata.Annotations[apis.AnnotationRunCreator] = cr
		}
		j.Metadata.Generation = old.Metadata.Generation
		if !sameJSON(j.Spec, old.Spec) {
			j.Metadata.Generation++
		}
		j.Status = old.Status
	}
	j.Status.ObservedGeneration = j.Metadata.Generation
	j.Status.Conditions = []apis.Condition{{Type: apis.ConditionReady, Status: apis.StatusTrue, LastTransitionTime: now}}
	ts := j.Spec.Template.Spec.Template.Spec
	if old == nil || !sameJSON(j.Spec, old.Spec) {
		if err := c.checkActAs(ctx, caller, ts.ServiceAccountName); err != nil {
			return nil, err
		}
		if image := ts.Containers[0].Image; runtime.IsFileImage(image) {
			if err := c.checkHostExecutable(ctx, caller, project, image); err != nil {
				return nil, err
			}
		}
	}
	// As for a service, on every write: the job's account must read its
	// secrets (secrets.go).
	if p, err := c.Project(ctx, project); err != nil {
		return nil, err
	} else if err := c.checkSpecSecretRefs(ctx, p, apis.RevisionSpec{ServiceAccountName: ts.ServiceAccountName, Containers: ts.Containers}); err != nil {
		return nil, err
	}
	expected, kind := rev, KindJobReplace
	if old == nil {
		expected, kind = store.MustNotExist, KindJobCreate
	}
	newRev, err := c.commit(ctx, caller, change{
		writes: []write{{key: state.JobKey(project, region, w.Name), value: j, expected: expected, conflict: func() error {
			if old == nil {
				return AlreadyExists("Resource '%s' already exists.", w.Name)
			}
			return Aborted("The job '%s' was modified concurrently. Read it again and retry.", w.Name)
		}}},
		record: audit.Record{Kind: kind, Permission: perm, Resource: apis.JobResource(project, region, w.Name),
			Details: &audit.Details{Generation: j.Metadata.Generation, Image: ts.Containers[0].Image, ServiceAccount: ts.ServiceAccountName}},
	})
	if err != nil {
		return nil, err
	}
	decorateJob(j, newRev)
	return j, nil
}

// DeleteJob deletes a job with its policy and its finished executions; a
// job with a running execution is refused until it ends or is cancelled.
func (c *Core) DeleteJob(ctx context.Context, caller *Caller, project, region, name string) (*apis.Job, error) {
	p, region, err := c.jobScope(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	project = p.ProjectID
	if err := c.authorizeJob(ctx, caller, iam.PermJobsDelete, project, region, name); err != nil {
		return nil, err
	}
	j, rev, err := c.readJob(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	recs, revs, err := c.executionsOf(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if !r.Done {
			return nil, FailedPrecondition("Job '%s' has a running execution (%s); cancel it or wait for it to end before deleting the job.", name, r.Execution.Metadata.Name)
		}
	}
	writes := []write{
		{key: state.JobKey(project, region, name), expected: rev, conflict: func() error {
			return Aborted("The job '%s' was modified concurrently. Retry the deletion.", name)
		}},
		{key: state.JobPolicyKey(project, region, name), expected: store.AnyRevision},
	}
	for i, r := range recs {
		writes = append(writes, write{key: state.ExecutionKey(project, region, r.Execution.Metadata.Name), expected: revs[i]})
	}
	_, err = c.commit(ctx, caller, change{
		writes: writes,
		done: func() {
			if c.cfg.Logs != nil {
				c.cfg.Logs.Forget(JobLogKey(project, region, name))
			}
		},
		record: audit.Record{Kind: KindJobDelete, Permission: iam.PermJobsDelete, Resource: apis.JobResource(project, region, name)},
	})
	decorateJob(j, rev)
	return j, err
}

// JobLogKey is where a job's task output is kept in the logs book (apart
// from a service of the same name).
func JobLogKey(project, region, name string) string { return project + "/" + region + "/jobs/" + name }

// executionsOf lists a job's executions ("" job: every execution of the
// project and region), oldest first.
func (c *Core) executionsOf(ctx context.Context, project, region, job string) ([]state.ExecutionRecord, []int64, error) {
	prefix := state.ExecutionsPrefix + project + "/"
	if region != AllRegions {
		prefix += region + "/"
	}
	entries, _, err := c.cfg.Store.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	var (
		out  []state.ExecutionRecord
		revs []int64
	)
	for _, e := range entries {
		var r state.ExecutionRecord
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return nil, nil, err
		}
		if job != "" && r.Execution.Metadata.Labels[apis.LabelJob] != job {
			continue
		}
		out = append(out, r)
		revs = append(revs, e.Revision)
	}
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return out[idx[a]].Execution.Metadata.CreationTimestamp < out[idx[b]].Execution.Metadata.CreationTimestamp
	})
	sorted, sortedRevs := make([]state.ExecutionRecord, len(out)), make([]int64, len(out))
	for i, j := range idx {
		sorted[i], sortedRevs[i] = out[j], revs[j]
	}
	return sorted, sortedRevs, nil
}

// RunJob starts an execution of a job: run.jobs.run, and
// run.jobs.runWithOverrides as well when overrides change anything.
func (c *Core) RunJob(ctx context.Context, caller *Caller, project, region, name string, o *apis.Overrides) (*apis.Execution, error) {
	p, region, err := c.jobScope(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	project = p.ProjectID
	if err := c.authorizeJob(ctx, caller, iam.PermRunJobsRun, project, region, name); err != nil {
		return nil, err
	}
	if !o.Empty() {
		if err := c.authorizeJob(ctx, caller, iam.PermJobsRunWithOverrides, project, region, name); err != nil {
			return nil, err
		}
		if err := apis.ValidateOverrides(o); err != nil {
			return nil, InvalidField(err)
		}
	}
	j, rev, err := c.readJob(ctx, project, region, name)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now().UTC().Format(time.RFC3339Nano)
	exName := name + "-" + randomSuffix()
	spec := j.Spec.Template.Spec
	spec.Template.Spec.Containers = append([]apis.Container(nil), spec.Template.Spec.Containers...)
	applyOverrides(&spec, o)
	if spec.Parallelism == 0 || spec.Parallelism > spec.TaskCount {
		spec.Parallelism = spec.TaskCount
	}
	labels := map[string]string{apis.LabelJob: name, apis.LabelLocation: region}
	for k, v := range j.Spec.Template.Metadata.Labels {
		labels[k] = v
	}
	ex := apis.Execution{
		APIVersion: apis.RunAPIVersion, Kind: apis.KindExecution,
		Metadata: apis.ObjectMeta{
			Name: exName, Namespace: project, UID: newUID(), Generation: 1, CreationTimestamp: now,
			Labels:      labels,
			Annotations: map[string]string{apis.AnnotationRunCreator: caller.Principal.Email},
		},
		Spec: spec,
		Status: apis.ExecutionStatus{ObservedGeneration: 1, Conditions: []apis.Condition{
			{Type: apis.ConditionCompleted, Status: apis.StatusUnknown, LastTransitionTime: now},
			{Type: apis.ConditionResourcesAvailable, Status: apis.StatusUnknown, LastTransitionTime: now},
			{Type: apis.ConditionStarted, Status: apis.StatusUnknown, LastTransitionTime: now},
		}},
	}
	rec := state.ExecutionRecord{Execution: ex}
	for i := int32(0); i < spec.TaskCount; i++ {
		rec.Tasks = append(rec.Tasks, apis.Task{
			APIVersion: apis.RunAPIVersion, Kind: apis.KindTask,
			Metadata: apis.ObjectMeta{
				Name: TaskName(exName, i), Namespace: project, UID: newUID(), Generation: 1, CreationTimestamp: now,
				Labels: map[string]string{apis.LabelJob: name, apis.LabelExecution: exName, apis.LabelTaskIndex: strconv.Itoa(int(i)), apis.LabelLocation: region},
			},
			Spec: spec.Template.Spec,
			Status: apis.TaskStatus{ObservedGeneration: 1, Index: i, Conditions: []apis.Condition{
				{Type: apis.ConditionCompleted, Status: apis.StatusUnknown, Reason: "Pending"},
			}},
		})
	}
	j.Status.ExecutionCount++
	j.Status.LatestCreatedExecution = &apis.ExecutionReference{Name: exName, CreationTimestamp: now, CompletionStatus: "EXECUTION_RUNNING"}
	_, err = c.commit(ctx, caller, change{
		writes: []write{
			{key: state.JobKey(project, region, name), value: j, expected: rev, conflict: func() error {
				return Aborted("The job '%s' was modified concurrently. Retry the execution.", name)
			}},
			{key: state.ExecutionKey(project, region, exName), value: &rec, expected: store.MustNotExist},
		},
		record: audit.Record{Kind: KindJobRun, Permission: iam.PermRunJobsRun, Resource: apis.JobResource(project, region, name),
			Details: &audit.Details{Revision: exName}},
	})
	if err != nil {
		return nil, err
	}
	return &rec.Execution, nil
}

// TaskName is the name of task index of an execution.
func TaskName(execution string, index int32) string {
	return fmt.Sprintf("%s-task%d", execution, index)
}

func applyOverrides(spec *apis.ExecutionSpec, o *apis.Overrides) {
	if o.Empty() {
		return
	}
	if o.TaskCount > 0 {
		spec.TaskCount = o.TaskCount
	}
	if o.TimeoutSeconds > 0 {
		spec.Template.Spec.TimeoutSeconds = apis.Int64String(o.TimeoutSeconds)
	}
	for _, co := range o.ContainerOverrides {
		ct := &spec.Template.Spec.Containers[0]
		if co.ClearArgs {
			ct.Args = nil
		}
		if len(co.Args) > 0 {
			ct.Args = co.Args
		}
		env := append([]apis.EnvVar(nil), ct.Env...)
		for _, e := range co.Env {
			replaced := false
			for i := range env {
				if env[i].Name == e.Name {
					env[i].Value, replaced = e.Value, true
				}
			}
			if !replaced {
				env = append(env, e)
			}
		}
		ct.Env = env
	}
}

func randomSuffix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [5]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// readExecution reads an execution and checks perm on its job; an absent
// execution is NOT_FOUND only to those who hold perm on the project.
func (c *Core) readExecution(ctx context.Context, caller *Caller, perm, project, region, name string) (*state.ExecutionRecord, int64, string, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, 0, "", err
	}
	if region, err = c.Region(region, false); err != nil {
		return nil, 0, "", err
	}
	if err := apis.ValidateExecutionName(name); err != nil {
		return nil, 0, "", InvalidField(err)
	}
	project = p.ProjectID
	var rec state.ExecutionRecord
	rev, err := state.Get(ctx, c.cfg.Store, state.ExecutionKey(project, region, name), &rec)
	if errors.Is(err, store.ErrNotFound) {
		if _, aerr := c.AuthorizeProject(ctx, caller, project, perm); aerr != nil {
			return nil, 0, "", aerr
		}
		return nil, 0, "", NotFound("Resource '%s' of kind 'EXECUTION' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return nil, 0, "", err
	}
	if err := c.authorizeJob(ctx, caller, perm, project, region, rec.Execution.Metadata.Labels[apis.LabelJob]); err != nil {
		return nil, 0, "", err
	}
	return &rec, rev, region, nil
}

// GetExecution reads an execution for holders of run.executions.get.
func (c *Core) GetExecution(ctx context.Context, caller *Caller, project, region, name string) (*apis.Execution, error) {
	rec, _, _, err := c.readExecution(ctx, caller, iam.PermExecutionsGet, project, region, name)
	if err != nil {
		return nil, err
	}
	return &rec.Execution, nil
}

// ListExecutions lists executions, of one job when job is set (checked on
// the job) else of the project (checked on the project).
func (c *Core) ListExecutions(ctx context.Context, caller *Caller, project, region, job string) ([]apis.Execution, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, err
	}
	if region, err = c.Region(region, job == ""); err != nil {
		return nil, err
	}
	project = p.ProjectID
	if job != "" {
		if err := apis.ValidateJobName(job); err != nil {
			return nil, InvalidField(err)
		}
		err = c.authorizeJob(ctx, caller, iam.PermExecutionsList, project, region, job)
	} else {
		_, err = c.AuthorizeProject(ctx, caller, project, iam.PermExecutionsList)
	}
	if err != nil {
		return nil, err
	}
	recs, _, err := c.executionsOf(ctx, project, region, job)
	if err != nil {
		return nil, err
	}
	out := []apis.Execution{}
	for i := len(recs) - 1; i >= 0; i-- { // newest first, as gcloud lists them
		out = append(out, recs[i].Execution)
	}
	return out, nil
}

// CancelExecution asks the node running an execution to stop its tasks;
// an execution that has not started is cancelled at once.
func (c *Core) CancelExecution(ctx context.Context, caller *Caller, project, region, name string) (*apis.Execution, error) {
	for attempt := 0; ; attempt++ {
		rec, rev, region, err := c.readExecution(ctx, caller, iam.PermExecutionsCancel, project, region, name)
		if err != nil {
			return nil, err
		}
		if rec.Done {
			return nil, FailedPrecondition("Execution '%s' has already finished.", name)
		}
		rec.CancelRequested = true
		p := rec.Execution.Metadata.Namespace
		_, err = c.commit(ctx, caller, change{
			writes: []write{{key: state.ExecutionKey(p, region, name), value: rec, expected: rev}},
			record: audit.Record{Kind: KindExecutionCancel, Permission: iam.PermExecutionsCancel,
				Resource: apis.JobResource(p, region, rec.Execution.Metadata.Labels[apis.LabelJob]), Details: &audit.Details{Revision: name}},
		})
		var ae *Error
		if errors.As(err, &ae) && ae.Status == "ABORTED" && attempt < 20 {
			continue // the runner wrote a task's progress in between
		}
		if err != nil {
			return nil, err
		}
		return &rec.Execution, nil
	}
}

// DeleteExecution deletes a finished execution.
func (c *Core) DeleteExecution(ctx context.Context, caller *Caller, project, region, name string) (*apis.Execution, error) {
	rec, rev, region, err := c.readExecution(ctx, caller, iam.PermExecutionsDelete, project, region, name)
	if err != nil {
		return nil, err
	}
	if !rec.Done {
		return nil, FailedPrecondition("Execution '%s' is still running; cancel it first.", name)
	}
	p := rec.Execution.Metadata.Namespace
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.ExecutionKey(p, region, name), expected: rev, conflict: func() error {
			return Aborted("The execution '%s' was modified concurrently. Retry the deletion.", name)
		}}},
		record: audit.Record{Kind: KindExecutionDelete, Permission: iam.PermExecutionsDelete,
			Resource: apis.JobResource(p, region, rec.Execution.Metadata.Labels[apis.LabelJob]), Details: &audit.Details{Revision: name}},
	})
	return &rec.Execution, err
}

// ListTasks lists an execution's tasks for holders of run.tasks.list on its job.
func (c *Core) ListTasks(ctx context.Context, caller *Caller, project, region, execution string) ([]apis.Task, error) {
	rec, _, _, err := c.readExecution(ctx, caller, iam.PermTasksList, project, region, execution)
	if err != nil {
		return nil, err
	}
	if rec.Tasks == nil {
		return []apis.Task{}, nil
	}
	return rec.Tasks, nil
}

// GetTask reads one task (EXECUTION-taskN) for holders of run.tasks.get.
func (c *Core) GetTask(ctx context.Context, caller *Caller, project, region, name string) (*apis.Task, error) {
	exName, idx, ok := splitTaskName(name)
	if !ok {
		return nil, NotFound("Resource '%s' of kind 'TASK' does not exist.", name)
	}
	rec, _, _, err := c.readExecution(ctx, caller, iam.PermTasksGet, project, region, exName)
	if err != nil {
		return nil, err
	}
	if idx < 0 || idx >= len(rec.Tasks) {
		return nil, NotFound("Resource '%s' of kind 'TASK' does not exist.", name)
	}
	return &rec.Tasks[idx], nil
}

func splitTaskName(name string) (string, int, bool) {
	for i := len(name) - 1; i > 0; i-- {
		if name[i] < '0' || name[i] > '9' {
			if i < 5 || name[i-4:i+1] != "-task" || i == len(name)-1 {
				return "", 0, false
			}
			n, err := strconv.Atoi(name[i+1:])
			return name[:i-4], n, err == nil
		}
	}
	return "", 0, false
}

// JobLogs returns up to limit of the newest lines a job's tasks printed (of
// one execution when execution is set), oldest first, for holders of
// run.jobs.get on the job.
func (c *Core) JobLogs(ctx context.Context, caller *Caller, project, region, name, execution string, limit int) ([]logs.Entry, error) {
	j, err := c.GetJob(ctx, caller, project, region, name)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > logs.DefaultLinesPerService {
		return nil, InvalidArgument("limit must be a whole number from 1 to %d", logs.DefaultLinesPerService)
	}
	var keep func(logs.Entry) bool
	if execution != "" {
		keep = func(e logs.Entry) bool { return e.Revision == execution }
	}
	entries := []logs.Entry{}
	if c.cfg.Logs != nil {
		if got := c.cfg.Logs.Read(JobLogKey(j.Metadata.Namespace, j.Metadata.Labels[apis.LabelLocation], name), limit, keep); got != nil {
			entries = got
		}
	}
	return entries, nil
}
