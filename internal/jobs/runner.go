// Package jobs runs the executions of Cloud Run jobs: it claims each new
// execution in the store (compare-and-swap, so one node runs it), runs its
// tasks on the runtime (at most parallelism at once, each retried up to
// maxRetries times, each attempt bounded by the task timeout), and writes
// the tasks' and the execution's progress back to the store, where the
// admin API reads it.
//
// Cloud Run's task contract: a task is the job's container run to
// completion (it need not listen on $PORT) with CLOUD_RUN_JOB,
// CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_ATTEMPT and
// CLOUD_RUN_TASK_COUNT in its environment; exit status 0 succeeds the
// attempt, anything else fails it. Cancelling an execution stops its
// running tasks (SIGTERM, then SIGKILL after the grace) and starts no more.
//
// An execution never stays running forever: at start, the runner marks
// failed every execution that this node had claimed and not finished (the
// node stopped or crashed during it), with the reason in its Completed
// condition.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Reasons in an execution's Completed condition.
const (
	ReasonSucceeded   = "" // Completed True
	ReasonFailed      = "NonZeroExitCode"
	ReasonCancelled   = "Cancelled"
	ReasonInterrupted = "NodeRestarted"
)

// Config wires a runner.
type Config struct {
	Store   store.Store
	Runtime runtime.Runtime
	// Identity gives a task its metadata server (the job's service
	// account), as the pool does for a revision, registered under key (the
	// tasks' runtime.InstanceSpec.Key, a runtime.ExecutionKey); nil: none.
	Identity func(key string, execution *apis.Revision) ([]runtime.EnvVar, func(), error)
	// Logs receives the tasks' output under admin.JobLogKey.
	Logs *logs.Book[logs.Entry]
	// SecretValue reads a secret's version for a task starting as a
	// service account (admin.Core.RuntimeSecretValue); nil: a job whose
	// env names secrets fails its tasks.
	SecretValue func(ctx context.Context, project, serviceAccount, secret, version string) ([]byte, error)
	// Output, if set, also receives each line a task printed (on stderr
	// when stderr), for the Logging API; it must not block.
	Output func(t TaskLine)
	// Node names this node in the executions it claims.
	Node string
	// StopGrace is the time between SIGTERM and SIGKILL on cancel or
	// timeout (default runtime.DefaultStopGrace).
	StopGrace time.Duration
	Now       func() time.Time
	Log       *slog.Logger
}

// Runner runs executions.
type Runner struct {
	cfg Config

	mu sync.Mutex
	// running are the executions this node runs, by store key.
	running map[string]*execution
	wg      sync.WaitGroup
}

// New returns a runner; Start starts it.
func New(cfg Config) *Runner {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = runtime.DefaultStopGrace
	}
	return &Runner{cfg: cfg, running: map[string]*execution{}}
}

// Start marks failed the executions this node left unfinished, then runs
// new executions until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	if err := r.recoverInterrupted(ctx); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	go r.loop(ctx)
	return nil
}

// Wait waits for running executions to end (after ctx of Start ended).
func (r *Runner) Wait() { r.wg.Wait() }

func (r *Runner) now() string { return r.cfg.Now().UTC().Format(time.RFC3339Nano) }

// recoverInterrupted fails every execution this node claimed and did not finish.
func (r *Runner) recoverInterrupted(ctx context.Context) error {
	entries, _, err := r.cfg.Store.List(ctx, state.ExecutionsPrefix)
	if err != nil {
		return err
	}
	for _, e := range entries {
		rec, err := decode(e.Value)
		if err != nil || rec.Done || rec.Node != r.cfg.Node {
			continue
		}
		r.cfg.Log.Warn("execution interrupted by a restart: marking it failed", "execution", e.Key)
		err = r.update(ctx, e.Key, func(rec *state.ExecutionRecord) bool {
			if rec.Done || rec.Node != r.cfg.Node {
				return false
			}
			now := r.now()
			for i := range rec.Tasks {
				t := &rec.Tasks[i]
				if completed(t) == "" {
					setCond(&t.Status.Conditions, apis.ConditionCompleted, apis.StatusFalse, ReasonInterrupted, "The Usher node running this task stopped during the execution.", now)
					if t.Status.StartTime == "" {
						setCond(&t.Status.Conditions, apis.ConditionCompleted, apis.StatusFalse, ReasonCancelled, "The execution was interrupted before this task started.", now)
					}
					t.Status.CompletionTime = now
				}
			}
			r.finish(rec, ReasonInterrupted, "The Usher node running this execution ("+r.cfg.Node+") stopped or crashed during it; its tasks were interrupted. Run the job again.")
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// loop claims new executions and passes cancellations to running ones,
// following the store.
func (r *Runner) loop(ctx context.Context) {
	for ctx.Err() == nil {
		rev, err := r.scan(ctx)
		if err != nil {
			r.cfg.Log.Warn("jobs: listing executions failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := r.cfg.Store.Watch(wctx, state.ExecutionsPrefix, rev)
		// A project's deletion stops its executions: watch projects too.
		projects := r.cfg.Store.Watch(wctx, state.ProjectsPrefix, rev)
		// Any change: scan again (executions are few).
		ok := true
		select {
		case <-ctx.Done():
		case _, ok = <-ch:
		case _, ok = <-projects:
		}
		if !ok {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		cancel()
	}
}

// scan claims unclaimed executions and cancels those asked to stop, and
// those of a project being deleted (nothing of such a project runs).
func (r *Runner) scan(ctx context.Context) (int64, error) {
	entries, rev, err := r.cfg.Store.List(ctx, state.ExecutionsPrefix)
	if err != nil {
		return 0, err
	}
	projects, prev, err := r.cfg.Store.List(ctx, state.ProjectsPrefix)
	if err != nil {
		return 0, err
	}
	rev = min(rev, prev)
	deleted := map[string]bool{}
	for _, e := range projects {
		var p state.Project
		if json.Unmarshal(e.Value, &p) == nil {
			deleted[p.ProjectID] = !p.Active()
		}
	}
	for _, e := range entries {
		rec, err := decode(e.Value)
		if err != nil || rec.Done {
			continue
		}
		if deleted[rec.Execution.Metadata.Namespace] {
			rec.CancelRequested = true
		}
		r.mu.Lock()
		ex := r.running[e.Key]
		r.mu.Unlock()
		switch {
		case ex != nil && rec.CancelRequested:
			ex.cancel()
		case ex == nil && rec.Node == "":
			r.claim(ctx, e.Key, e.Revision, rec)
		}
	}
	return rev, nil
}

// claim takes an execution for this node and starts it.
func (r *Runner) claim(ctx context.Context, key string, rev int64, rec *state.ExecutionRecord) {
	rec.Node = r.cfg.Node
	now := r.now()
	if rec.CancelRequested {
		for i := range rec.Tasks {
			setCond(&rec.Tasks[i].Status.Conditions, apis.ConditionCompleted, apis.StatusFalse, ReasonCancelled, "The execution was cancelled before this task started.", now)
		}
		r.finish(rec, ReasonCancelled, "The execution was cancelled.")
	} else {
		rec.Execution.Status.StartTime = now
		setCond(&rec.Execution.Status.Conditions, apis.ConditionResourcesAvailable, apis.StatusTrue, "", "", now)
		setCond(&rec.Execution.Status.Conditions, apis.ConditionStarted, apis.StatusTrue, "", "", now)
	}
	for i := range rec.Tasks {
		setTaskState(&rec.Tasks[i])
	}
	if _, err := state.Put(ctx, r.cfg.Store, key, rec, rev); err != nil {
		if !errors.Is(err, store.ErrConflict) {
			r.cfg.Log.Warn("jobs: claiming an execution failed", "execution", key, "err", err)
		}
		return // another node claimed it, or it changed: the next scan sees it
	}
	if rec.Done {
		r.updateJob(ctx, rec)
		return
	}
	ex := &execution{r: r, key: key, stop: make(chan struct{}), spec: rec.Execution.Spec,
		name: rec.Execution.Metadata.Name, project: rec.Execution.Metadata.Namespace,
		region: rec.Execution.Metadata.Labels[apis.LabelLocation], job: rec.Execution.Metadata.Labels[apis.LabelJob]}
	r.mu.Lock()
	r.running[key] = ex
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ex.run(ctx)
		r.mu.Lock()
		delete(r.running, key)
		r.mu.Unlock()
	}()
}

// update is a read-modify-write of an execution record, retried on
// conflict; f returns false to write nothing.
func (r *Runner) update(ctx context.Context, key string, f func(*state.ExecutionRecord) bool) error {
	for {
		var rec state.ExecutionRecord
		rev, err := state.Get(ctx, r.cfg.Store, key, &rec)
		if err != nil {
			return err
		}
		if !f(&rec) {
			return nil
		}
		for i := range rec.Tasks {
			setTaskState(&rec.Tasks[i])
		}
		_, err = state.Put(ctx, r.cfg.Store, key, &rec, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err == nil && rec.Done {
			r.updateJob(ctx, &rec)
		}
		return err
	}
}

// finish sets an execution's counts and its Completed condition from its
// tasks and marks it done; reason overrides the derived one when set.
func (r *Runner) finish(rec *state.ExecutionRecord, reason, message string) {
	now := r.now()
	st := &rec.Execution.Status
	st.RunningCount, st.SucceededCount, st.FailedCount, st.CancelledCount = 0, 0, 0, 0
	var failed []string
	for _, t := range rec.Tasks {
		switch completed(&t) {
		case "ok":
			st.SucceededCount++
		case ReasonCancelled:
			st.CancelledCount++
		default:
			st.FailedCount++
			failed = append(failed, strconv.Itoa(int(t.Status.Index)))
		}
	}
	st.CompletionTime = now
	rec.Done = true
	switch {
	case reason != "":
		setCond(&st.Conditions, apis.ConditionCompleted, apis.StatusFalse, reason, message, now)
	case st.FailedCount > 0:
		setCond(&st.Conditions, apis.ConditionCompleted, apis.StatusFalse, ReasonFailed,
			fmt.Sprintf("Task %s failed; %d of %d tasks failed.", failed[0], st.FailedCount, len(rec.Tasks)), now)
	case st.CancelledCount > 0:
		setCond(&st.Conditions, apis.ConditionCompleted, apis.StatusFalse, ReasonCancelled, "The execution was cancelled.", now)
	default:
		setCond(&st.Conditions, apis.ConditionCompleted, apis.StatusTrue, "", fmt.Sprintf("Execution completed successfully: %d of %d tasks succeeded.", st.SucceededCount, len(rec.Tasks)), now)
	}
}

// updateJob records how the job's latest execution ended (best effort).
func (r *Runner) updateJob(ctx context.Context, rec *state.ExecutionRecord) {
	ex := rec.Execution
	key := state.JobKey(ex.Metadata.Namespace, ex.Metadata.Labels[apis.LabelLocation], ex.Metadata.Labels[apis.LabelJob])
	for range 10 {
		var j apis.Job
		rev, err := state.Get(ctx, r.cfg.Store, key, &j)
		if err != nil || j.Status.LatestCreatedExecution == nil || j.Status.LatestCreatedExecution.Name != ex.Metadata.Name {
			return
		}
		j.Status.LatestCreatedExecution.CompletionTimestamp = ex.Status.CompletionTime
		j.Status.LatestCreatedExecution.CompletionStatus = "EXECUTION_FAILED"
		for _, c := range ex.Status.Conditions {
			if c.Type == apis.ConditionCompleted && c.Status == apis.StatusTrue {
				j.Status.LatestCreatedExecution.CompletionStatus = "EXECUTION_SUCCEEDED"
			} else if c.Type == apis.ConditionCompleted && c.Reason == ReasonCancelled {
				j.Status.LatestCreatedExecution.CompletionStatus = "EXECUTION_CANCELLED"
			}
		}
		if _, err := state.Put(ctx, r.cfg.Store, key, &j, rev); !errors.Is(err, store.ErrConflict) {
			return
		}
	}
}

// completed is how a task ended: "ok", a failure reason, ReasonCancelled,
// or "" while it has not.
func completed(t *apis.Task) string {
	for _, c := range t.Status.Conditions {
		if c.Type != apis.ConditionCompleted {
			continue
		}
		switch c.Status {
		case apis.StatusTrue:
			return "ok"
		case apis.StatusFalse:
			if c.Reason == "" {
				return ReasonFailed
			}
			return c.Reason
		}
	}
	return ""
}

// setTaskState labels a task with the state gcloud lists.
func setTaskState(t *apis.Task) {
	state := "Running"
	switch completed(t) {
	case "":
		if t.Status.StartTime == "" {
			return
		}
	case "ok":
		state = "Succeeded"
	case ReasonCancelled:
		state = "Cancelled"
	default:
		state = "Failed"
	}
	if t.Metadata.Labels == nil {
		t.Metadata.Labels = map[string]string{}
	}
	t.Metadata.Labels[apis.LabelRunningState] = state
}

func setCond(conds *[]apis.Condition, typ, status, reason, message, now string) {
	for i := range *conds {
		if (*conds)[i].Type == typ {
			(*conds)[i] = apis.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: now}
			return
		}
	}
	*conds = append(*conds, apis.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: now})
}

func decode(b []byte) (*state.ExecutionRecord, error) {
	var rec state.ExecutionRecord
	if err := jsonUnmarshal(b, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// logKey matches admin.JobLogKey.
func logKey(project, region, job string) string { return project + "/" + region + "/jobs/" + job }

// TaskLine is one line a task printed.
type TaskLine struct {
	Project, Region, Job, Execution string
	Task, Attempt                   int
	Time                            time.Time
	Text                            string
	Stderr                          bool
}

// lineLogger records a task's output, one entry per line.
type lineLogger struct {
	book                      *logs.Book[logs.Entry]
	log                       *slog.Logger
	key, job, execution, task string
	// line is what Output is told of each line, less its time and text.
	line   TaskLine
	output func(TaskLine)
}

func (l *lineLogger) Write(b []byte) (int, error) {
	text := strings.TrimRight(string(b), "\r\n")
	l.log.Info(text, "stream", "task", "task", l.task)
	now := time.Now()
	if l.book != nil {
		l.book.Add(l.key, logs.Entry{Time: now, Service: l.job, Revision: l.execution, Instance: l.task, Text: text})
	}
	if l.output != nil {
		line := l.line
		line.Time, line.Text = now, text
		l.output(line)
	}
	return len(b), nil
}
