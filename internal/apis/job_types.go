package apis

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strconv"
)

// Cloud Run jobs in the shapes gcloud's `gcloud run jobs` speaks: the
// run.googleapis.com/v1 Job, Execution and Task resources.
const (
	RunAPIVersion = "run.googleapis.com/v1"
	KindJob       = "Job"
	KindExecution = "Execution"
	KindTask      = "Task"

	LabelJob       = "run.googleapis.com/job"
	LabelExecution = "run.googleapis.com/execution"
	LabelTaskIndex = "run.googleapis.com/taskIndex"
	// AnnotationRunCreator names who created a job or ran an execution,
	// AnnotationRunLastModifier who last changed a job (gcloud's names).
	AnnotationRunCreator      = "run.googleapis.com/creator"
	AnnotationRunLastModifier = "run.googleapis.com/lastModifier"
	// LabelRunningState is a task's state as gcloud lists it: Running,
	// Succeeded, Failed, Cancelled.
	LabelRunningState = "run.googleapis.com/runningState"

	ConditionCompleted = "Completed"
	ConditionStarted   = "Started"
)

// Cloud Run's limits and defaults for jobs.
const (
	DefaultTaskCount      = 1
	MaxTaskCount          = 10000
	DefaultMaxRetries     = 3
	MaxMaxRetries         = 10
	DefaultTaskTimeout    = 600 // seconds
	MaxTaskTimeoutSeconds = 7 * 24 * 3600
	MaxJobNameLength      = 63
)

// Job is a Cloud Run v1 Job.
type Job struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       JobSpec    `json:"spec"`
	Status     JobStatus  `json:"status,omitempty"`
}

// JobSpec is what the user asks for.
type JobSpec struct {
	Template ExecutionTemplate `json:"template"`
}

// ExecutionTemplate describes the executions a job creates.
type ExecutionTemplate struct {
	Metadata ObjectMeta    `json:"metadata,omitempty"`
	Spec     ExecutionSpec `json:"spec"`
}

// ExecutionSpec is how many tasks run, how many at once, and each task.
type ExecutionSpec struct {
	Parallelism int32        `json:"parallelism,omitempty"`
	TaskCount   int32        `json:"taskCount,omitempty"`
	Template    TaskTemplate `json:"template"`
}

// TaskTemplate describes one task.
type TaskTemplate struct {
	Spec TaskSpec `json:"spec"`
}

// TaskSpec is one task's runtime configuration.
type TaskSpec struct {
	Containers         []Container `json:"containers"`
	MaxRetries         *int32      `json:"maxRetries,omitempty"`
	TimeoutSeconds     Int64String `json:"timeoutSeconds,omitempty"`
	ServiceAccountName string      `json:"serviceAccountName,omitempty"`
}

// JobStatus is what Usher reports about a job.
type JobStatus struct {
	ObservedGeneration     int64               `json:"observedGeneration,omitempty"`
	Conditions             []Condition         `json:"conditions,omitempty"`
	ExecutionCount         int32               `json:"executionCount,omitempty"`
	LatestCreatedExecution *ExecutionReference `json:"latestCreatedExecution,omitempty"`
}

// ExecutionReference names a job's latest execution.
type ExecutionReference struct {
	Name                string `json:"name,omitempty"`
	CreationTimestamp   string `json:"creationTimestamp,omitempty"`
	CompletionTimestamp string `json:"completionTimestamp,omitempty"`
	// CompletionStatus is EXECUTION_SUCCEEDED, EXECUTION_FAILED, EXECUTION_RUNNING, ...
	CompletionStatus string `json:"completionStatus,omitempty"`
}

// Execution is one run of a job.
type Execution struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   ObjectMeta      `json:"metadata"`
	Spec       ExecutionSpec   `json:"spec"`
	Status     ExecutionStatus `json:"status,omitempty"`
}

// ExecutionStatus is an execution's progress: the Completed condition
// gcloud's --wait polls and the task counts it prints.
type ExecutionStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty"`
	StartTime          string      `json:"startTime,omitempty"`
	CompletionTime     string      `json:"completionTime,omitempty"`
	RunningCount       int32       `json:"runningCount,omitempty"`
	SucceededCount     int32       `json:"succeededCount,omitempty"`
	FailedCount        int32       `json:"failedCount,omitempty"`
	CancelledCount     int32       `json:"cancelledCount,omitempty"`
	RetriedCount       int32       `json:"retriedCount,omitempty"`
	LogURI             string      `json:"logUri,omitempty"`
}

// Task is one task of an execution.
type Task struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       TaskSpec   `json:"spec"`
	Status     TaskStatus `json:"status,omitempty"`
}

// TaskStatus is one task's progress.
type TaskStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []Condition        `json:"conditions,omitempty"`
	Index              int32              `json:"index"`
	Retried            int32              `json:"retried,omitempty"`
	StartTime          string             `json:"startTime,omitempty"`
	CompletionTime     string             `json:"completionTime,omitempty"`
	LastAttemptResult  *TaskAttemptResult `json:"lastAttemptResult,omitempty"`
}

// TaskAttemptResult is how a task's last attempt ended.
type TaskAttemptResult struct {
	ExitCode int32      `json:"exitCode"`
	Status   *RPCStatus `json:"status,omitempty"`
}

// RPCStatus is google.rpc.Status.
type RPCStatus struct {
	Code    int32  `json:"code"`
	Message string `json:"message,omitempty"`
}

// RunJobRequest is the body of jobs/NAME:run.
type RunJobRequest struct {
	Overrides *Overrides `json:"overrides,omitempty"`
}

// Overrides change one execution of a job (run.jobs.runWithOverrides).
type Overrides struct {
	ContainerOverrides []ContainerOverride `json:"containerOverrides,omitempty"`
	TaskCount          int32               `json:"taskCount,omitempty"`
	TimeoutSeconds     int32               `json:"timeoutSeconds,omitempty"`
}

// ContainerOverride changes one container's args and env for one execution.
type ContainerOverride struct {
	Name      string   `json:"name,omitempty"`
	Args      []string `json:"args,omitempty"`
	ClearArgs bool     `json:"clearArgs,omitempty"`
	Env       []EnvVar `json:"env,omitempty"`
}

// Empty reports whether o changes nothing.
func (o *Overrides) Empty() bool {
	return o == nil || (len(o.ContainerOverrides) == 0 && o.TaskCount == 0 && o.TimeoutSeconds == 0)
}

// JobResource is the IAM resource name of a job.
func JobResource(project, region, name string) string {
	return "projects/" + project + "/locations/" + region + "/jobs/" + name
}

var jobNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// ValidateJobName checks a job name as Cloud Run does.
func ValidateJobName(name string) error {
	if name == "" {
		return fieldErr("metadata.name", "is required")
	}
	if len(name) > MaxJobNameLength || !jobNameRE.MatchString(name) {
		return fieldErr("metadata.name", "%q must use only lowercase alphanumeric characters and dashes, start with a letter, not end with a dash, and be at most %d characters", name, MaxJobNameLength)
	}
	return nil
}

// ValidateExecutionName checks an execution or task name (a DNS label).
func ValidateExecutionName(name string) error {
	if name == "" || len(name) > 63 || !jobNameRE.MatchString(name) {
		return fieldErr("metadata.name", "%q is not a valid execution or task name", name)
	}
	return nil
}

// SetDefaults fills what Cloud Run fills on create: one task, three
// retries, ten minutes, the project's default service account.
func (j *Job) SetDefaults(project, defaultAccount string) {
	j.APIVersion, j.Kind = RunAPIVersion, KindJob
	j.Metadata.Namespace = project
	es := &j.Spec.Template.Spec
	if es.TaskCount == 0 {
		es.TaskCount = DefaultTaskCount
	}
	ts := &es.Template.Spec
	if ts.MaxRetries == nil {
		r := int32(DefaultMaxRetries)
		ts.MaxRetries = &r
	}
	if ts.TimeoutSeconds == 0 {
		ts.TimeoutSeconds = DefaultTaskTimeout
	}
	if ts.ServiceAccountName == "" {
		ts.ServiceAccountName = defaultAccount
	}
}

// Validate checks a job as create or replace receives it (after defaults).
func (j *Job) Validate() error {
	if err := ValidateJobName(j.Metadata.Name); err != nil {
		return err
	}
	es := j.Spec.Template.Spec
	if es.TaskCount < 1 || es.TaskCount > MaxTaskCount {
		return fieldErr("spec.template.spec.taskCount", "must be from 1 to %d", MaxTaskCount)
	}
	if es.Parallelism < 0 {
		return fieldErr("spec.template.spec.parallelism", "must not be negative")
	}
	ts := es.Template.Spec
	if r := *ts.MaxRetries; r < 0 || r > MaxMaxRetries {
		return fieldErr("spec.template.spec.template.spec.maxRetries", "must be from 0 to %d", MaxMaxRetries)
	}
	if ts.TimeoutSeconds < 1 || ts.TimeoutSeconds > MaxTaskTimeoutSeconds {
		return fieldErr("spec.template.spec.template.spec.timeoutSeconds", "must be from 1 to %d", MaxTaskTimeoutSeconds)
	}
	if len(ts.Containers) != 1 {
		return fieldErr("spec.template.spec.template.spec.containers", "exactly one container is supported")
	}
	c := ts.Containers[0]
	if c.Image == "" {
		return fieldErr("spec.template.spec.template.spec.containers[0].image", "is required")
	}
	return validateJobEnv("spec.template.spec.template.spec.containers[0].env", c.Env, true)
}

// reservedJobEnv are set by the platform for tasks.
var reservedJobEnv = map[string]bool{
	"CLOUD_RUN_JOB": true, "CLOUD_RUN_EXECUTION": true, "CLOUD_RUN_TASK_INDEX": true,
	"CLOUD_RUN_TASK_ATTEMPT": true, "CLOUD_RUN_TASK_COUNT": true,
}

// validateJobEnv checks a job's env (secrets allowed: from secrets of the
// job's project) or an execution's overrides (literal values only).
func validateJobEnv(path string, env []EnvVar, secrets bool) error {
	seen := map[string]bool{}
	for i, e := range env {
		p := fmt.Sprintf("%s[%d].name", path, i)
		switch {
		case !envNameRE.MatchString(e.Name):
			return fieldErr(p, "%q is not a valid environment variable name", e.Name)
		case reservedEnv[e.Name] || reservedJobEnv[e.Name]:
			return fieldErr(p, "%s is reserved: Cloud Run sets it", e.Name)
		case seen[e.Name]:
			return fieldErr(p, "%s is set more than once", e.Name)
		case e.ValueFrom != nil && !secrets:
			return fieldErr(fmt.Sprintf("%s[%d].valueFrom", path, i), "overrides set literal values")
		case e.ValueFrom != nil:
			if err := validateSecretRef(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
				return err
			}
		}
		seen[e.Name] = true
	}
	return nil
}

// ValidateOverrides checks the overrides of one run.
func ValidateOverrides(o *Overrides) error {
	if o == nil {
		return nil
	}
	if o.TaskCount < 0 || o.TaskCount > MaxTaskCount {
		return fieldErr("overrides.taskCount", "must be from 1 to %d", MaxTaskCount)
	}
	if o.TimeoutSeconds < 0 || o.TimeoutSeconds > MaxTaskTimeoutSeconds {
		return fieldErr("overrides.timeoutSeconds", "must be from 1 to %d", MaxTaskTimeoutSeconds)
	}
	if len(o.ContainerOverrides) > 1 {
		return fieldErr("overrides.containerOverrides", "at most one container override is supported")
	}
	for _, c := range o.ContainerOverrides {
		if err := validateJobEnv("overrides.containerOverrides[0].env", c.Env, false); err != nil {
			return err
		}
	}
	return nil
}

// Int64String is an int64 that Google's JSON writes as a string; it reads
// either form.
type Int64String int64

// MarshalJSON writes the number as a string, as Google's APIs do.
func (n Int64String) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatInt(int64(n), 10))
}

// UnmarshalJSON reads a number or a string holding one.
func (n *Int64String) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*n = Int64String(v)
	return nil
}

// What a v1 Job may carry, field by field, as v1Fields says for a Service:
// a field Usher does not implement for jobs is refused naming it, never
// decoded away.
var v1JobContainer = func() map[string]v1Field {
	m := maps.Clone(v1Container)
	for _, k := range []string{"ports", "startupProbe", "livenessProbe", "workingDir", "volumeMounts"} {
		m[k] = v1Refused(notByUsher + " for jobs")
	}
	return m
}()

var v1JobFields = map[string]v1Field{
	"apiVersion": v1In,
	"kind":       v1In,
	"metadata":   v1Message(v1ObjectMeta),
	"spec": v1Message(map[string]v1Field{
		"template": v1Message(map[string]v1Field{
			"metadata": v1Message(v1ObjectMeta),
			"spec": v1Message(map[string]v1Field{
				"parallelism": v1In,
				"taskCount":   v1In,
				"template": v1Message(map[string]v1Field{
					"spec": v1Message(map[string]v1Field{
						"containers":         v1Message(v1JobContainer),
						"maxRetries":         v1In,
						"timeoutSeconds":     v1In,
						"serviceAccountName": v1In,
						"volumes":            v1Refused(notByUsher + " for jobs"),
						"nodeSelector":       v1Refused(notByUsher + " (no GPUs)"),
					}),
				}),
			}),
		}),
	}),
	"status": v1Output,
}

// jobAnnotations and jobTemplateAnnotations are the system annotations
// accepted on a job and on its execution template.
var (
	jobAnnotations = map[string]annotationRule{
		AnnotationRunCreator:      annServerOwn,
		AnnotationRunLastModifier: annServerOwn,
		AnnotationClientName:      annAny,
		AnnotationClientVersion:   annAny,
		AnnotationLaunchStage:     annAny,
		AnnotationDescription:     annAny,
		AnnotationOperationID:     annAny,
	}
	jobTemplateAnnotations = map[string]annotationRule{
		AnnotationClientName:    annAny,
		AnnotationClientVersion: annAny,
	}
)

// ParseJob decodes a v1 Job from a request body, refusing any field or
// system annotation Usher would otherwise drop. Errors are *FieldError.
func ParseJob(b []byte) (*Job, error) {
	j, err := parseV1[Job](b, "job", v1JobFields)
	if err != nil {
		return nil, err
	}
	if err := checkSystemAnnotations("metadata.annotations", j.Metadata.Annotations, jobAnnotations); err != nil {
		return nil, err
	}
	if err := checkSystemAnnotations("spec.template.metadata.annotations", j.Spec.Template.Metadata.Annotations, jobTemplateAnnotations); err != nil {
		return nil, err
	}
	return j, nil
}
