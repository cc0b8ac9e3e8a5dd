package apis

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
)

// Cloud Run Admin API v2 jobs, executions and tasks: like v2 services, a
// view of the stored v1 objects (job_types.go). JobToV2, ExecutionToV2 and
// TaskToV2 render them; ParseV2Job and JobFromV2 turn a v2 request into the
// v1 Job to store; ParseV2RunJob reads a :run request's overrides.
//
// What a v2 Job request may carry: name, labels, annotations, client,
// clientVersion, launchStage, etag; template.{labels, annotations,
// parallelism, taskCount}; template.template.{containers (exactly one, as
// for services), maxRetries, timeout ("600s"), serviceAccount}. Refused
// when set: binaryAuthorization, startExecutionToken, runExecutionToken,
// template.template.{volumes, encryptionKey, vpcAccess, nodeSelector,
// executionEnvironment, gpuZonalRedundancyDisabled}. Output-only fields are
// ignored.

// Type URLs of v2 job payloads in operations.
const (
	V2JobTypeURL       = "type.googleapis.com/google.cloud.run.v2.Job"
	V2ExecutionTypeURL = "type.googleapis.com/google.cloud.run.v2.Execution"
)

// V2Job is google.cloud.run.v2.Job.
type V2Job struct {
	Name                   string                `json:"name,omitempty"`
	UID                    string                `json:"uid,omitempty"`
	Generation             Int64String           `json:"generation,omitempty"`
	Labels                 map[string]string     `json:"labels,omitempty"`
	Annotations            map[string]string     `json:"annotations,omitempty"`
	CreateTime             string                `json:"createTime,omitempty"`
	UpdateTime             string                `json:"updateTime,omitempty"`
	DeleteTime             string                `json:"deleteTime,omitempty"`
	Creator                string                `json:"creator,omitempty"`
	LastModifier           string                `json:"lastModifier,omitempty"`
	Client                 string                `json:"client,omitempty"`
	ClientVersion          string                `json:"clientVersion,omitempty"`
	LaunchStage            string                `json:"launchStage,omitempty"`
	Template               *V2ExecutionTemplate  `json:"template,omitempty"`
	ObservedGeneration     Int64String           `json:"observedGeneration,omitempty"`
	TerminalCondition      *V2Condition          `json:"terminalCondition,omitempty"`
	Conditions             []V2Condition         `json:"conditions,omitempty"`
	ExecutionCount         int32                 `json:"executionCount,omitempty"`
	LatestCreatedExecution *V2ExecutionReference `json:"latestCreatedExecution,omitempty"`
	Reconciling            bool                  `json:"reconciling,omitempty"`
	Etag                   string                `json:"etag,omitempty"`
}

// V2ExecutionTemplate is google.cloud.run.v2.ExecutionTemplate.
type V2ExecutionTemplate struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Parallelism int32             `json:"parallelism,omitempty"`
	TaskCount   int32             `json:"taskCount,omitempty"`
	Template    *V2TaskTemplate   `json:"template,omitempty"`
}

// V2TaskTemplate is google.cloud.run.v2.TaskTemplate.
type V2TaskTemplate struct {
	Containers     []V2Container `json:"containers,omitempty"`
	MaxRetries     *int32        `json:"maxRetries,omitempty"`
	Timeout        string        `json:"timeout,omitempty"`
	ServiceAccount string        `json:"serviceAccount,omitempty"`
}

// V2ExecutionReference is google.cloud.run.v2.ExecutionReference.
type V2ExecutionReference struct {
	Name             string `json:"name,omitempty"`
	CreateTime       string `json:"createTime,omitempty"`
	CompletionTime   string `json:"completionTime,omitempty"`
	CompletionStatus string `json:"completionStatus,omitempty"`
}

// V2ExecutionCondition is a google.cloud.run.v2.Condition of an execution
// or task, whose reason is an ExecutionReason.
type V2ExecutionCondition struct {
	V2Condition
	ExecutionReason string `json:"executionReason,omitempty"`
}

// V2Execution is google.cloud.run.v2.Execution.
type V2Execution struct {
	Name               string                 `json:"name"`
	UID                string                 `json:"uid,omitempty"`
	Creator            string                 `json:"creator,omitempty"`
	Generation         Int64String            `json:"generation,omitempty"`
	Labels             map[string]string      `json:"labels,omitempty"`
	CreateTime         string                 `json:"createTime,omitempty"`
	StartTime          string                 `json:"startTime,omitempty"`
	CompletionTime     string                 `json:"completionTime,omitempty"`
	UpdateTime         string                 `json:"updateTime,omitempty"`
	LaunchStage        string                 `json:"launchStage,omitempty"`
	Job                string                 `json:"job,omitempty"`
	Parallelism        int32                  `json:"parallelism,omitempty"`
	TaskCount          int32                  `json:"taskCount,omitempty"`
	Template           *V2TaskTemplate        `json:"template,omitempty"`
	Reconciling        bool                   `json:"reconciling,omitempty"`
	Conditions         []V2ExecutionCondition `json:"conditions,omitempty"`
	ObservedGeneration Int64String            `json:"observedGeneration,omitempty"`
	RunningCount       int32                  `json:"runningCount,omitempty"`
	SucceededCount     int32                  `json:"succeededCount,omitempty"`
	FailedCount        int32                  `json:"failedCount,omitempty"`
	CancelledCount     int32                  `json:"cancelledCount,omitempty"`
	RetriedCount       int32                  `json:"retriedCount,omitempty"`
	LogURI             string                 `json:"logUri,omitempty"`
	Etag               string                 `json:"etag,omitempty"`
}

// V2Task is google.cloud.run.v2.Task.
type V2Task struct {
	Name               string                 `json:"name"`
	UID                string                 `json:"uid,omitempty"`
	Generation         Int64String            `json:"generation,omitempty"`
	Labels             map[string]string      `json:"labels,omitempty"`
	CreateTime         string                 `json:"createTime,omitempty"`
	StartTime          string                 `json:"startTime,omitempty"`
	CompletionTime     string                 `json:"completionTime,omitempty"`
	Job                string                 `json:"job,omitempty"`
	Execution          string                 `json:"execution,omitempty"`
	Containers         []V2Container          `json:"containers,omitempty"`
	MaxRetries         int32                  `json:"maxRetries,omitempty"`
	Timeout            string                 `json:"timeout,omitempty"`
	ServiceAccount     string                 `json:"serviceAccount,omitempty"`
	Reconciling        bool                   `json:"reconciling,omitempty"`
	Conditions         []V2ExecutionCondition `json:"conditions,omitempty"`
	ObservedGeneration Int64String            `json:"observedGeneration,omitempty"`
	Index              int32                  `json:"index,omitempty"`
	Retried            int32                  `json:"retried,omitempty"`
	LastAttemptResult  *V2TaskAttemptResult   `json:"lastAttemptResult,omitempty"`
	Etag               string                 `json:"etag,omitempty"`
}

// V2TaskAttemptResult is google.cloud.run.v2.TaskAttemptResult.
type V2TaskAttemptResult struct {
	Status   *V2Status `json:"status,omitempty"`
	ExitCode int32     `json:"exitCode,omitempty"`
}

// V2JobName is projects/P/locations/L/jobs/J.
func V2JobName(project, region, name string) string { return JobResource(project, region, name) }

// V2ExecutionName is projects/P/locations/L/jobs/J/executions/E.
func V2ExecutionName(project, region, job, execution string) string {
	return JobResource(project, region, job) + "/executions/" + execution
}

// v2JobContainerSchema is a service's container schema less what jobs do
// not implement yet (their tasks run without these).
var v2JobContainerSchema = func() v2Schema {
	s := maps.Clone(v2ContainerSchema)
	s["workingDir"] = notImplemented("is not supported by Usher for jobs")
	s["volumeMounts"] = notImplemented("is not supported by Usher for jobs")
	s["livenessProbe"] = notImplemented("is not supported by Usher for jobs")
	s["startupProbe"] = notImplemented("is not supported by Usher for jobs")
	return s
}()

var v2TaskTemplateSchema = v2Schema{
	"containers":                 v2Message(v2JobContainerSchema),
	"maxRetries":                 v2Num,
	"timeout":                    v2In,
	"serviceAccount":             v2In,
	"volumes":                    notImplemented(""),
	"executionEnvironment":       onlyEnum(enumExecutionEnvironment),
	"encryptionKey":              notImplemented(""),
	"vpcAccess":                  notImplemented("is not supported by Usher (no private networks)"),
	"nodeSelector":               notImplemented(""),
	"gpuZonalRedundancyDisabled": notImplemented(""),
}

var v2JobSchema = v2Schema{
	"name":          v2In,
	"labels":        v2In,
	"annotations":   v2In,
	"client":        v2In,
	"clientVersion": v2In,
	"launchStage":   {enum: enumLaunchStage},
	"etag":          v2In,
	"template": v2Message(v2Schema{
		"labels":      v2In,
		"annotations": v2In,
		"parallelism": v2Num,
		"taskCount":   v2Num,
		"template":    v2Message(v2TaskTemplateSchema),
	}),
	"binaryAuthorization":    notImplemented(""),
	"startExecutionToken":    notImplemented(""),
	"runExecutionToken":      notImplemented(""),
	"uid":                    v2Output,
	"generation":             v2Output,
	"createTime":             v2Output,
	"updateTime":             v2Output,
	"deleteTime":             v2Output,
	"expireTime":             v2Output,
	"creator":                v2Output,
	"lastModifier":           v2Output,
	"observedGeneration":     v2Output,
	"terminalCondition":      v2Output,
	"conditions":             v2Output,
	"executionCount":         v2Output,
	"latestCreatedExecution": v2Output,
	"reconciling":            v2Output,
	"satisfiesPzs":           v2Output,
}

// ParseV2Job decodes a v2 Job request body. Clients send back what they
// read, so output-only fields are dropped; a field Usher cannot honour is
// refused by path.
func ParseV2Job(body []byte) (*V2Job, error) {
	req, err := decodeJSONObject(body)
	if err != nil {
		return nil, err
	}
	if err := cleanV2("job", req, v2JobSchema); err != nil {
		return nil, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var v V2Job
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	return &v, nil
}

// JobFromV2 maps a parsed v2 Job onto the v1 Job Usher stores (before
// defaults and validation, WriteJob's job).
func JobFromV2(v *V2Job, project, name string) (*Job, error) {
	j := &Job{APIVersion: RunAPIVersion, Kind: KindJob}
	j.Metadata.Name, j.Metadata.Namespace = name, project
	var err error
	if j.Metadata.Labels, err = userMap("job.labels", v.Labels); err != nil {
		return nil, err
	}
	if j.Metadata.Annotations, err = userMap("job.annotations", v.Annotations); err != nil {
		return nil, err
	}
	setAnn := func(m *map[string]string, k, val string) {
		if val == "" {
			return
		}
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = val
	}
	setAnn(&j.Metadata.Annotations, AnnotationClientName, v.Client)
	setAnn(&j.Metadata.Annotations, AnnotationClientVersion, v.ClientVersion)
	if ls := v.LaunchStage; ls != "" && ls != V2LaunchStageGA && ls != v2LaunchStageUnspecified {
		setAnn(&j.Metadata.Annotations, AnnotationLaunchStage, ls)
	}
	et := v.Template
	if et == nil || et.Template == nil {
		return nil, fieldErr("job.template.template", "is required")
	}
	if j.Spec.Template.Metadata.Labels, err = userMap("job.template.labels", et.Labels); err != nil {
		return nil, err
	}
	if j.Spec.Template.Metadata.Annotations, err = userMap("job.template.annotations", et.Annotations); err != nil {
		return nil, err
	}
	es := &j.Spec.Template.Spec
	es.Parallelism, es.TaskCount = et.Parallelism, et.TaskCount
	tt := et.Template
	ts := &es.Template.Spec
	timeout, err := durationFromV2("job.template.template.timeout", tt.Timeout)
	if err != nil {
		return nil, err
	}
	ts.TimeoutSeconds = Int64String(timeout)
	ts.MaxRetries = tt.MaxRetries
	ts.ServiceAccountName = tt.ServiceAccount
	if n := len(tt.Containers); n != 1 {
		return nil, fieldErr("job.template.template.containers", "exactly one container is required, got %d (Usher does not run sidecars)", n)
	}
	vc := tt.Containers[0]
	if strings.TrimSpace(vc.Image) == "" {
		return nil, fieldErr("job.template.template.containers[0].image", "is required")
	}
	c := Container{Name: vc.Name, Image: vc.Image, Command: vc.Command, Args: vc.Args}
	for _, e := range vc.Env {
		c.Env = append(c.Env, e.v1())
	}
	if vc.Resources != nil && len(vc.Resources.Limits) > 0 {
		c.Resources = &Resources{Limits: maps.Clone(vc.Resources.Limits)}
	}
	ts.Containers = []Container{c}
	return j, nil
}

func taskTemplateToV2(ts TaskSpec) *V2TaskTemplate {
	t := &V2TaskTemplate{Containers: containersToV2(ts.Containers), MaxRetries: ts.MaxRetries,
		Timeout: durationToV2(int64(ts.TimeoutSeconds)), ServiceAccount: ts.ServiceAccountName}
	return t
}

// JobToV2 renders a stored job.
func JobToV2(j *Job) *V2Job {
	m := j.Metadata
	project, region := m.Namespace, m.Labels[LabelLocation]
	v := &V2Job{
		Name: V2JobName(project, region, m.Name), UID: m.UID, Generation: Int64String(m.Generation),
		Labels: userKeys(m.Labels), Annotations: userKeys(m.Annotations),
		CreateTime: m.CreationTimestamp, UpdateTime: m.CreationTimestamp,
		Creator: m.Annotations[AnnotationRunCreator], LastModifier: m.Annotations[AnnotationRunLastModifier],
		Client: m.Annotations[AnnotationClientName], ClientVersion: m.Annotations[AnnotationClientVersion],
		LaunchStage: V2LaunchStageGA, ObservedGeneration: Int64String(j.Status.ObservedGeneration),
		ExecutionCount: j.Status.ExecutionCount,
	}
	if ls := m.Annotations[AnnotationLaunchStage]; ls != "" {
		v.LaunchStage = ls
	}
	es := j.Spec.Template
	v.Template = &V2ExecutionTemplate{Labels: userKeys(es.Metadata.Labels), Annotations: userKeys(es.Metadata.Annotations),
		Parallelism: es.Spec.Parallelism, TaskCount: es.Spec.TaskCount, Template: taskTemplateToV2(es.Spec.Template.Spec)}
	for _, c := range j.Status.Conditions {
		vc := conditionToV2(c)
		if c.Type == ConditionReady {
			v.TerminalCondition = &vc
			continue
		}
		v.Conditions = append(v.Conditions, vc)
	}
	if lc := j.Status.LatestCreatedExecution; lc != nil {
		v.LatestCreatedExecution = &V2ExecutionReference{Name: V2ExecutionName(project, region, m.Name, lc.Name),
			CreateTime: lc.CreationTimestamp, CompletionTime: lc.CompletionTimestamp, CompletionStatus: v2CompletionStatus(lc.CompletionStatus)}
	}
	return v
}

// v2CompletionStatus keeps the ExecutionReference.CompletionStatus names
// the v2 enum defines (clients reject others).
func v2CompletionStatus(s string) string {
	switch s {
	case "EXECUTION_SUCCEEDED", "EXECUTION_FAILED", "EXECUTION_RUNNING", "EXECUTION_PENDING", "EXECUTION_CANCELLED":
		return s
	}
	return ""
}

// v2ExecutionReasons maps the runner's reasons to v2 ExecutionReason names.
var v2ExecutionReasons = map[string]string{
	"NonZeroExitCode": "NON_ZERO_EXIT_CODE",
	"Cancelled":       "CANCELLED",
}

func executionConditionsToV2(cs []Condition) []V2ExecutionCondition {
	var out []V2ExecutionCondition
	for _, c := range cs {
		vc := V2ExecutionCondition{V2Condition: conditionToV2(c), ExecutionReason: v2ExecutionReasons[c.Reason]}
		vc.Reason = ""
		if c.Status == StatusUnknown || c.Status == "" {
			vc.State = V2ConditionPending
		}
		out = append(out, vc)
	}
	return out
}

// ExecutionToV2 renders a stored execution.
func ExecutionToV2(e *Execution) *V2Execution {
	m := e.Metadata
	project, region, job := m.Namespace, m.Labels[LabelLocation], m.Labels[LabelJob]
	st := e.Status
	v := &V2Execution{
		Name: V2ExecutionName(project, region, job, m.Name), UID: m.UID, Creator: m.Annotations[AnnotationRunCreator],
		Generation: Int64String(m.Generation), Labels: userKeys(m.Labels), CreateTime: m.CreationTimestamp,
		StartTime: st.StartTime, CompletionTime: st.CompletionTime, UpdateTime: m.CreationTimestamp, LaunchStage: V2LaunchStageGA,
		Job: job, Parallelism: e.Spec.Parallelism, TaskCount: e.Spec.TaskCount, Template: taskTemplateToV2(e.Spec.Template.Spec),
		Conditions: executionConditionsToV2(st.Conditions), ObservedGeneration: Int64String(st.ObservedGeneration),
		RunningCount: st.RunningCount, SucceededCount: st.SucceededCount, FailedCount: st.FailedCount,
		CancelledCount: st.CancelledCount, RetriedCount: st.RetriedCount, LogURI: st.LogURI,
	}
	v.Reconciling = st.CompletionTime == ""
	return v
}

// TaskToV2 renders a stored task.
func TaskToV2(t *Task) *V2Task {
	m := t.Metadata
	project, region, job, ex := m.Namespace, m.Labels[LabelLocation], m.Labels[LabelJob], m.Labels[LabelExecution]
	v := &V2Task{
		Name: V2ExecutionName(project, region, job, ex) + "/tasks/" + m.Name, UID: m.UID, Generation: Int64String(m.Generation),
		Labels: userKeys(m.Labels), CreateTime: m.CreationTimestamp, StartTime: t.Status.StartTime, CompletionTime: t.Status.CompletionTime,
		Job: job, Execution: ex, Containers: containersToV2(t.Spec.Containers),
		Timeout: durationToV2(int64(t.Spec.TimeoutSeconds)), ServiceAccount: t.Spec.ServiceAccountName,
		Conditions: executionConditionsToV2(t.Status.Conditions), ObservedGeneration: Int64String(t.Status.ObservedGeneration),
		Index: t.Status.Index, Retried: t.Status.Retried,
	}
	if t.Spec.MaxRetries != nil {
		v.MaxRetries = *t.Spec.MaxRetries
	}
	if r := t.Status.LastAttemptResult; r != nil {
		v.LastAttemptResult = &V2TaskAttemptResult{ExitCode: r.ExitCode}
		if r.Status != nil {
			v.LastAttemptResult.Status = &V2Status{Code: r.Status.Code, Message: r.Status.Message}
		}
	}
	v.Reconciling = t.Status.CompletionTime == ""
	return v
}

// V2RunJobRequest is google.cloud.run.v2.RunJobRequest's body.
type V2RunJobRequest struct {
	ValidateOnly bool         `json:"validateOnly,omitempty"`
	Etag         string       `json:"etag,omitempty"`
	Overrides    *V2Overrides `json:"overrides,omitempty"`
}

// V2Overrides is RunJobRequest.Overrides.
type V2Overrides struct {
	ContainerOverrides []V2ContainerOverride `json:"containerOverrides,omitempty"`
	TaskCount          int32                 `json:"taskCount,omitempty"`
	Timeout            string                `json:"timeout,omitempty"`
}

// V2ContainerOverride is RunJobRequest.Overrides.ContainerOverride.
type V2ContainerOverride struct {
	Name      string     `json:"name,omitempty"`
	Args      []string   `json:"args,omitempty"`
	Env       []V2EnvVar `json:"env,omitempty"`
	ClearArgs bool       `json:"clearArgs,omitempty"`
}

var v2RunJobSchema = v2Schema{
	"name":         v2In,
	"validateOnly": v2In,
	"etag":         v2In,
	"overrides": v2Message(v2Schema{
		"containerOverrides": v2Message(v2Schema{
			"name":      v2In,
			"args":      v2In,
			"clearArgs": v2In,
			"env": v2Message(v2Schema{
				"name":        v2In,
				"value":       v2In,
				"valueSource": notImplemented("is not supported in overrides: use value"),
			}),
		}),
		"taskCount": v2Num,
		"timeout":   v2In,
	}),
}

// ParseV2RunJob decodes a v2 :run body into the v1 overrides it asks for.
func ParseV2RunJob(body []byte) (*V2RunJobRequest, *Overrides, error) {
	req, err := decodeJSONObject(body)
	if err != nil {
		return nil, nil, err
	}
	if err := cleanV2("request", req, v2RunJobSchema); err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	var v V2RunJobRequest
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, nil, fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	if v.Overrides == nil {
		return &v, nil, nil
	}
	o := &Overrides{TaskCount: v.Overrides.TaskCount}
	t, err := durationFromV2("overrides.timeout", v.Overrides.Timeout)
	if err != nil {
		return nil, nil, err
	}
	if t > MaxTaskTimeoutSeconds {
		return nil, nil, fieldErr("overrides.timeout", "must be at most %ds", MaxTaskTimeoutSeconds)
	}
	o.TimeoutSeconds = int32(t)
	for _, co := range v.Overrides.ContainerOverrides {
		c := ContainerOverride{Name: co.Name, Args: co.Args, ClearArgs: co.ClearArgs}
		for _, e := range co.Env {
			c.Env = append(c.Env, e.v1())
		}
		o.ContainerOverrides = append(o.ContainerOverrides, c)
	}
	return &v, o, nil
}
