package console

// The Jobs pages: the project's jobs, one job's executions, one
// execution's tasks and logs, and the job's Permissions tab with Grant
// Access. Every read and write is the admin core's, as the signed-in
// principal (run.jobs.*, run.executions.*, run.tasks.*), so the console
// shows and changes exactly what the API would.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

const jobPath = "/console/projects/{project}/locations/{region}/jobs/{job}"

func (c *Console) routesJobs(m *http.ServeMux) {
	m.Handle("GET /console/projects/{project}/jobs", c.signedIn(c.jobsList))
	m.Handle("GET "+jobPath, c.signedIn(c.jobExecutions))
	m.Handle("GET "+jobPath+"/executions/{execution}", c.signedIn(c.jobExecution))
	m.Handle("GET "+jobPath+"/permissions", c.signedIn(c.jobPermissions))
	m.Handle("GET "+jobPath+"/permissions/grant", c.signedIn(c.jobGrantForm))
	m.Handle("POST "+jobPath+"/permissions/grant", c.signedIn(c.jobGrant))
	m.Handle("POST "+jobPath+"/permissions/remove", c.signedIn(c.jobRemove))
}

// jobRef names a job in the console's URLs.
type jobRef struct {
	Project, Region, Name string
}

func jobsURL(project string) string {
	return "/console/projects/" + url.PathEscape(project) + "/jobs"
}

// URL is the job's console page, plus an optional sub-path.
func (j jobRef) URL(sub string) string {
	u := "/console/projects/" + url.PathEscape(j.Project) + "/locations/" + url.PathEscape(j.Region) + "/jobs/" + url.PathEscape(j.Name)
	if sub != "" {
		u += "/" + sub
	}
	return u
}

// executionStatus is an execution's or task's Completed condition, for a badge.
func executionStatus(conds []apis.Condition) statusView {
	for _, c := range conds {
		if c.Type != apis.ConditionCompleted {
			continue
		}
		switch {
		case c.Status == apis.StatusTrue:
			return statusView{Label: "Succeeded", Class: "ok"}
		case c.Status == apis.StatusFalse && c.Reason == "Cancelled":
			return statusView{Label: "Cancelled", Class: "muted", Message: c.Message}
		case c.Status == apis.StatusFalse:
			return statusView{Label: "Failed", Class: "danger", Message: c.Message}
		case c.Reason == "Running":
			return statusView{Label: "Running", Class: "pending"}
		}
	}
	return statusView{Label: "Pending", Class: "pending"}
}

type jobRow struct {
	Name, Link, Region, Image string
	Tasks                     int32
	LastExecution             string
	LastStatus                statusView
	LastLink                  string
	Created                   time.Time
	Creator                   string
}

type jobsView struct {
	Project string
	Rows    []jobRow
}

func (c *Console) jobsList(w http.ResponseWriter, r *http.Request, s *session) error {
	project := r.PathValue("project")
	b, err := c.backend(r, s)
	if err != nil {
		return err
	}
	jobs, _, err := b.core.ListJobs(b.ctx, b.caller, project, admin.AllRegions)
	if err != nil {
		return err
	}
	v := jobsView{Project: project}
	for _, j := range jobs {
		ref := jobRef{Project: project, Region: j.Metadata.Labels[apis.LabelLocation], Name: j.Metadata.Name}
		row := jobRow{Name: ref.Name, Link: ref.URL(""), Region: ref.Region, Tasks: j.Spec.Template.Spec.TaskCount,
			Created: timestamp(j.Metadata.CreationTimestamp), Creator: j.Metadata.Annotations[apis.AnnotationRunCreator]}
		if cs := j.Spec.Template.Spec.Template.Spec.Containers; len(cs) > 0 {
			row.Image = cs[0].Image
		}
		if lc := j.Status.LatestCreatedExecution; lc != nil {
			row.LastExecution, row.LastLink = lc.Name, ref.URL("executions/"+url.PathEscape(lc.Name))
			row.LastStatus = completionStatus(lc.CompletionStatus)
		}
		v.Rows = append(v.Rows, row)
	}
	slices.SortFunc(v.Rows, func(a, b jobRow) int { return strings.Compare(a.Name+"/"+a.Region, b.Name+"/"+b.Region) })
	return c.pages.render(w, http.StatusOK, "jobs.html", c.newJobsView(s, project, "Jobs", v))
}

// newJobsView is newView with the side navigation on Jobs.
func (c *Console) newJobsView(s *session, project, title string, data any) *view {
	v := c.newView(s, project, title, data)
	v.Section = "jobs"
	return v
}

func completionStatus(s string) statusView {
	switch s {
	case "EXECUTION_SUCCEEDED":
		return statusView{Label: "Succeeded", Class: "ok"}
	case "EXECUTION_FAILED":
		return statusView{Label: "Failed", Class: "danger"}
	case "EXECUTION_CANCELLED":
		return statusView{Label: "Cancelled", Class: "muted"}
	}
	return statusView{Label: "Running", Class: "pending"}
}

// jobHead is the top of every job page: name, region, image and the tabs.
type jobHead struct {
	jobRef
	JobsLink       string
	Image          string
	ServiceAccount string
	Tasks          int32
	Parallelism    int32
	MaxRetries     int32
	Timeout        string
	Tabs           []tab
}

type loadedJob struct {
	Head jobHead
	Job  *apis.Job
	b    *backend
}

func (c *Console) loadJob(r *http.Request, s *session, current string) (*loadedJob, error) {
	ref := jobRef{Project: r.PathValue("project"), Region: r.PathValue("region"), Name: r.PathValue("job")}
	b, err := c.backend(r, s)
	if err != nil {
		return nil, err
	}
	j, err := b.core.GetJob(b.ctx, b.caller, ref.Project, ref.Region, ref.Name)
	if err != nil {
		return nil, err
	}
	es := j.Spec.Template.Spec
	h := jobHead{jobRef: ref, JobsLink: jobsURL(ref.Project), Tasks: es.TaskCount, Parallelism: es.Parallelism,
		ServiceAccount: es.Template.Spec.ServiceAccountName, Timeout: strconv.FormatInt(int64(es.Template.Spec.TimeoutSeconds), 10) + " s"}
	if h.Parallelism == 0 {
		h.Parallelism = h.Tasks
	}
	if es.Template.Spec.MaxRetries != nil {
		h.MaxRetries = *es.Template.Spec.MaxRetries
	}
	if cs := es.Template.Spec.Containers; len(cs) > 0 {
		h.Image = cs[0].Image
	}
	for _, t := range []struct{ label, path string }{{"Executions", ""}, {"Permissions", "permissions"}} {
		h.Tabs = append(h.Tabs, tab{Label: t.label, Link: ref.URL(t.path), Current: t.path == current})
	}
	return &loadedJob{Head: h, Job: j, b: b}, nil
}

type executionRow struct {
	Name, Link                                 string
	Status                                     statusView
	Created                                    time.Time
	Creator                                    string
	Succeeded, Failed, Cancelled, Retried, All int32
}

type jobExecutionsView struct {
	Head jobHead
	Rows []executionRow
	// Hidden says why executions are not listed, if they are not.
	Hidden string
}

func executionRowOf(ref jobRef, e *apis.Execution) executionRow {
	st := e.Status
	return executionRow{Name: e.Metadata.Name, Link: ref.URL("executions/" + url.PathEscape(e.Metadata.Name)),
		Status: executionStatus(st.Conditions), Created: timestamp(e.Metadata.CreationTimestamp),
		Creator: e.Metadata.Annotations[apis.AnnotationRunCreator], Succeeded: st.SucceededCount, Failed: st.FailedCount,
		Cancelled: st.CancelledCount, Retried: st.RetriedCount, All: e.Spec.TaskCount}
}

func (c *Console) jobExecutions(w http.ResponseWriter, r *http.Request, s *session) error {
	lj, err := c.loadJob(r, s, "")
	if err != nil {
		return err
	}
	v := jobExecutionsView{Head: lj.Head}
	exs, err := lj.b.core.ListExecutions(lj.b.ctx, lj.b.caller, lj.Head.Project, lj.Head.Region, lj.Head.Name)
	if e, ok := err.(*apiError); ok && e.Code == http.StatusForbidden {
		v.Hidden = "Viewing executions needs " + iam.PermExecutionsList + " on this job."
	} else if err != nil {
		return err
	}
	for i := range exs {
		v.Rows = append(v.Rows, executionRowOf(lj.Head.jobRef, &exs[i]))
	}
	return c.pages.render(w, http.StatusOK, "job.html", c.newJobsView(s, lj.Head.Project, lj.Head.Name+" · Executions", v))
}

type taskRow struct {
	Index    int32
	Status   statusView
	Retried  int32
	ExitCode string
	Started  time.Time
	Ended    time.Time
}

type jobExecutionView struct {
	Head      jobHead
	Execution executionRow
	Message   string
	Tasks     []taskRow
	Lines     []LogLine
	LogsNote  string
}

func (c *Console) jobExecution(w http.ResponseWriter, r *http.Request, s *session) error {
	lj, err := c.loadJob(r, s, "")
	if err != nil {
		return err
	}
	ref := lj.Head.jobRef
	name := r.PathValue("execution")
	ex, err := lj.b.core.GetExecution(lj.b.ctx, lj.b.caller, ref.Project, ref.Region, name)
	if err != nil {
		return err
	}
	if ex.Metadata.Labels[apis.LabelJob] != ref.Name {
		return notFound("Job %s has no execution %s.", ref.Name, name)
	}
	v := jobExecutionView{Head: lj.Head, Execution: executionRowOf(ref, ex), Message: executionStatus(ex.Status.Conditions).Message}
	tasks, err := lj.b.core.ListTasks(lj.b.ctx, lj.b.caller, ref.Project, ref.Region, name)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		row := taskRow{Index: t.Status.Index, Status: executionStatus(t.Status.Conditions), Retried: t.Status.Retried,
			Started: timestamp(t.Status.StartTime), Ended: timestamp(t.Status.CompletionTime)}
		if row.Status.Label == "Pending" {
			if state := t.Metadata.Labels[apis.LabelRunningState]; state == "Running" {
				row.Status = statusView{Label: "Running", Class: "pending"}
			}
		}
		if res := t.Status.LastAttemptResult; res != nil {
			row.ExitCode = strconv.Itoa(int(res.ExitCode))
		}
		v.Tasks = append(v.Tasks, row)
	}
	entries, err := lj.b.core.JobLogs(lj.b.ctx, lj.b.caller, ref.Project, ref.Region, ref.Name, name, 500)
	if e, ok := err.(*apiError); ok && e.Code == http.StatusForbidden {
		v.LogsNote = "Reading the tasks' output needs " + iam.PermJobsGet + " on this job."
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		v.Lines = append(v.Lines, LogLine{Time: e.Time, Revision: e.Revision, Instance: e.Instance, Text: e.Text})
	}
	return c.pages.render(w, http.StatusOK, "execution.html", c.newJobsView(s, ref.Project, name, v))
}

// ---- Permissions ----

type jobPermissionsView struct {
	Head          jobHead
	Project       string
	Etag          string
	CanRead       bool
	CanSet        bool
	Groups        []roleGroup
	ProjectHidden string
	GrantLink     string
	RemoveAction  string
	Conflict      string
	Grant         *grantFormView
}

type loadedJobPolicy struct {
	*loadedJob
	target *admin.Target
	policy *iam.Policy // nil: the principal may not read it
}

// loadJobPermissions reads what the job's Permissions tab shows, as the
// services' tab does (grouped by role, the project's grants inherited).
func (c *Console) loadJobPermissions(r *http.Request, s *session) (*loadedJobPolicy, *jobPermissionsView, error) {
	lj, err := c.loadJob(r, s, "permissions")
	if err != nil {
		return nil, nil, err
	}
	ref := lj.Head.jobRef
	t, err := lj.b.core.JobTarget(lj.b.ctx, ref.Project, ref.Region, ref.Name)
	if err != nil {
		return nil, nil, err
	}
	lp := &loadedJobPolicy{loadedJob: lj, target: t}
	v := &jobPermissionsView{Head: lj.Head, Project: ref.Project, GrantLink: ref.URL("permissions/grant"), RemoveAction: ref.URL("permissions/remove")}
	if p, err := lj.b.core.GetPolicy(lj.b.ctx, lj.b.caller, t); err == nil {
		lp.policy, v.CanRead, v.Etag = &p, true, p.Etag
	} else if e, ok := err.(*apiError); !ok || e.Code != http.StatusForbidden {
		return nil, nil, err
	}
	held, err := lj.b.core.TestPermissions(lj.b.ctx, lj.b.caller, t, []string{iam.PermJobsSetIamPolicy})
	if err != nil {
		return nil, nil, err
	}
	v.CanSet = slices.Contains(held, iam.PermJobsSetIamPolicy) && lp.policy != nil
	project, err := lj.b.projectPolicy(ref.Project)
	if e, ok := err.(*apiError); ok && e.Code == http.StatusForbidden {
		project = nil
		v.ProjectHidden = "Grants inherited from project " + ref.Project + " are not shown: viewing them needs " +
			iam.PermProjectsGetIamPolicy + " on the project."
	} else if err != nil {
		return nil, nil, err
	}
	v.Groups = c.groupByRole(lp.policy, project, v.CanSet)
	return lp, v, nil
}

func (c *Console) renderJobPermissions(w http.ResponseWriter, s *session, v *jobPermissionsView, status int) error {
	return c.pages.render(w, status, "jobpermissions.html", c.newJobsView(s, v.Project, v.Head.Name+" · Permissions", v))
}

func (c *Console) jobPermissions(w http.ResponseWriter, r *http.Request, s *session) error {
	_, v, err := c.loadJobPermissions(r, s)
	if err != nil {
		return err
	}
	return c.renderJobPermissions(w, s, v, http.StatusOK)
}

func errCannotGrantJob(ref jobRef) *pageError {
	return &pageError{Code: http.StatusForbidden, Title: "You don't have permission",
		Message: fmt.Sprintf("Changing access to job %s needs permission '%s' (Cloud Run Admin or Owner).", ref.Name, iam.PermJobsSetIamPolicy)}
}

func (c *Console) newJobGrantForm(ref jobRef, etag, members, role string) *grantFormView {
	g := &grantFormView{Action: ref.URL("permissions/grant"), Cancel: ref.URL("permissions"),
		Etag: etag, Members: members, Role: role, RoleGroups: c.roleOptions(role)}
	if r, ok := c.offered(role); ok {
		g.RoleDescription = r.Name + " — " + r.Description
	}
	return g
}

func (c *Console) jobGrantForm(w http.ResponseWriter, r *http.Request, s *session) error {
	lp, v, err := c.loadJobPermissions(r, s)
	if err != nil {
		return err
	}
	if !v.CanSet {
		return errCannotGrantJob(lp.Head.jobRef)
	}
	v.Grant = c.newJobGrantForm(lp.Head.jobRef, v.Etag, "", "")
	return c.renderJobPermissions(w, s, v, http.StatusOK)
}

// jobGrant adds the form's principals to the role on the policy the form
// was rendered from; a policy changed since is a conflict and nothing is
// written. allUsers and allAuthenticatedUsers are refused here: anyone on
// the internet running a job (as its service account) is never what a
// console click should do; the CLI can still grant it deliberately.
func (c *Console) jobGrant(w http.ResponseWriter, r *http.Request, s *session) error {
	lp, v, err := c.loadJobPermissions(r, s)
	if err != nil {
		return err
	}
	ref := lp.Head.jobRef
	if !v.CanSet {
		return errCannotGrantJob(ref)
	}
	rawMembers, roleName, etag := r.PostForm.Get("members"), r.PostForm.Get("role"), r.PostForm.Get("etag")
	form := c.newJobGrantForm(ref, etag, rawMembers, roleName)
	members, problems := parsePrincipals(rawMembers)
	for _, m := range publicMembers(members) {
		problems = append(problems, m+" cannot be granted on a job from the console: it would let anyone run the job as its service account.")
	}
	role, roleOK := c.offered(roleName)
	if !roleOK {
		form.RoleProblem = "Choose a role."
		if roleName != "" {
			form.RoleProblem = fmt.Sprintf("%s is not a role you can grant here; choose one from the list.", roleName)
		}
	}
	if len(problems) > 0 || !roleOK {
		form.MemberProblems, v.Grant = problems, form
		return c.renderJobPermissions(w, s, v, http.StatusBadRequest)
	}
	if !sameEtag(etag, v.Etag) {
		form.Conflict, form.Etag, v.Grant = true, v.Etag, form
		return c.renderJobPermissions(w, s, v, http.StatusConflict)
	}
	policy := clonePolicy(lp.policy)
	var added []string
	for _, m := range members {
		if policy.AddBinding(role.Name, m, nil) {
			added = append(added, m)
		}
	}
	if len(added) == 0 {
		c.setFlash(s, fmt.Sprintf("Nothing changed: %s already %s %s.", strings.Join(members, ", "), holdOrHolds(len(members)), role.Title))
		http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
		return nil
	}
	if policy.Version == 0 {
		policy.Version = iam.Version1
	}
	policy.Etag = etag
	_, err = lp.b.core.SetPolicy(lp.b.ctx, lp.b.caller, lp.target, &policy, "")
	if isAborted(err) {
		_, fresh, lerr := c.loadJobPermissions(r, s)
		if lerr != nil {
			return lerr
		}
		form.Conflict, form.Etag, fresh.Grant = true, fresh.Etag, form
		return c.renderJobPermissions(w, s, fresh, http.StatusConflict)
	}
	if e, ok := err.(*apiError); ok && e.Code == http.StatusBadRequest {
		form.FormProblem, v.Grant = e.Message, form
		return c.renderJobPermissions(w, s, v, http.StatusBadRequest)
	}
	if err != nil {
		return err
	}
	c.cfg.Log.Info("console: access granted", "job", ref.Name, "region", ref.Region, "project", ref.Project,
		"role", role.Name, "members", strings.Join(added, ","), "principal", s.principal.Member())
	c.setFlash(s, fmt.Sprintf("Granted %s (%s) to %s.", role.Title, role.Name, strings.Join(added, ", ")))
	http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
	return nil
}

func (c *Console) jobRemove(w http.ResponseWriter, r *http.Request, s *session) error {
	lp, v, err := c.loadJobPermissions(r, s)
	if err != nil {
		return err
	}
	ref := lp.Head.jobRef
	if !v.CanSet {
		return errCannotGrantJob(ref)
	}
	member, roleName, etag := r.PostForm.Get("member"), r.PostForm.Get("role"), r.PostForm.Get("etag")
	title := c.roleTitle(roleName)
	if !sameEtag(etag, v.Etag) {
		v.Conflict = fmt.Sprintf("%s was not removed from %s: the policy changed since this page was loaded. "+
			"The principals below are current; remove again if you still want to.", member, title)
		return c.renderJobPermissions(w, s, v, http.StatusConflict)
	}
	policy := clonePolicy(lp.policy)
	if !policy.RemoveBinding(roleName, member, nil, false) {
		c.setFlash(s, fmt.Sprintf("Nothing changed: %s does not hold %s on this job.", member, title))
		http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
		return nil
	}
	policy.Etag = etag
	_, err = lp.b.core.SetPolicy(lp.b.ctx, lp.b.caller, lp.target, &policy, "")
	if isAborted(err) {
		v.Conflict = fmt.Sprintf("%s was not removed from %s: someone changed the policy at the same moment. "+
			"Reload the page to see the current principals.", member, title)
		return c.renderJobPermissions(w, s, v, http.StatusConflict)
	}
	if err != nil {
		return err
	}
	c.cfg.Log.Info("console: access removed", "job", ref.Name, "region", ref.Region, "project", ref.Project,
		"role", roleName, "member", member, "principal", s.principal.Member())
	c.setFlash(s, fmt.Sprintf("Removed %s from %s.", member, title))
	http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
	return nil
}
