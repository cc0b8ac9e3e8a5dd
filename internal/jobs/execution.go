package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/state"
)

var jsonUnmarshal = json.Unmarshal

// execution is one execution this node runs.
type execution struct {
	r                          *Runner
	key                        string
	name, project, region, job string
	spec                       apis.ExecutionSpec

	stopOnce sync.Once
	stop     chan struct{} // closed on cancel
	mu       sync.Mutex    // serializes this execution's store writes
}

func (ex *execution) cancel() { ex.stopOnce.Do(func() { close(ex.stop) }) }

func (ex *execution) cancelled() bool {
	select {
	case <-ex.stop:
		return true
	default:
		return false
	}
}

// runtimeKey names the execution's tasks to the runtime and its identity to the
// metadata server; never a revision's key (runtime.ExecutionKey).
func (ex *execution) runtimeKey() string { return runtime.ExecutionKey(ex.project, ex.region, ex.name) }

// run runs the tasks, parallelism at a time, then finishes the execution.
func (ex *execution) run(ctx context.Context) {
	r := ex.r
	log := r.cfg.Log.With("execution", ex.name, "job", ex.job)
	var extra []runtime.EnvVar
	if r.cfg.Identity != nil {
		ts := ex.spec.Template.Spec
		env, release, err := r.cfg.Identity(ex.runtimeKey(), &apis.Revision{
			Metadata: apis.ObjectMeta{Name: ex.name, Namespace: ex.project, Labels: map[string]string{apis.LabelLocation: ex.region, apis.LabelService: ex.job}},
			Spec:     apis.RevisionSpec{ServiceAccountName: ts.ServiceAccountName, Containers: ts.Containers},
		})
		if err != nil {
			log.Warn("metadata server for the execution failed; tasks run without one", "err", err)
		} else {
			extra = env
			defer release()
		}
	}
	parallelism := int(ex.spec.Parallelism)
	if parallelism <= 0 || parallelism > int(ex.spec.TaskCount) {
		parallelism = int(ex.spec.TaskCount)
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for i := int32(0); i < ex.spec.TaskCount; i++ {
		select {
		case sem <- struct{}{}:
		case <-ex.stop:
		case <-ctx.Done():
		}
		if ex.cancelled() || ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int32) {
			defer wg.Done()
			defer func() { <-sem }()
			ex.runTask(ctx, i, extra)
		}(i)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // Usher is stopping: the next start marks it interrupted
	}
	err := ex.update(ctx, func(rec *state.ExecutionRecord) bool {
		now := r.now()
		for i := range rec.Tasks {
			if completed(&rec.Tasks[i]) == "" {
				setCond(&rec.Tasks[i].Status.Conditions, apis.ConditionCompleted, apis.StatusFalse, ReasonCancelled, "The execution was cancelled before this task started.", now)
			}
		}
		r.finish(rec, "", "")
		return true
	})
	if err != nil {
		log.Warn("recording the end of the execution failed", "err", err)
	}
	log.Info("execution finished")
}

func (ex *execution) update(ctx context.Context, f func(*state.ExecutionRecord) bool) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.r.update(ctx, ex.key, f)
}

// runTask runs task i until an attempt succeeds, the retries run out, or
// the execution is cancelled.
func (ex *execution) runTask(ctx context.Context, i int32, extra []runtime.EnvVar) {
	r := ex.r
	ts := ex.spec.Template.Spec
	retries := int32(apis.DefaultMaxRetries)
	if ts.MaxRetries != nil {
		retries = *ts.MaxRetries
	}
	timeout := time.Duration(ts.TimeoutSeconds) * time.Second
	c := ts.Containers[0]
	taskName := fmt.Sprintf("%s-task%d", ex.name, i)
	for attempt := int32(0); ; attempt++ {
		if ex.cancelled() {
			ex.taskEnded(ctx, i, apis.StatusFalse, ReasonCancelled, "The execution was cancelled.", nil, false)
			return
		}
		env := make([]runtime.EnvVar, 0, len(c.Env))
		for _, e := range c.Env {
			if _, _, ok := e.SecretRef(); !ok {
				env = append(env, runtime.EnvVar{Name: e.Name, Value: e.Value})
			}
		}
		spec := runtime.InstanceSpec{
			Image: c.Image, Command: c.Command, Args: c.Args, Env: env,
			Revision: ex.name, Key: ex.runtimeKey(),
			RunToCompletion: true, StopGrace: r.cfg.StopGrace,
			ExtraEnv: append(append([]runtime.EnvVar{}, extra...),
				runtime.EnvVar{Name: "CLOUD_RUN_JOB", Value: ex.job},
				runtime.EnvVar{Name: "CLOUD_RUN_EXECUTION", Value: ex.name},
				runtime.EnvVar{Name: "CLOUD_RUN_TASK_INDEX", Value: strconv.Itoa(int(i))},
				runtime.EnvVar{Name: "CLOUD_RUN_TASK_ATTEMPT", Value: strconv.Itoa(int(attempt))},
				runtime.EnvVar{Name: "CLOUD_RUN_TASK_COUNT", Value: strconv.Itoa(int(ex.spec.TaskCount))},
			),
		}
		line := TaskLine{Project: ex.project, Region: ex.region, Job: ex.job, Execution: ex.name, Task: int(i), Attempt: int(attempt)}
		out := lineLogger{book: r.cfg.Logs, log: r.cfg.Log.With("job", ex.job, "execution", ex.name),
			key: logKey(ex.project, ex.region, ex.job), job: ex.job, execution: ex.name, task: taskName, line: line, output: r.cfg.Output}
		errOut := out
		errOut.line.Stderr = true
		spec.Logs, spec.ErrLogs = &out, &errOut
		if c.Resources != nil {
			spec.CPU, spec.Memory = c.Resources.Limits["cpu"], c.Resources.Limits["memory"]
		}
		ex.update(ctx, func(rec *state.ExecutionRecord) bool {
			t := &rec.Tasks[i]
			now := r.now()
			if t.Status.StartTime == "" {
				t.Status.StartTime = now
			}
			setCond(&t.Status.Conditions, apis.ConditionStarted, apis.StatusTrue, "", "", now)
			setCond(&t.Status.Conditions, apis.ConditionCompleted, apis.StatusUnknown, "Running", fmt.Sprintf("Attempt %d is running.", attempt), now)
			rec.Execution.Status.RunningCount = countRunning(rec)
			return true
		})
		code, msg := -1, ""
		if secretEnv, err := ex.secretEnv(ctx, c.Env, ts.ServiceAccountName); err != nil {
			msg = "The task could not start: " + err.Error()
		} else {
			spec.Env = append(spec.Env, secretEnv...)
			code, msg = ex.attempt(ctx, spec, timeout)
		}
		if ctx.Err() != nil {
			return
		}
		res := &apis.TaskAttemptResult{ExitCode: int32(code)}
		switch {
		case code == 0 && msg == "":
			ex.taskEnded(ctx, i, apis.StatusTrue, "", "", res, false)
			return
		case ex.cancelled():
			res.Status = &apis.RPCStatus{Code: 1, Message: "The task was cancelled."}
			ex.taskEnded(ctx, i, apis.StatusFalse, ReasonCancelled, "The execution was cancelled.", res, false)
			return
		}
		res.Status = &apis.RPCStatus{Code: 2, Message: msg}
		if attempt >= retries {
			ex.taskEnded(ctx, i, apis.StatusFalse, ReasonFailed, fmt.Sprintf("Task %d failed after %d attempts: %s", i, attempt+1, msg), res, false)
			return
		}
		ex.taskEnded(ctx, i, "", "", "", res, true)
	}
}

// secretEnv reads the values of env's secret variables now, as account
// (each attempt: a revoked grant stops the next one, as for a service's
// instances).
func (ex *execution) secretEnv(ctx context.Context, env []apis.EnvVar, account string) ([]runtime.EnvVar, error) {
	var out []runtime.EnvVar
	for _, e := range env {
		secret, version, ok := e.SecretRef()
		if !ok {
			continue
		}
		if ex.r.cfg.SecretValue == nil {
			return nil, errors.New("env " + e.Name + " names a secret and this runner cannot read secrets")
		}
		v, err := ex.r.cfg.SecretValue(ctx, ex.project, account, secret, version)
		if err != nil {
			return nil, fmt.Errorf("env %s: secret %s version %s: %w", e.Name, secret, version, err)
		}
		out = append(out, runtime.EnvVar{Name: e.Name, Value: string(v)})
	}
	return out, nil
}

// attempt runs one attempt: its exit code, and a message when it failed.
func (ex *execution) attempt(ctx context.Context, spec runtime.InstanceSpec, timeout time.Duration) (int, string) {
	in, err := ex.r.cfg.Runtime.Start(ctx, spec)
	if err != nil {
		return -1, "The task could not start: " + err.Error()
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	timedOut := false
	select {
	case <-in.Done():
	case <-ex.stop:
		in.Stop(context.Background())
	case <-ctx.Done():
		in.Stop(context.Background())
	case <-t.C:
		timedOut = true
		in.Stop(context.Background())
	}
	<-in.Done()
	var x *runtime.ExitError
	code := -1
	if errors.As(in.Err(), &x) {
		code = x.Code
	}
	switch {
	case timedOut:
		return code, fmt.Sprintf("The task attempt exceeded its timeout of %v and was stopped.", timeout)
	case code == 0:
		return 0, ""
	case x != nil && x.Signal != "":
		return code, "The task was killed by signal " + x.Signal + "."
	case x != nil:
		return code, fmt.Sprintf("The task exited with status %d.", code)
	}
	return code, in.Err().Error()
}

// taskEnded records an attempt's end: the task's end (status True or
// False) or, with retry, a failed attempt to be retried.
func (ex *execution) taskEnded(ctx context.Context, i int32, status, reason, message string, res *apis.TaskAttemptResult, retry bool) {
	err := ex.update(ctx, func(rec *state.ExecutionRecord) bool {
		t := &rec.Tasks[i]
		now := ex.r.now()
		if res != nil {
			t.Status.LastAttemptResult = res
		}
		if retry {
			t.Status.Retried++
			rec.Execution.Status.RetriedCount++
			setCond(&t.Status.Conditions, apis.ConditionCompleted, apis.StatusUnknown, "Retrying", "The last attempt failed; retrying.", now)
		} else {
			setCond(&t.Status.Conditions, apis.ConditionCompleted, status, reason, message, now)
			t.Status.CompletionTime = now
		}
		st := &rec.Execution.Status
		st.RunningCount = countRunning(rec)
		st.SucceededCount, st.FailedCount, st.CancelledCount = 0, 0, 0
		for j := range rec.Tasks {
			switch completed(&rec.Tasks[j]) {
			case "":
			case "ok":
				st.SucceededCount++
			case ReasonCancelled:
				st.CancelledCount++
			default:
				st.FailedCount++
			}
		}
		return true
	})
	if err != nil {
		ex.r.cfg.Log.Warn("recording a task's progress failed", "execution", ex.name, "task", i, "err", err)
	}
}

func countRunning(rec *state.ExecutionRecord) int32 {
	var n int32
	for j := range rec.Tasks {
		for _, c := range rec.Tasks[j].Status.Conditions {
			if c.Type == apis.ConditionCompleted && c.Status == apis.StatusUnknown && (c.Reason == "Running") {
				n++
			}
		}
	}
	return n
}
