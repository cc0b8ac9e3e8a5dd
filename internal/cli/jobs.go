package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/logs"
)

// `usher run jobs …`, as `gcloud run jobs …` (issue 16).

func jobsBase(cfg client.Config) string {
	return "/v1/projects/" + url.PathEscape(cfg.Project) + "/locations/" + url.PathEscape(cfg.Region)
}

func jobPath(cfg client.Config, name string) string {
	return jobsBase(cfg) + "/jobs/" + url.PathEscape(name)
}

func jobPolicyPath(cfg client.Config, name string) (string, string) {
	return jobPath(cfg, name), "job [" + name + "]"
}

func newJobsCmd(g *globals) *cobra.Command {
	jobs := &cobra.Command{Use: "jobs", Short: "Manage Cloud Run jobs: run-to-completion tasks"}
	executions := &cobra.Command{Use: "executions", Short: "Manage a job's executions"}
	executions.AddCommand(newExecutionsListCmd(g), newExecutionDescribeCmd(g), newExecutionCancelCmd(g), newExecutionDeleteCmd(g), newTasksListCmd(g, "tasks-list"))
	tasks := &cobra.Command{Use: "tasks", Short: "List an execution's tasks"}
	tasks.AddCommand(newTasksListCmd(g, "list"))
	logsCmd := &cobra.Command{Use: "logs", Short: "Read what a job's tasks printed"}
	logsCmd.AddCommand(newJobLogsReadCmd(g))
	jobs.AddCommand(
		newJobWriteCmd(g, "create"), newJobWriteCmd(g, "update"), newJobWriteCmd(g, "deploy"), newJobDescribeCmd(g), newJobsListCmd(g), newJobDeleteCmd(g), newJobExecuteCmd(g),
		newPolicyBindingCmd(g, "add-iam-policy-binding", true, jobPolicyPath),
		newPolicyBindingCmd(g, "remove-iam-policy-binding", false, jobPolicyPath),
		newGetPolicyCmd(g, jobPolicyPath),
		newSetPolicyCmd(g, jobPolicyPath),
		executions, tasks, logsCmd,
	)
	return jobs
}

// jobFlags are gcloud run jobs create/update's flags that Usher implements.
type jobFlags struct {
	image, serviceAccount, taskTimeout string
	setEnv, updateEnv                  map[string]string
	removeEnv, command, args           []string
	clearEnv                           bool
	tasks, parallelism, maxRetries     int
	executeNow, wait                   bool
	cpu, memory                        string
	source                             string
}

// parseTaskTimeout reads --task-timeout as gcloud does: seconds, or a
// duration such as 10m or 1h30m.
func parseTaskTimeout(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("--task-timeout %q: want seconds or a duration such as 10m", s)
	}
	return int64(d / time.Second), nil
}

// newJobWriteCmd is jobs create, update, or deploy (create or update,
// from an image or from --source).
func newJobWriteCmd(g *globals, mode string) *cobra.Command {
	var f jobFlags
	use, short := "update", "Change a job's configuration"
	switch mode {
	case "create":
		use, short = "create", "Create a job"
	case "deploy":
		use, short = "deploy", "Create or update a job, from an image or from source (--source)"
	}
	cmd := &cobra.Command{
		Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			create := mode == "create"
			var j apis.Job
			if mode != "create" {
				err := c.Do(ctx, http.MethodGet, jobPath(cfg, name), nil, &j)
				switch {
				case mode == "deploy" && client.IsStatus(err, "NOT_FOUND"):
					create = true
				case err != nil:
					return err
				}
				j.Status = apis.JobStatus{}
			}
			if f.source != "" {
				if f.image != "" {
					return fmt.Errorf("--source and --image are mutually exclusive")
				}
				if f.image, err = buildFromSource(ctx, g, c, cfg.Project, cfg.Region, "jobs/"+name, f.source); err != nil {
					return err
				}
			}
			if create {
				if f.image == "" {
					return fmt.Errorf("--image or --source is required to create job [%s]", name)
				}
				j = apis.Job{Metadata: apis.ObjectMeta{Name: name}}
				j.Spec.Template.Spec.Template.Spec.Containers = []apis.Container{{}}
			}
			if err := applyJobFlags(cmd, &j, &f); err != nil {
				return err
			}
			var out apis.Job
			if create {
				err = c.Do(ctx, http.MethodPost, jobsBase(cfg)+"/jobs", &j, &out)
			} else {
				err = c.Do(ctx, http.MethodPut, jobPath(cfg, name), &j, &out)
			}
			if err != nil {
				return err
			}
			verb := "created"
			if !create {
				verb = "updated"
			}
			fmt.Fprintf(g.stderr, "Job [%s] has successfully been %s.\n", name, verb)
			if f.executeNow {
				return execute(ctx, g, c, cfg, name, nil, f.wait)
			}
			if g.format != "" {
				return g.print(out, nil)
			}
			fmt.Fprintf(g.stderr, "To execute this job, use:\nusher run jobs execute %s\n", name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "file:///ABS/PATH of an executable (process runtime) or a container image")
	fl.StringVar(&f.source, "source", "", "build this directory and use the result: a Dockerfile (Docker engine) or a Go main package (process runtime)")
	fl.StringVar(&f.serviceAccount, "service-account", "", "service account the tasks run as")
	fl.StringToStringVar(&f.setEnv, "set-env-vars", nil, "replace all environment variables: KEY=VALUE,...")
	fl.StringToStringVar(&f.updateEnv, "update-env-vars", nil, "add or change environment variables: KEY=VALUE,...")
	fl.StringSliceVar(&f.removeEnv, "remove-env-vars", nil, "remove environment variables: KEY,...")
	fl.BoolVar(&f.clearEnv, "clear-env-vars", false, "remove all environment variables")
	fl.StringSliceVar(&f.command, "command", nil, "entrypoint (comma-separated)")
	fl.StringSliceVar(&f.args, "args", nil, "arguments (comma-separated)")
	fl.IntVar(&f.tasks, "tasks", 0, "number of tasks per execution (default 1)")
	fl.IntVar(&f.parallelism, "parallelism", -1, "tasks run at once (0: all)")
	fl.IntVar(&f.maxRetries, "max-retries", -1, "retries of a failed task (default 3)")
	fl.StringVar(&f.taskTimeout, "task-timeout", "", "time an attempt may run, e.g. 600 or 10m (default 10m)")
	fl.StringVar(&f.cpu, "cpu", "", "CPU limit per task, e.g. 1 or 500m (container images)")
	fl.StringVar(&f.memory, "memory", "", "memory limit per task, e.g. 512Mi (container images)")
	fl.BoolVar(&f.executeNow, "execute-now", false, "execute the job once written")
	fl.BoolVar(&f.wait, "wait", false, "with --execute-now, wait for the execution to complete")
	return cmd
}

func applyJobFlags(cmd *cobra.Command, j *apis.Job, f *jobFlags) error {
	es := &j.Spec.Template.Spec
	ts := &es.Template.Spec
	ctr := &ts.Containers[0]
	changed := cmd.Flags().Changed
	if f.image != "" {
		ctr.Image = f.image
	}
	if changed("service-account") {
		ts.ServiceAccountName = f.serviceAccount
	}
	if changed("command") {
		ctr.Command = f.command
	}
	if changed("args") {
		ctr.Args = f.args
	}
	if changed("tasks") {
		es.TaskCount = int32(f.tasks)
	}
	if changed("parallelism") {
		es.Parallelism = int32(f.parallelism)
	}
	if changed("max-retries") {
		r := int32(f.maxRetries)
		ts.MaxRetries = &r
	}
	if f.taskTimeout != "" {
		secs, err := parseTaskTimeout(f.taskTimeout)
		if err != nil {
			return err
		}
		ts.TimeoutSeconds = apis.Int64String(secs)
	}
	if f.clearEnv || changed("set-env-vars") {
		ctr.Env = nil
	}
	for _, m := range []map[string]string{f.setEnv, f.updateEnv} {
		for _, k := range sortedKeys(m) {
			ctr.Env = setEnv(ctr.Env, k, m[k])
		}
	}
	for _, k := range f.removeEnv {
		ctr.Env = removeEnv(ctr.Env, k)
	}
	if f.cpu != "" || f.memory != "" {
		if ctr.Resources == nil {
			ctr.Resources = &apis.Resources{Limits: map[string]string{}}
		}
		if ctr.Resources.Limits == nil {
			ctr.Resources.Limits = map[string]string{}
		}
		if f.cpu != "" {
			ctr.Resources.Limits["cpu"] = f.cpu
		}
		if f.memory != "" {
			ctr.Resources.Limits["memory"] = f.memory
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func newJobDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "describe NAME", Short: "Show a job", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var j apis.Job
			if err := c.Do(cmd.Context(), http.MethodGet, jobPath(cfg, args[0]), nil, &j); err != nil {
				return err
			}
			return g.print(j, nil)
		},
	}
}

func newJobsListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List jobs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if g.region == "" {
				cfg.Region = "-"
			}
			var list apis.List[apis.Job]
			if err := c.Do(cmd.Context(), http.MethodGet, jobsBase(cfg)+"/jobs", nil, &list); err != nil {
				return err
			}
			return g.print(list.Items, func(w io.Writer) error {
				var rows [][]string
				for _, j := range list.Items {
					last := ""
					if l := j.Status.LatestCreatedExecution; l != nil {
						last = l.Name + " " + l.CompletionStatus
					}
					rows = append(rows, []string{"✔", j.Metadata.Name, j.Metadata.Labels[apis.LabelLocation], last,
						j.Metadata.Annotations[apis.AnnotationRunCreator], j.Metadata.CreationTimestamp})
				}
				return table(w, []string{"", "JOB", "REGION", "LAST RUN", "CREATED BY", "CREATED"}, rows)
			})
		},
	}
}

func newJobDeleteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use: "delete NAME", Short: "Delete a job, its finished executions and its IAM policy", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, jobPath(cfg, args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Deleted job [%s].\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolP("quiet", "q", false, "no prompts (usher never prompts)")
	return cmd
}

func newJobExecuteCmd(g *globals) *cobra.Command {
	var (
		wait, async bool
		updateEnv   map[string]string
		args        []string
		tasks       int
		taskTimeout string
	)
	cmd := &cobra.Command{
		Use: "execute NAME", Short: "Execute a job (with overrides for this execution only)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var o *apis.Overrides
			changed := cmd.Flags().Changed
			if changed("update-env-vars") || changed("args") || changed("tasks") || changed("task-timeout") {
				o = &apis.Overrides{TaskCount: int32(tasks)}
				if taskTimeout != "" {
					secs, err := parseTaskTimeout(taskTimeout)
					if err != nil {
						return err
					}
					o.TimeoutSeconds = int32(secs)
				}
				if changed("update-env-vars") || changed("args") {
					co := apis.ContainerOverride{Args: args, ClearArgs: changed("args") && len(args) == 0}
					for _, k := range sortedKeys(updateEnv) {
						co.Env = append(co.Env, apis.EnvVar{Name: k, Value: updateEnv[k]})
					}
					o.ContainerOverrides = []apis.ContainerOverride{co}
				}
			}
			return execute(cmd.Context(), g, c, cfg, a[0], o, wait && !async)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&wait, "wait", false, "wait for the execution to complete")
	fl.BoolVar(&async, "async", false, "return at once")
	fl.StringToStringVar(&updateEnv, "update-env-vars", nil, "override environment variables for this execution: KEY=VALUE,...")
	fl.StringSliceVar(&args, "args", nil, "override the arguments for this execution")
	fl.IntVar(&tasks, "tasks", 0, "override the number of tasks for this execution")
	fl.StringVar(&taskTimeout, "task-timeout", "", "override the task timeout for this execution")
	return cmd
}

// execute runs a job and, with wait, polls its execution until Completed
// is True or False (what gcloud's --wait does); a failed execution is an
// error.
func execute(ctx context.Context, g *globals, c *client.Client, cfg client.Config, name string, o *apis.Overrides, wait bool) error {
	var ex apis.Execution
	if err := c.Do(ctx, http.MethodPost, jobPath(cfg, name)+":run", &apis.RunJobRequest{Overrides: o}, &ex); err != nil {
		return err
	}
	if !wait {
		fmt.Fprintf(g.stderr, "Execution [%s] has successfully started running.\n", ex.Metadata.Name)
		if g.format != "" {
			return g.print(ex, nil)
		}
		fmt.Fprintf(g.stdout, "%s\n", ex.Metadata.Name)
		return nil
	}
	path := jobsBase(cfg) + "/executions/" + url.PathEscape(ex.Metadata.Name)
	delay := 100 * time.Millisecond
	for {
		if err := c.Do(ctx, http.MethodGet, path, nil, &ex); err != nil {
			return err
		}
		if cond := completedCondition(&ex); cond.Status != apis.StatusUnknown && cond.Status != "" {
			if g.format != "" {
				if err := g.print(ex, nil); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "%s\n", ex.Metadata.Name)
			}
			st := ex.Status
			if cond.Status != apis.StatusTrue {
				return fmt.Errorf("execution [%s] failed: %s (%s: %d succeeded, %d failed, %d cancelled)", ex.Metadata.Name, cond.Message, cond.Reason, st.SucceededCount, st.FailedCount, st.CancelledCount)
			}
			fmt.Fprintf(g.stderr, "Execution [%s] has successfully completed: %d / %d tasks succeeded.\n", ex.Metadata.Name, st.SucceededCount, ex.Spec.TaskCount)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

func completedCondition(ex *apis.Execution) apis.Condition {
	for _, c := range ex.Status.Conditions {
		if c.Type == apis.ConditionCompleted {
			return c
		}
	}
	return apis.Condition{}
}

func newExecutionsListCmd(g *globals) *cobra.Command {
	var job string
	cmd := &cobra.Command{
		Use: "list", Short: "List executions, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			path := jobsBase(cfg) + "/executions"
			if job != "" {
				path += "?" + url.Values{"labelSelector": {apis.LabelJob + "=" + job}}.Encode()
			}
			var list apis.List[apis.Execution]
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &list); err != nil {
				return err
			}
			return g.print(list.Items, func(w io.Writer) error {
				var rows [][]string
				for _, ex := range list.Items {
					st := ex.Status
					rows = append(rows, []string{executionMark(&ex), ex.Metadata.Name, ex.Metadata.Labels[apis.LabelJob],
						fmt.Sprintf("%d / %d", st.SucceededCount, ex.Spec.TaskCount), ex.Metadata.CreationTimestamp, ex.Metadata.Annotations[apis.AnnotationRunCreator]})
				}
				return table(w, []string{"", "EXECUTION", "JOB", "SUCCEEDED", "CREATED", "RUN BY"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job's executions")
	return cmd
}

func executionMark(ex *apis.Execution) string {
	switch completedCondition(ex).Status {
	case apis.StatusTrue:
		return "✔"
	case apis.StatusFalse:
		return "X"
	}
	return "…"
}

func newExecutionDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "describe EXECUTION", Short: "Show an execution", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var ex apis.Execution
			if err := c.Do(cmd.Context(), http.MethodGet, jobsBase(cfg)+"/executions/"+url.PathEscape(args[0]), nil, &ex); err != nil {
				return err
			}
			return g.print(ex, nil)
		},
	}
}

func newExecutionCancelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use: "cancel EXECUTION", Short: "Cancel an execution: stop its running tasks, start no more", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodPost, jobsBase(cfg)+"/executions/"+url.PathEscape(args[0])+":cancel", struct{}{}, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Execution [%s] is being cancelled.\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolP("quiet", "q", false, "no prompts (usher never prompts)")
	return cmd
}

func newExecutionDeleteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use: "delete EXECUTION", Short: "Delete a finished execution", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, jobsBase(cfg)+"/executions/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Deleted execution [%s].\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolP("quiet", "q", false, "no prompts (usher never prompts)")
	return cmd
}

func newTasksListCmd(g *globals, use string) *cobra.Command {
	var execution string
	cmd := &cobra.Command{
		Use: use + " --execution EXECUTION", Short: "List an execution's tasks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if execution == "" {
				return fmt.Errorf("--execution is required")
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			path := jobsBase(cfg) + "/tasks?" + url.Values{"labelSelector": {apis.LabelExecution + "=" + execution}}.Encode()
			var list apis.List[apis.Task]
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &list); err != nil {
				return err
			}
			return g.print(list.Items, func(w io.Writer) error {
				var rows [][]string
				for _, t := range list.Items {
					state, exit := "RUNNING", ""
					for _, cond := range t.Status.Conditions {
						if cond.Type == apis.ConditionCompleted {
							switch {
							case cond.Status == apis.StatusTrue:
								state = "SUCCEEDED"
							case cond.Status == apis.StatusFalse:
								state = strings.ToUpper(cond.Reason)
							case cond.Reason != "":
								state = strings.ToUpper(cond.Reason)
							}
						}
					}
					if r := t.Status.LastAttemptResult; r != nil {
						exit = strconv.Itoa(int(r.ExitCode))
					}
					rows = append(rows, []string{strconv.Itoa(int(t.Status.Index)), t.Metadata.Name, state, strconv.Itoa(int(t.Status.Retried)), exit})
				}
				return table(w, []string{"INDEX", "TASK", "STATE", "RETRIES", "LAST EXIT CODE"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&execution, "execution", "", "the execution whose tasks to list")
	return cmd
}

func newJobLogsReadCmd(g *globals) *cobra.Command {
	var (
		limit     int
		execution string
	)
	cmd := &cobra.Command{
		Use: "read NAME", Short: "Print the newest lines of a job's tasks, oldest first", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if execution != "" {
				q.Set("execution", execution)
			}
			var out struct {
				Entries []logs.Entry `json:"entries"`
			}
			if err := c.Do(cmd.Context(), http.MethodGet, jobPath(cfg, args[0])+":logs?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			return g.print(out.Entries, func(w io.Writer) error {
				for _, e := range out.Entries {
					fmt.Fprintf(w, "%s %s %s %s\n", e.Time.Format(time.RFC3339Nano), e.Revision, e.Instance, e.Text)
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "how many lines at most")
	cmd.Flags().StringVar(&execution, "execution", "", "only this execution's lines")
	return cmd
}
