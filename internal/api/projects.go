package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
)

// Resource Manager v1 and v3 projects (admin/projects.go decides): what
// gcloud projects create|list|describe|update|delete|undelete call. Every
// change is done when it is acknowledged, so the operations the API returns
// are finished, and reading one answers the project as it is now.

func (a *API) routesProjects() {
	m := a.mux
	m.Handle("GET /v1/projects", a.authed(a.listProjectsV1))
	m.Handle("POST /v1/projects", a.authed(a.createProjectV1))
	m.Handle("PUT /v1/projects/{project}", a.authed(a.updateProjectV1))
	m.Handle("DELETE /v1/projects/{project}", a.authed(a.deleteProjectV1))
	m.Handle("GET /v1/operations/{op}", a.authed(a.getProjectOperation))

	m.Handle("GET /v3/projects", a.authed(a.listProjectsV3))
	m.Handle("GET /v3/projects:search", a.authed(a.listProjectsV3))
	m.Handle("POST /v3/projects", a.authed(a.createProjectV3))
	m.Handle("GET /v3/projects/{project}", a.authed(a.getProjectV3))
	m.Handle("PATCH /v3/projects/{project}", a.authed(a.updateProjectV3))
	m.Handle("DELETE /v3/projects/{project}", a.authed(a.deleteProjectV3))
	m.Handle("POST /v3/projects/{project}", a.authed(a.projectMethodV3))
	m.Handle("GET /v3/operations/{op}", a.authed(a.getProjectOperation))
}

// projectBody is a project as clients send it, in either version's shape;
// the output-only fields are accepted (gcloud's update sends the project
// back as it read it) and ignored.
type projectBody struct {
	ProjectID   string            `json:"projectId"`
	Name        string            `json:"name"`        // v1: display name; v3: projects/NUMBER
	DisplayName string            `json:"displayName"` // v3
	Labels      map[string]string `json:"labels"`
	Parent      json.RawMessage   `json:"parent"` // v1 {type,id}; v3 "folders/N"
	Tags        map[string]string `json:"tags"`
	Etag        string            `json:"etag"`
	// Output only.
	ProjectNumber  string `json:"projectNumber"`
	LifecycleState string `json:"lifecycleState"`
	State          string `json:"state"`
	CreateTime     string `json:"createTime"`
	UpdateTime     string `json:"updateTime"`
	DeleteTime     string `json:"deleteTime"`
}

// decodeProject reads a project body, refusing fields Usher does not know
// (a tag or a parent that would silently not apply).
func decodeProject(r *http.Request) (projectBody, error) {
	var p projectBody
	b, err := readBody(r)
	if err != nil || b == nil {
		return p, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return p, invalidArgument("Invalid JSON payload received. %v", err)
	}
	if len(p.Tags) > 0 {
		return p, invalidField(&apis.FieldError{Path: "tags", Message: "Usher has no resource tags; leave them out"})
	}
	return p, nil
}

// parent is the body's parent as a resource name ("" when none).
func (p projectBody) parent() string {
	if len(p.Parent) == 0 || string(p.Parent) == "null" {
		return ""
	}
	var name string
	if json.Unmarshal(p.Parent, &name) == nil {
		return name
	}
	var v1 struct{ Type, ID string }
	json.Unmarshal(p.Parent, &v1)
	return strings.TrimSpace(v1.Type + "s/" + v1.ID)
}

// projectV1 is a project in Resource Manager v1's shape (Usher's own
// record, less what Google's shape lacks).
func projectV1(p state.Project) state.Project {
	p.Creator = ""
	return p
}

// projectOp is a finished operation whose response is the project.
func projectOp(kind string, p state.Project, rev int64, v3 bool) map[string]any {
	var resp map[string]any
	if v3 {
		resp = projectV3(p, rev)
		resp["@type"] = "type.googleapis.com/google.cloud.resourcemanager.v3.Project"
	} else {
		b, _ := json.Marshal(projectV1(p))
		json.Unmarshal(b, &resp)
		resp["@type"] = "type.googleapis.com/google.cloudresourcemanager.v1.Project"
	}
	return map[string]any{"name": "operations/" + kind + "." + p.ProjectID, "done": true, "response": resp}
}

// projectV3 is a project in Resource Manager v3's shape.
func projectV3(p state.Project, rev int64) map[string]any {
	st := p.LifecycleState
	v := map[string]any{
		"name": "projects/" + p.ProjectNumber, "projectId": p.ProjectID, "state": st,
		"displayName": p.Name, "createTime": p.CreateTime, "etag": iam.Etag(rev),
	}
	if len(p.Labels) > 0 {
		v["labels"] = p.Labels
	}
	return v
}

func (a *API) createProject(r *http.Request, c *caller, v3 bool) (state.Project, int64, error) {
	body, err := decodeProject(r)
	if err != nil {
		return state.Project{}, 0, err
	}
	name := body.Name
	if v3 {
		name = body.DisplayName
	}
	return a.cfg.Core.CreateProject(r.Context(), c, admin.ProjectSpec{ProjectID: body.ProjectID, DisplayName: name, Labels: body.Labels, Parent: body.parent()})
}

func (a *API) createProjectV1(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, rev, err := a.createProject(r, c, false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectOp("cp", p, rev, false))
}

func (a *API) createProjectV3(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, rev, err := a.createProject(r, c, true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectOp("cp", p, rev, true))
}

// getProjectV1 answers GET /v1/projects/ID (any state).
func (a *API) getProjectV1(w http.ResponseWriter, r *http.Request, c *caller, id string) error {
	p, _, err := a.cfg.Core.GetProject(r.Context(), c, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectV1(p))
}

func (a *API) getProjectV3(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, rev, err := a.cfg.Core.GetProject(r.Context(), c, r.PathValue("project"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectV3(p, rev))
}

func (a *API) listProjectsV1(w http.ResponseWriter, r *http.Request, c *caller) error {
	list, err := a.cfg.Core.ListProjects(r.Context(), c, r.URL.Query().Get("filter"))
	if err != nil {
		return err
	}
	out := make([]state.Project, 0, len(list))
	for _, l := range list {
		out = append(out, projectV1(l.Project))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"projects": out})
}

// listProjectsV3 answers projects.list (which needs a parent: Usher has
// none) and projects.search (query in the v1 filter's language).
func (a *API) listProjectsV3(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	if !strings.HasSuffix(r.URL.Path, ":search") {
		return invalidField(&apis.FieldError{Path: "parent", Message: "Usher has no organizations or folders; use projects:search (gcloud projects list) instead"})
	}
	list, err := a.cfg.Core.ListProjects(r.Context(), c, q.Get("query"))
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(list))
	for _, l := range list {
		out = append(out, projectV3(l.Project, l.Revision))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"projects": out})
}

func (a *API) updateProjectV1(w http.ResponseWriter, r *http.Request, c *caller) error {
	body, err := decodeProject(r)
	if err != nil {
		return err
	}
	if body.parent() != "" {
		return invalidField(&apis.FieldError{Path: "parent", Message: "Usher has no organizations or folders"})
	}
	p, _, err := a.cfg.Core.UpdateProject(r.Context(), c, r.PathValue("project"), body.Name, body.Labels, 0)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectV1(p))
}

func (a *API) updateProjectV3(w http.ResponseWriter, r *http.Request, c *caller) error {
	body, err := decodeProject(r)
	if err != nil {
		return err
	}
	ctx, id := r.Context(), r.PathValue("project")
	cur, rev, err := a.cfg.Core.GetProject(ctx, c, id)
	if err != nil {
		return err
	}
	name, labels := cur.Name, cur.Labels
	for _, f := range strings.Split(r.URL.Query().Get("updateMask"), ",") {
		switch strings.TrimSpace(f) {
		case "":
		case "displayName", "display_name":
			name = body.DisplayName
		case "labels":
			labels = body.Labels
		default:
			return invalidField(&apis.FieldError{Path: "updateMask", Message: "Usher can change a project's displayName and labels, not " + f})
		}
	}
	if body.Etag != "" {
		if rev, err = iam.ParseEtag(body.Etag); err != nil {
			return invalidField(&apis.FieldError{Path: "etag", Message: err.Error()})
		}
	}
	p, rev, err := a.cfg.Core.UpdateProject(ctx, c, id, name, labels, rev)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectOp("up", p, rev, true))
}

func (a *API) deleteProjectV1(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, _, err := a.cfg.Core.DeleteProject(r.Context(), c, r.PathValue("project")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) deleteProjectV3(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, rev, err := a.cfg.Core.DeleteProject(r.Context(), c, r.PathValue("project"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectOp("dp", p, rev, true))
}

// undeleteProject answers v1's and v3's projects/ID:undelete.
func (a *API) undeleteProject(w http.ResponseWriter, r *http.Request, c *caller, id string, v3 bool) error {
	p, rev, err := a.cfg.Core.UndeleteProject(r.Context(), c, id)
	if err != nil {
		return err
	}
	if !v3 {
		return writeJSON(w, http.StatusOK, map[string]any{})
	}
	return writeJSON(w, http.StatusOK, projectOp("ud", p, rev, true))
}

// getAncestry answers v1's projects/ID:getAncestry: a project is its own
// only ancestor (Usher has no organizations or folders).
func (a *API) getAncestry(w http.ResponseWriter, r *http.Request, c *caller, id string) error {
	p, _, err := a.cfg.Core.GetProject(r.Context(), c, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"ancestor": []any{
		map[string]any{"resourceId": map[string]string{"type": "project", "id": p.ProjectID}},
	}})
}

// projectMethodV3 serves v3's custom methods on a project.
func (a *API) projectMethodV3(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("project"))
	if method == "undelete" {
		return a.undeleteProject(w, r, c, id, true)
	}
	return a.policyMethod(w, r, c, method, func() (*admin.Target, error) {
		return a.cfg.Core.ProjectTarget(r.Context(), id)
	})
}

// getProjectOperation answers operations/KIND.ID: every project operation
// is finished, and its response is the project as it is now.
func (a *API) getProjectOperation(w http.ResponseWriter, r *http.Request, c *caller) error {
	kind, id, ok := strings.Cut(r.PathValue("op"), ".")
	switch {
	case !ok:
		return notFound("Operation 'operations/%s' not found.", r.PathValue("op"))
	case kind != "cp" && kind != "up" && kind != "dp" && kind != "ud":
		return notFound("Operation 'operations/%s' not found.", r.PathValue("op"))
	}
	p, rev, err := a.cfg.Core.GetProject(r.Context(), c, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, projectOp(kind, p, rev, strings.HasPrefix(r.URL.Path, "/v3/")))
}
