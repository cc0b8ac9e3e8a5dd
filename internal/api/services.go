package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// scope is the project and region a Cloud Run request addresses.
type scope struct {
	project state.Project
	region  string // "" or "-" for every region (list only)
}

// resolveScope finds the project named by the path (by ID or number, as gcloud
// may send either) and the region (path, then regional host, then default).
func (a *API) resolveScope(r *http.Request) (scope, error) {
	ns := r.PathValue("ns")
	p, err := a.findProject(r.Context(), ns)
	if err != nil {
		return scope{}, err
	}
	region := r.PathValue("region")
	if region == "" {
		region = regionFromHost(r.Host)
	}
	return scope{project: p, region: region}, nil
}

func (a *API) findProject(ctx context.Context, idOrNumber string) (state.Project, error) {
	var p state.Project
	_, err := state.Get(ctx, a.cfg.Store, state.ProjectKey(idOrNumber), &p)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return p, err
	}
	projects, _, err := state.List[state.Project](ctx, a.cfg.Store, state.ProjectsPrefix)
	if err != nil {
		return p, err
	}
	for _, p := range projects {
		if p.ProjectNumber == idOrNumber {
			return p, nil
		}
	}
	return p, notFound("Project '%s' not found.", idOrNumber)
}

// authorizeProject resolves the project the path names ({project}) and
// checks that c holds perm on it.
func (a *API) authorizeProject(r *http.Request, c *caller, perm string) (state.Project, error) {
	p, err := a.findProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return p, err
	}
	proj, err := a.projectLevel(r.Context(), p.ProjectID)
	if err != nil {
		return p, err
	}
	return p, a.check(c, perm, proj.Resource, proj)
}

// authorizeScope resolves a Cloud Run request's project and region and
// checks that c holds perm on the project.
func (a *API) authorizeScope(r *http.Request, c *caller, perm string) (scope, error) {
	sc, err := a.resolveScope(r)
	if err != nil {
		return sc, err
	}
	proj, err := a.projectLevel(r.Context(), sc.project.ProjectID)
	if err != nil {
		return sc, err
	}
	return sc, a.check(c, perm, proj.Resource, proj)
}

// prefix is the store prefix of a kind's keys in the scope: one region, or
// all of the project's when the region is "" or "-".
func (s scope) prefix(kind string) string {
	p := kind + s.project.ProjectID + "/"
	if s.region != "" && s.region != "-" {
		p += s.region + "/"
	}
	return p
}

// region returns the scope's single region for writes and reads by name.
func (s scope) singleRegion(def string) string {
	if s.region == "" || s.region == "-" {
		return def
	}
	return s.region
}

func (a *API) projectLevel(ctx context.Context, project string) (iam.Level, error) {
	pol, _, err := a.readPolicy(ctx, state.ProjectPolicyKey(project))
	if err != nil {
		return iam.Level{}, err
	}
	custom, err := a.customRoles(ctx, project) // roles.go
	return iam.Level{Resource: apis.ProjectResource(project), Policy: pol, Roles: custom}, err
}

// serviceLevels are the policies in force on a service: its project's, then its own.
func (a *API) serviceLevels(ctx context.Context, project, region, name string) ([]iam.Level, error) {
	proj, err := a.projectLevel(ctx, project)
	if err != nil {
		return nil, err
	}
	pol, _, err := a.readPolicy(ctx, state.ServicePolicyKey(project, region, name))
	if err != nil {
		return nil, err
	}
	return []iam.Level{proj, {Resource: apis.ServiceResource(project, region, name), Policy: pol}}, nil
}

// readPolicy returns the policy at key (nil if none) and its revision.
func (a *API) readPolicy(ctx context.Context, key string) (*iam.Policy, int64, error) {
	var p iam.Policy
	rev, err := state.Get(ctx, a.cfg.Store, key, &p)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return &p, rev, nil
}

// decorate fills what is derived rather than stored: URLs and resourceVersion.
func (a *API) decorate(s *apis.Service, region string, rev int64) {
	url := a.cfg.ServiceURL(s.Metadata.Namespace, region, s.Metadata.Name)
	s.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
	s.Metadata.SelfLink = "/apis/serving.knative.dev/v1/namespaces/" + s.Metadata.Namespace + "/services/" + s.Metadata.Name
	if s.Status.ObservedGeneration > 0 || s.Status.LatestCreatedRevisionName != "" {
		s.Status.URL = url
		s.Status.Address = &apis.Addressable{URL: url}
	}
	if s.Metadata.Annotations == nil {
		s.Metadata.Annotations = map[string]string{}
	}
	// What gcloud's describe reads: all ingress is accepted (Usher has no
	// internal-only networks), and the URLs the service answers on.
	s.Metadata.Annotations[apis.AnnotationIngress] = "all"
	s.Metadata.Annotations[apis.AnnotationIngressStatus] = "all"
	urls, _ := json.Marshal([]string{url})
	s.Metadata.Annotations[apis.AnnotationURLs] = string(urls)
}

// activeRevisions returns the revisions serving traffic in a project and
// region, keyed by name, for the Active condition gcloud lists.
func (a *API) activeRevisions(ctx context.Context, project, region string) (map[string]bool, error) {
	services, _, err := state.List[apis.Service](ctx, a.cfg.Store, state.ServicesPrefix+project+"/"+region+"/")
	if err != nil {
		return nil, err
	}
	active := map[string]bool{}
	for _, s := range services {
		for _, t := range s.Status.Traffic {
			if t.Percent > 0 {
				active[t.RevisionName] = true
			}
		}
	}
	return active, nil
}

// decorateRevision adds the derived Active condition.
func decorateRevision(rv *apis.Revision, active bool) {
	status, reason := apis.StatusFalse, "Reserve"
	if active {
		status, reason = apis.StatusTrue, ""
	}
	conds := rv.Status.Conditions[:0:0]
	for _, c := range rv.Status.Conditions {
		if c.Type != apis.ConditionActive {
			conds = append(conds, c)
		}
	}
	rv.Status.Conditions = append(conds, apis.Condition{Type: apis.ConditionActive, Status: status, Reason: reason, Severity: "Info"})
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	proj, err := a.projectLevel(r.Context(), sc.project.ProjectID)
	if err != nil {
		return err
	}
	if err := a.check(c, iam.PermServicesList, proj.Resource, proj); err != nil {
		return err
	}
	prefix := state.ServicesPrefix + sc.project.ProjectID + "/"
	if sc.region != "" && sc.region != "-" {
		prefix += sc.region + "/"
	}
	entries, listRev, err := a.cfg.Store.List(r.Context(), prefix)
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Service]{APIVersion: apis.ServingAPIVersion, Kind: "ServiceList",
		Metadata: apis.ListMeta{ResourceVersion: strconv.FormatInt(listRev, 10)}, Items: []apis.Service{}}
	for _, e := range entries {
		var s apis.Service
		if err := json.Unmarshal(e.Value, &s); err != nil {
			return err
		}
		if !selector(s.Metadata.Labels) {
			continue
		}
		a.decorate(&s, s.Metadata.Labels[apis.LabelLocation], e.Revision)
		list.Items = append(list.Items, s)
	}
	return writeJSON(w, http.StatusOK, list)
}

// labelSelector parses "k=v,k2=v2" (equality only).
func labelSelector(sel string) func(map[string]string) bool {
	if strings.TrimSpace(sel) == "" {
		return func(map[string]string) bool { return true }
	}
	want := map[string]string{}
	for _, part := range strings.Split(sel, ",") {
		k, v, _ := strings.Cut(part, "=")
		want[strings.TrimSpace(k)] = strings.TrimSpace(strings.TrimPrefix(v, "="))
	}
	return func(labels map[string]string) bool {
		for k, v := range want {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
}

func (a *API) getService(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	region := sc.singleRegion(a.cfg.DefaultRegion)
	name := r.PathValue("name")
	if err := a.authorizeService(r.Context(), c, iam.PermServicesGet, sc.project.ProjectID, region, name); err != nil {
		return err
	}
	s, rev, err := a.readService(r.Context(), sc.project.ProjectID, region, name)
	if err != nil {
		return err
	}
	a.decorate(s, region, rev)
	return writeJSON(w, http.StatusOK, s)
}

func (a *API) authorizeService(ctx context.Context, c *caller, perm, project, region, name string) error {
	levels, err := a.serviceLevels(ctx, project, region, name)
	if err != nil {
		return err
	}
	return a.check(c, perm, "namespaces/"+project+"/services/"+name, levels...)
}

func (a *API) readService(ctx context.Context, project, region, name string) (*apis.Service, int64, error) {
	var s apis.Service
	rev, err := state.Get(ctx, a.cfg.Store, state.ServiceKey(project, region, name), &s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, notFound("Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return nil, 0, err
	}
	return &s, rev, nil
}

func (a *API) createService(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	region := sc.singleRegion(a.cfg.DefaultRegion)
	project := sc.project.ProjectID
	proj, err := a.projectLevel(r.Context(), project)
	if err != nil {
		return err
	}
	if err := a.check(c, iam.PermServicesCreate, "namespaces/"+project+"/services", proj); err != nil {
		return err
	}
	var s apis.Service
	if err := decodeBody(r, &s); err != nil {
		return err
	}
	if err := a.prepareService(&s, nil, project, region, c); err != nil {
		return err
	}
	if err := a.checkInvokerGuardrail(r.Context(), project, &s, nil); err != nil { // guardrails.go
		return err
	}
	rev, err := state.Put(r.Context(), a.cfg.Store, state.ServiceKey(project, region, s.Metadata.Name), &s, store.MustNotExist)
	if errors.Is(err, store.ErrConflict) {
		return alreadyExists("Resource '%s' already exists.", s.Metadata.Name)
	}
	if err != nil {
		return err
	}
	a.audit(r.Context(), c, audit.KindServiceCreate, iam.PermServicesCreate, apis.ServiceResource(project, region, s.Metadata.Name), serviceDetails(&s))
	a.decorate(&s, region, rev)
	return writeJSON(w, http.StatusOK, s)
}

// prepareService validates an incoming service and fills what the server owns.
// old is the stored service on replace, nil on create.
func (a *API) prepareService(s *apis.Service, old *apis.Service, project, region string, c *caller) error {
	if s.APIVersion != "" && s.APIVersion != apis.ServingAPIVersion {
		return invalidArgument("apiVersion %q is not supported; use %s", s.APIVersion, apis.ServingAPIVersion)
	}
	if s.Kind != "" && s.Kind != apis.KindService {
		return invalidArgument("kind %q is not supported; use %s", s.Kind, apis.KindService)
	}
	if ns := s.Metadata.Namespace; ns != "" && ns != project && ns != apis.ProjectNumber(project) {
		return invalidArgument("metadata.namespace %q does not match the project %q in the request", ns, project)
	}
	s.Status = apis.ServiceStatus{} // clients send status back; it is ours
	s.SetDefaults(project, apis.DefaultServiceAccount(project))
	if err := s.Validate(); err != nil {
		return invalidField(err)
	}
	if err := validateLimits(s); err != nil {
		return err
	}
	now := a.cfg.Now().UTC().Format(time.RFC3339)
	if s.Metadata.Labels == nil {
		s.Metadata.Labels = map[string]string{}
	}
	s.Metadata.Labels[apis.LabelLocation] = region
	if s.Metadata.Annotations == nil {
		s.Metadata.Annotations = map[string]string{}
	}
	s.Metadata.Annotations[apis.AnnotationLastModifier] = c.Principal.Email
	if old == nil {
		s.Metadata.UID = newUID()
		s.Metadata.Generation = 1
		s.Metadata.CreationTimestamp = now
		s.Metadata.Annotations[apis.AnnotationCreator] = c.Principal.Email
		return nil
	}
	s.Metadata.UID = old.Metadata.UID
	s.Metadata.CreationTimestamp = old.Metadata.CreationTimestamp
	if creator := old.Metadata.Annotations[apis.AnnotationCreator]; creator != "" {
		s.Metadata.Annotations[apis.AnnotationCreator] = creator
	}
	s.Metadata.Generation = old.Metadata.Generation
	if !sameJSON(s.Spec, old.Spec) {
		s.Metadata.Generation++
	}
	s.Status = old.Status
	return nil
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func newUID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (a *API) replaceService(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	region := sc.singleRegion(a.cfg.DefaultRegion)
	project, name := sc.project.ProjectID, r.PathValue("name")
	if err := a.authorizeService(r.Context(), c, iam.PermServicesUpdate, project, region, name); err != nil {
		return err
	}
	var s apis.Service
	if err := decodeBody(r, &s); err != nil {
		return err
	}
	if s.Metadata.Name != "" && s.Metadata.Name != name {
		return invalidArgument("metadata.name %q does not match the service %q in the path", s.Metadata.Name, name)
	}
	s.Metadata.Name = name
	old, rev, err := a.readService(r.Context(), project, region, name)
	if err != nil {
		return err
	}
	if rv := s.Metadata.ResourceVersion; rv != "" && rv != strconv.FormatInt(rev, 10) {
		return aborted("The service '%s' was modified concurrently (resourceVersion %s is stale). Read it again and retry.", name, rv)
	}
	if err := a.prepareService(&s, old, project, region, c); err != nil {
		return err
	}
	if err := a.checkInvokerGuardrail(r.Context(), project, &s, old); err != nil { // guardrails.go
		return err
	}
	newRev, err := state.Put(r.Context(), a.cfg.Store, state.ServiceKey(project, region, name), &s, rev)
	if errors.Is(err, store.ErrConflict) {
		return aborted("The service '%s' was modified concurrently. Read it again and retry.", name)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(r.Context(), newRev); err != nil {
		return err
	}
	a.audit(r.Context(), c, audit.KindServiceReplace, iam.PermServicesUpdate, apis.ServiceResource(project, region, name), serviceDetails(&s))
	a.decorate(&s, region, newRev)
	return writeJSON(w, http.StatusOK, s)
}

func (a *API) deleteService(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	region := sc.singleRegion(a.cfg.DefaultRegion)
	project, name := sc.project.ProjectID, r.PathValue("name")
	if err := a.authorizeService(r.Context(), c, iam.PermServicesDelete, project, region, name); err != nil {
		return err
	}
	s, rev, err := a.readService(r.Context(), project, region, name)
	if err != nil {
		return err
	}
	// The service is gone (and so unroutable) from here on; its policy and
	// revisions go with it, as on Cloud Run, so a new service of the same name
	// starts private.
	if err := a.removeService(r.Context(), project, region, name, rev); err != nil {
		return err
	}
	a.audit(r.Context(), c, audit.KindServiceDelete, iam.PermServicesDelete, apis.ServiceResource(project, region, name), serviceDetails(s))
	return writeJSON(w, http.StatusOK, map[string]any{
		"apiVersion": "v1", "kind": "Status", "status": "Success",
		"details": map[string]any{"name": name, "group": "serving.knative.dev", "kind": "services", "uid": s.Metadata.UID},
	})
}

func (a *API) listRevisions(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.authorizeScope(r, c, iam.PermRevisionsList)
	if err != nil {
		return err
	}
	project := sc.project.ProjectID
	prefix := sc.prefix(state.RevisionsPrefix)
	revs, _, err := state.List[apis.Revision](r.Context(), a.cfg.Store, prefix)
	if err != nil {
		return err
	}
	selector := labelSelector(r.URL.Query().Get("labelSelector"))
	list := apis.List[apis.Revision]{APIVersion: apis.ServingAPIVersion, Kind: "RevisionList", Items: []apis.Revision{}}
	active := map[string]map[string]bool{} // region → active revisions
	for _, rv := range revs {
		if !selector(rv.Metadata.Labels) {
			continue
		}
		region := rv.Metadata.Labels[apis.LabelLocation]
		if active[region] == nil {
			if active[region], err = a.activeRevisions(r.Context(), project, region); err != nil {
				return err
			}
		}
		decorateRevision(&rv, active[region][rv.Metadata.Name])
		list.Items = append(list.Items, rv)
	}
	return writeJSON(w, http.StatusOK, list)
}

func (a *API) getRevision(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	region := sc.singleRegion(a.cfg.DefaultRegion)
	project, name := sc.project.ProjectID, r.PathValue("name")
	proj, err := a.projectLevel(r.Context(), project)
	if err != nil {
		return err
	}
	if err := a.check(c, iam.PermRevisionsGet, "namespaces/"+project+"/revisions/"+name, proj); err != nil {
		return err
	}
	var rv apis.Revision
	_, err = state.Get(r.Context(), a.cfg.Store, state.RevisionKey(project, region, name), &rv)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("Resource '%s' of kind 'REVISION' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return err
	}
	active, err := a.activeRevisions(r.Context(), project, region)
	if err != nil {
		return err
	}
	decorateRevision(&rv, active[rv.Metadata.Name])
	return writeJSON(w, http.StatusOK, rv)
}

// deleteRevision deletes a revision that serves no traffic (Cloud Run refuses
// to delete one that does, or that is its service's latest).
func (a *API) deleteRevision(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	region := sc.singleRegion(a.cfg.DefaultRegion)
	project, name := sc.project.ProjectID, r.PathValue("name")
	var rv apis.Revision
	revRev, err := state.Get(ctx, a.cfg.Store, state.RevisionKey(project, region, name), &rv)
	if errors.Is(err, store.ErrNotFound) {
		proj, perr := a.projectLevel(ctx, project)
		if perr != nil {
			return perr
		}
		if err := a.check(c, iam.PermRevisionsDelete, "namespaces/"+project+"/revisions/"+name, proj); err != nil {
			return err
		}
		return notFound("Resource '%s' of kind 'REVISION' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return err
	}
	service := rv.Metadata.Labels[apis.LabelService]
	if err := a.authorizeService(ctx, c, iam.PermRevisionsDelete, project, region, service); err != nil {
		return err
	}
	if s, _, err := a.readService(ctx, project, region, service); err == nil {
		if s.Status.LatestCreatedRevisionName == name || s.Status.LatestReadyRevisionName == name {
			return newError(http.StatusBadRequest, "FAILED_PRECONDITION", "Revision '%s' is the latest revision of service '%s' and cannot be deleted.", name, service)
		}
		for _, t := range append(s.Spec.Traffic, s.Status.Traffic...) {
			if t.RevisionName == name {
				return newError(http.StatusBadRequest, "FAILED_PRECONDITION", "Revision '%s' is referenced by the traffic of service '%s' and cannot be deleted; move its traffic and tags first.", name, service)
			}
		}
	}
	last, err := a.cfg.Store.Delete(ctx, state.RevisionKey(project, region, name), revRev)
	if errors.Is(err, store.ErrConflict) {
		return aborted("The revision '%s' was modified concurrently. Retry the deletion.", name)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(ctx, last); err != nil {
		return err
	}
	a.audit(ctx, c, audit.KindRevisionDelete, iam.PermRevisionsDelete, apis.ServiceResource(project, region, service), &audit.Details{Revision: name})
	return writeJSON(w, http.StatusOK, map[string]any{
		"apiVersion": "v1", "kind": "Status", "status": "Success",
		"details": map[string]any{"name": name, "group": "serving.knative.dev", "kind": "revisions", "uid": rv.Metadata.UID},
	})
}

// readLogs answers GET …/services/NAME:logs[?limit=N&revision=R]: the
// newest lines the service's instances printed, oldest first. Reading logs
// needs what reading the service needs.
func (a *API) readLogs(w http.ResponseWriter, r *http.Request, c *caller, name string) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	region := sc.singleRegion(a.cfg.DefaultRegion)
	project := sc.project.ProjectID
	if err := a.authorizeService(r.Context(), c, iam.PermServicesGet, project, region, name); err != nil {
		return err
	}
	if _, _, err := a.readService(r.Context(), project, region, name); err != nil {
		return err
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > logs.DefaultLinesPerService {
			return invalidArgument("limit must be a whole number from 1 to %d", logs.DefaultLinesPerService)
		}
		limit = n
	}
	var keep func(logs.Entry) bool
	if rev := r.URL.Query().Get("revision"); rev != "" {
		keep = func(e logs.Entry) bool { return e.Revision == rev }
	}
	entries := []logs.Entry{}
	if a.cfg.Logs != nil {
		if got := a.cfg.Logs.Read(project+"/"+region+"/"+name, limit, keep); got != nil {
			entries = got
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}

// validateLimits checks --cpu and --memory the way the runtimes will read them.
func validateLimits(s *apis.Service) error {
	r := s.Spec.Template.Spec.Containers[0].Resources
	if r == nil {
		return nil
	}
	if v := r.Limits["cpu"]; v != "" {
		if _, err := runtime.ParseCPU(v); err != nil {
			return invalidField(&apis.FieldError{Path: "spec.template.spec.containers[0].resources.limits.cpu", Message: err.Error()})
		}
	}
	if v := r.Limits["memory"]; v != "" {
		if _, err := runtime.ParseMemory(v); err != nil {
			return invalidField(&apis.FieldError{Path: "spec.template.spec.containers[0].resources.limits.memory", Message: err.Error()})
		}
	}
	return nil
}
