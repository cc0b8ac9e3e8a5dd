package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
)

// routesJobs serves Cloud Run jobs as gcloud's `gcloud run jobs` calls
// them: run.googleapis.com/v1 namespaces (jobs, executions, tasks) on the
// regional host, and the jobs' IAM methods under v1 projects.locations.
func (a *API) routesJobs() {
	m := a.mux
	// gcloud's paths (the region is the regional host's), then the same
	// resources with the region in the path (Usher's CLI and console).
	for _, prefix := range []string{"/apis/run.googleapis.com/v1/namespaces/{ns}", "/v1/projects/{ns}/locations/{region}"} {
		m.Handle("GET "+prefix+"/jobs", a.authed(a.listJobs))
		m.Handle("POST "+prefix+"/jobs", a.authed(a.createJob))
		m.Handle("GET "+prefix+"/jobs/{name}", a.authed(a.jobGetOrPolicy))
		m.Handle("PUT "+prefix+"/jobs/{name}", a.authed(a.replaceJob))
		m.Handle("DELETE "+prefix+"/jobs/{name}", a.authed(a.deleteJob))
		m.Handle("POST "+prefix+"/jobs/{name}", a.authed(a.jobMethod)) // NAME:run, NAME:setIamPolicy, ...
		m.Handle("GET "+prefix+"/executions", a.authed(a.listExecutions))
		m.Handle("GET "+prefix+"/executions/{name}", a.authed(a.getExecution))
		m.Handle("DELETE "+prefix+"/executions/{name}", a.authed(a.deleteExecution))
		m.Handle("POST "+prefix+"/executions/{name}", a.authed(a.executionMethod)) // NAME:cancel
		m.Handle("GET "+prefix+"/tasks", a.authed(a.listTasks))
		m.Handle("GET "+prefix+"/tasks/{name}", a.authed(a.getTask))
	}
}

func (a *API) listJobs(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	jobs, rev, err := a.cfg.Core.ListJobs(r.Context(), c, project, listRegion(region))
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Job]{APIVersion: apis.RunAPIVersion, Kind: "JobsList",
		Metadata: apis.ListMeta{ResourceVersion: strconv.FormatInt(rev, 10)}, Items: []apis.Job{}}
	for _, j := range jobs {
		if selector(j.Metadata.Labels) {
			list.Items = append(list.Items, j)
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	j, err := a.cfg.Core.GetJob(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, j)
}

func (a *API) createJob(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	j, err := parseJob(r)
	if err != nil {
		return err
	}
	if err := apis.ValidateJobName(j.Metadata.Name); err != nil {
		return invalidField(err)
	}
	out, err := a.cfg.Core.WriteJob(r.Context(), c, admin.JobWrite{Project: project, Region: region, Name: j.Metadata.Name, Create: true, Job: j})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) replaceJob(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.PathValue("name")
	j, err := parseJob(r)
	if err != nil {
		return err
	}
	if j.Metadata.Name != "" && j.Metadata.Name != name {
		return invalidArgument("metadata.name %q does not match the job %q in the path", j.Metadata.Name, name)
	}
	out, err := a.cfg.Core.WriteJob(r.Context(), c, admin.JobWrite{Project: project, Region: region, Name: name, Job: j, ResourceVersion: j.Metadata.ResourceVersion})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// parseJob reads a v1 Job, refusing what Usher would drop (apis.ParseJob).
func parseJob(r *http.Request) (*apis.Job, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, invalidArgument("the request has no job")
	}
	j, err := apis.ParseJob(b)
	if err != nil {
		return nil, invalidField(err)
	}
	return j, nil
}

// k8sStatus is the Kubernetes Status a v1 delete answers.
func k8sStatus(kind, name string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Status", "status": "Success",
		"details": map[string]any{"name": name, "group": "run.googleapis.com", "kind": kind}}
}

func (a *API) deleteJob(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.PathValue("name")
	if _, err := a.cfg.Core.DeleteJob(r.Context(), c, project, region, name); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k8sStatus("jobs", name))
}

// jobMethod serves NAME:run and the job's IAM methods.
func (a *API) jobMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	if method != "run" {
		return a.policyMethod(w, r, c, method, a.jobTarget(r, name))
	}
	project, region := pathScope(r)
	var req apis.RunJobRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ex, err := a.cfg.Core.RunJob(r.Context(), c, project, region, name, req.Overrides)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ex)
}

func (a *API) listExecutions(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	sel := r.URL.Query().Get("labelSelector")
	job := labelValue(sel, apis.LabelJob)
	rg := region
	if job == "" {
		rg = listRegion(region)
	}
	items, err := a.cfg.Core.ListExecutions(r.Context(), c, project, rg, job)
	if err != nil {
		return err
	}
	selector := labelSelector(sel)
	list := apis.List[apis.Execution]{APIVersion: apis.RunAPIVersion, Kind: "ExecutionsList", Items: []apis.Execution{}}
	for _, e := range items {
		if selector(e.Metadata.Labels) {
			list.Items = append(list.Items, e)
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

// labelValue is the value an equality selector asks of key ("" if none).
func labelValue(sel, key string) string {
	want := ""
	for _, part := range strings.Split(sel, ",") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == key {
			want = strings.TrimSpace(strings.TrimPrefix(v, "="))
		}
	}
	return want
}

func (a *API) getExecution(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	ex, err := a.cfg.Core.GetExecution(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ex)
}

func (a *API) deleteExecution(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	name := r.PathValue("name")
	if _, err := a.cfg.Core.DeleteExecution(r.Context(), c, project, region, name); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k8sStatus("executions", name))
}

// executionMethod serves NAME:cancel.
func (a *API) executionMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	if method != "cancel" {
		return notFound("no method %q on executions", method)
	}
	project, region := pathScope(r)
	ex, err := a.cfg.Core.CancelExecution(r.Context(), c, project, region, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ex)
}

func (a *API) listTasks(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	sel := r.URL.Query().Get("labelSelector")
	exName := labelValue(sel, apis.LabelExecution)
	if exName == "" {
		return invalidArgument("list tasks with labelSelector=%s=EXECUTION", apis.LabelExecution)
	}
	tasks, err := a.cfg.Core.ListTasks(r.Context(), c, project, region, exName)
	if err != nil {
		return err
	}
	selector := labelSelector(sel)
	list := apis.List[apis.Task]{APIVersion: apis.RunAPIVersion, Kind: "TasksList", Items: []apis.Task{}}
	for _, t := range tasks {
		if selector(t.Metadata.Labels) {
			list.Items = append(list.Items, t)
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (a *API) getTask(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	t, err := a.cfg.Core.GetTask(r.Context(), c, project, region, r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (a *API) jobGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, method := splitMethod(r.PathValue("name"))
	switch method {
	case "":
		return a.getJob(w, r, c)
	case "logs":
		return a.readJobLogs(w, r, c, name)
	}
	return a.policyMethod(w, r, c, method, a.jobTarget(r, name))
}

func (a *API) jobTarget(r *http.Request, name string) func() (*admin.Target, error) {
	return func() (*admin.Target, error) {
		project, region := pathScope(r)
		return a.cfg.Core.JobTarget(r.Context(), project, region, name)
	}
}

// readJobLogs serves GET .../jobs/NAME:logs?execution=&limit= (Usher's own,
// for `usher run jobs logs read`).
func (a *API) readJobLogs(w http.ResponseWriter, r *http.Request, c *caller, name string) error {
	project, region := pathScope(r)
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalidArgument("limit must be a whole number")
		}
		limit = n
	}
	entries, err := a.cfg.Core.JobLogs(r.Context(), c, project, region, name, r.URL.Query().Get("execution"), limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}
