package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/history"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// ServiceList is a listing of services and the store revision it reflects.
type ServiceList struct {
	Items    []apis.Service
	Revision int64
	// Revisions are each item's own store revision (its etag).
	Revisions []int64
}

// ListServices lists a project's services in region (AllRegions: every
// region), decorated, for holders of run.services.list on the project.
func (c *Core) ListServices(ctx context.Context, caller *Caller, project, region string) (*ServiceList, error) {
	return c.listServicesAs(ctx, caller, iam.PermServicesList, project, region)
}

// ListConfigurations lists the services' Configurations (v1's view of
// their templates), for holders of run.configurations.list.
func (c *Core) ListConfigurations(ctx context.Context, caller *Caller, project, region string) (*ServiceList, error) {
	return c.listServicesAs(ctx, caller, iam.PermRunConfigurationsList, project, region)
}

// ListRoutes lists the services' Routes (v1's view of their traffic), for
// holders of run.routes.list.
func (c *Core) ListRoutes(ctx context.Context, caller *Caller, project, region string) (*ServiceList, error) {
	return c.listServicesAs(ctx, caller, iam.PermRunRoutesList, project, region)
}

// GetConfiguration reads a service for its Configuration, for holders of
// run.configurations.get.
func (c *Core) GetConfiguration(ctx context.Context, caller *Caller, project, region, name string) (*apis.Service, error) {
	s, _, err := c.getServiceAs(ctx, caller, iam.PermRunConfigurationsGet, project, region, name)
	return s, err
}

// GetRoute reads a service for its Route, for holders of run.routes.get.
func (c *Core) GetRoute(ctx context.Context, caller *Caller, project, region, name string) (*apis.Service, error) {
	s, _, err := c.getServiceAs(ctx, caller, iam.PermRunRoutesGet, project, region, name)
	return s, err
}

func (c *Core) listServicesAs(ctx context.Context, caller *Caller, perm, project, region string) (*ServiceList, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, perm)
	if err != nil {
		return nil, err
	}
	if region, err = c.Region(region, true); err != nil {
		return nil, err
	}
	prefix := state.ServicesPrefix + p.ProjectID + "/"
	if region != AllRegions {
		prefix += region + "/"
	}
	entries, listRev, err := c.cfg.Store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := &ServiceList{Items: make([]apis.Service, 0, len(entries)), Revision: listRev}
	for _, e := range entries {
		var s apis.Service
		if err := json.Unmarshal(e.Value, &s); err != nil {
			return nil, err
		}
		c.decorate(&s, e.Revision)
		out.Items = append(out.Items, s)
		out.Revisions = append(out.Revisions, e.Revision)
	}
	return out, nil
}

// GetService reads a service, decorated, for holders of run.services.get.
func (c *Core) GetService(ctx context.Context, caller *Caller, project, region, name string) (*apis.Service, int64, error) {
	return c.getServiceAs(ctx, caller, iam.PermServicesGet, project, region, name)
}

func (c *Core) getServiceAs(ctx context.Context, caller *Caller, perm, project, region, name string) (*apis.Service, int64, error) {
	p, region, err := c.serviceScope(ctx, project, region, name)
	if err != nil {
		return nil, 0, err
	}
	if err := c.authorizeService(ctx, caller, perm, p.ProjectID, region, name); err != nil {
		return nil, 0, err
	}
	s, rev, err := c.readService(ctx, p.ProjectID, region, name)
	if err != nil {
		return nil, 0, err
	}
	c.decorate(s, rev)
	return s, rev, nil
}

// WaitServiceChange blocks until the stored service changes after rev; false
// when ctx ends first. The caller has already read the service.
func (c *Core) WaitServiceChange(ctx context.Context, project, region, name string, rev int64) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case _, ok := <-c.cfg.Store.Watch(ctx, state.ServiceKey(project, region, name), rev):
		return ok && ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// serviceScope resolves the project and region of a request about one
// service and checks its name.
func (c *Core) serviceScope(ctx context.Context, project, region, name string) (state.Project, string, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return p, "", err
	}
	if region, err = c.Region(region, false); err != nil {
		return p, "", err
	}
	if err := apis.ValidateServiceName(name); err != nil {
		return p, "", InvalidField(err)
	}
	return p, region, nil
}

func (c *Core) readService(ctx context.Context, project, region, name string) (*apis.Service, int64, error) {
	var s apis.Service
	rev, err := state.Get(ctx, c.cfg.Store, state.ServiceKey(project, region, name), &s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, NotFound("Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return nil, 0, err
	}
	return &s, rev, nil
}

// decorate fills what is derived rather than stored: URLs and resourceVersion.
func (c *Core) decorate(s *apis.Service, rev int64) {
	region := s.Metadata.Labels[apis.LabelLocation]
	url := c.cfg.ServiceURL(s.Metadata.Namespace, region, s.Metadata.Name)
	s.Metadata.ResourceVersion = revisionString(rev)
	s.Metadata.SelfLink = "/apis/serving.knative.dev/v1/namespaces/" + s.Metadata.Namespace + "/services/" + s.Metadata.Name
	if s.Metadata.Annotations == nil {
		s.Metadata.Annotations = map[string]string{}
	}
	// What gcloud's describe reads: the ingress setting in force, and the
	// URLs the service answers on.
	s.Metadata.Annotations[apis.AnnotationIngress] = s.Ingress()
	s.Metadata.Annotations[apis.AnnotationIngressStatus] = s.Ingress()
	if s.DefaultURLDisabled() {
		// As on Cloud Run: no URL is shown, since none answers (the
		// gateway routes none of the service's hosts, tags' included).
		s.Status.URL, s.Status.Address = "", nil
		for i := range s.Status.Traffic {
			s.Status.Traffic[i].URL = ""
		}
		delete(s.Metadata.Annotations, apis.AnnotationURLs)
		return
	}
	if s.Status.ObservedGeneration > 0 || s.Status.LatestCreatedRevisionName != "" {
		s.Status.URL = url
		s.Status.Address = &apis.Addressable{URL: url}
	}
	urls, _ := json.Marshal([]string{url})
	s.Metadata.Annotations[apis.AnnotationURLs] = string(urls)
}

// ServiceURL is the URL a service answers on.
func (c *Core) ServiceURL(project, region, name string) string {
	return c.cfg.ServiceURL(project, region, name)
}

// WriteMode says what a service write may do.
type WriteMode int

const (
	// Create makes a new service; one that exists is ALREADY_EXISTS.
	Create WriteMode = iota
	// Replace changes an existing service; a missing one is NOT_FOUND.
	Replace
	// Upsert replaces, or creates when missing (v2 allowMissing).
	Upsert
)

// ServiceWrite is one create or replace of a service, whichever API asks.
type ServiceWrite struct {
	Project, Region, Name string
	Mode                  WriteMode
	// Build returns the service to store (in Knative v1 form) from the
	// stored one (nil when there is none) and its store revision.
	Build func(old *apis.Service, rev int64) (*apis.Service, error)
	// Etag (v2) or ResourceVersion (v1), when set, must be the stored
	// service's current one, else ABORTED.
	Etag, ResourceVersion string
	// ForceNewRevision makes a new revision even if the template is unchanged.
	ForceNewRevision bool
	// ValidateOnly checks everything and writes nothing.
	ValidateOnly bool
}

// WriteResult is a written (or validated) service.
type WriteResult struct {
	Service *apis.Service // decorated
	// Revision is the store revision of the write (0 for ValidateOnly).
	Revision int64
	// Created is true when there was no service before.
	Created bool
}

// WriteService creates or replaces a service: the one path every API
// version and the console take. Besides run.services.create or update it
// checks what the new service would do that the caller must be allowed:
// run as a service account (iam.serviceAccounts.actAs on it), run a host
// executable, and turn the invoker check off (run.services.setIamPolicy).
func (c *Core) WriteService(ctx context.Context, caller *Caller, w ServiceWrite) (*WriteResult, error) {
	p, region, err := c.serviceScope(ctx, w.Project, w.Region, w.Name)
	if err != nil {
		return nil, err
	}
	project := p.ProjectID
	old, rev, err := c.readService(ctx, project, region, w.Name)
	switch {
	case err == nil:
		if w.Mode == Create {
			if err := c.authorizeService(ctx, caller, iam.PermServicesCreate, project, region, w.Name); err != nil {
				return nil, err
			}
			return nil, AlreadyExists("Resource '%s' already exists.", w.Name)
		}
		if err := c.authorizeService(ctx, caller, iam.PermServicesUpdate, project, region, w.Name); err != nil {
			return nil, err
		}
	case IsNotFound(err) && w.Mode != Replace:
		old = nil
		proj, err := c.projectLevel(ctx, project)
		if err != nil {
			return nil, err
		}
		if err := c.authorize(caller, iam.PermServicesCreate, "projects/"+project+"/locations/"+region, proj); err != nil {
			return nil, err
		}
	case IsNotFound(err):
		if aerr := c.authorizeService(ctx, caller, iam.PermServicesUpdate, project, region, w.Name); aerr != nil {
			return nil, aerr
		}
		return nil, err
	default:
		return nil, err
	}
	stale := func() error {
		return Aborted("The service '%s' was modified concurrently (etag %s is stale). Read it again and retry.", w.Name, w.Etag+w.ResourceVersion)
	}
	if w.ResourceVersion != "" && w.ResourceVersion != revisionString(rev) {
		return nil, stale()
	}
	if _, err := etagRevision(w.Etag, rev, stale); err != nil {
		return nil, err
	}
	s, err := w.Build(old, rev)
	if err != nil {
		return nil, err
	}
	s.Metadata.Name = w.Name
	if err := c.prepareService(s, old, project, region, caller); err != nil {
		return nil, err
	}
	if w.ForceNewRevision && old != nil && s.Metadata.Generation == old.Metadata.Generation {
		s.Metadata.Generation++
	}
	if err := c.checkServiceAuthority(ctx, caller, project, region, s, old); err != nil { // authority.go
		return nil, err
	}
	if err := c.checkInvokerGuardrail(ctx, project, s, old); err != nil { // guardrails.go
		return nil, err
	}
	if err := c.checkSecretRefs(ctx, p, s); err != nil { // secrets.go
		return nil, err
	}
	if w.ValidateOnly {
		c.decorate(s, 0)
		return &WriteResult{Service: s, Created: old == nil}, nil
	}
	expected, kind, perm := rev, audit.KindServiceReplace, iam.PermServicesUpdate
	if old == nil {
		expected, kind, perm = store.MustNotExist, audit.KindServiceCreate, iam.PermServicesCreate
	}
	newRev, err := c.commit(ctx, caller, change{
		writes: []write{{key: state.ServiceKey(project, region, w.Name), value: s, expected: expected, conflict: func() error {
			if old == nil {
				return AlreadyExists("Resource '%s' already exists.", w.Name)
			}
			return Aborted("The service '%s' was modified concurrently. Read it again and retry.", w.Name)
		}}},
		record: audit.Record{Kind: kind, Permission: perm, Resource: apis.ServiceResource(project, region, w.Name), Details: serviceDetails(s)},
	})
	if err != nil {
		return nil, err
	}
	c.decorate(s, newRev)
	return &WriteResult{Service: s, Revision: newRev, Created: old == nil}, nil
}

// serviceDetails describes a written service for the audit trail.
func serviceDetails(s *apis.Service) *audit.Details {
	d := &audit.Details{Generation: s.Metadata.Generation}
	if cs := s.Spec.Template.Spec.Containers; len(cs) > 0 {
		d.Image = cs[0].Image
		d.ServiceAccount = s.Spec.Template.Spec.ServiceAccountName
	}
	return d
}

// prepareService validates an incoming service and fills what the server owns.
// old is the stored service on replace, nil on create.
func (c *Core) prepareService(s *apis.Service, old *apis.Service, project, region string, caller *Caller) error {
	if s.APIVersion != "" && s.APIVersion != apis.ServingAPIVersion {
		return InvalidArgument("apiVersion %q is not supported; use %s", s.APIVersion, apis.ServingAPIVersion)
	}
	if s.Kind != "" && s.Kind != apis.KindService {
		return InvalidArgument("kind %q is not supported; use %s", s.Kind, apis.KindService)
	}
	if ns := s.Metadata.Namespace; ns != "" && ns != project && ns != apis.ProjectNumber(project) {
		return InvalidArgument("metadata.namespace %q does not match the project %q in the request", ns, project)
	}
	s.Status = apis.ServiceStatus{} // clients send status back; it is ours
	s.SetDefaults(project, apis.DefaultServiceAccount(project))
	// One spelling of the runtime identity: the checks, the metadata server
	// and the token index all see the same account.
	s.Spec.Template.Spec.ServiceAccountName = strings.ToLower(s.Spec.Template.Spec.ServiceAccountName)
	if err := s.Validate(); err != nil {
		return InvalidField(err)
	}
	if err := validateLimits(s); err != nil {
		return err
	}
	now := c.cfg.Now().UTC().Format(time.RFC3339)
	if s.Metadata.Labels == nil {
		s.Metadata.Labels = map[string]string{}
	}
	s.Metadata.Labels[apis.LabelLocation] = region
	if s.Metadata.Annotations == nil {
		s.Metadata.Annotations = map[string]string{}
	}
	for _, k := range apis.ServerOwnedAnnotations { // validated above; decorate writes them on read
		delete(s.Metadata.Annotations, k)
	}
	s.Metadata.Annotations[apis.AnnotationLastModifier] = caller.Principal.Email
	if old == nil {
		s.Metadata.UID = newUID()
		s.Metadata.Generation = 1
		s.Metadata.CreationTimestamp = now
		s.Metadata.Annotations[apis.AnnotationCreator] = caller.Principal.Email
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

// validateLimits checks --cpu and --memory, and in-memory volumes, the way
// the runtimes will read them.
func validateLimits(s *apis.Service) error {
	if err := validateVolumes(s.Spec.Template.Spec); err != nil {
		return err
	}
	r := s.Spec.Template.Spec.Containers[0].Resources
	if r == nil {
		return nil
	}
	if v := r.Limits["cpu"]; v != "" {
		if _, err := runtime.ParseCPU(v); err != nil {
			return InvalidField(&apis.FieldError{Path: "spec.template.spec.containers[0].resources.limits.cpu", Message: err.Error()})
		}
	}
	if v := r.Limits["memory"]; v != "" {
		if _, err := runtime.ParseMemory(v); err != nil {
			return InvalidField(&apis.FieldError{Path: "spec.template.spec.containers[0].resources.limits.memory", Message: err.Error()})
		}
	}
	return nil
}

// KindServiceDeleteStep records a step of a service delete too large for
// one transaction: revisions that served no traffic, deleted first.
const KindServiceDeleteStep = "service.deleteStep"

// DeleteService deletes a service (compare-and-swap on etag when given)
// with its policy and revisions, as Cloud Run does, so a new service of the
// same name starts private and with none of the old one's revisions (which
// its traffic could otherwise name). The service, its policy, its
// revisions and the audit record go in one transaction; lost races with
// concurrent changes are retried from the reads. It returns the service as
// it was.
//
// A service with more revisions than one transaction holds (MaxTxnOps) is
// deleted in steps, in the one safe order: revisions that serve nothing
// (not latest, not named by traffic: those DeleteRevision would delete)
// go first, each step a transaction recorded as KindServiceDeleteStep, and
// the last transaction deletes the service with the rest. A failure
// between steps leaves the service serving as it was.
func (c *Core) DeleteService(ctx context.Context, caller *Caller, project, region, name, etag string, validateOnly bool) (*apis.Service, int64, error) {
	var (
		s   *apis.Service
		rev int64
	)
	err := retrying(ctx, func() (err error) {
		s, rev, err = c.deleteService(ctx, caller, project, region, name, etag, validateOnly)
		return err
	})
	return s, rev, err
}

func (c *Core) deleteService(ctx context.Context, caller *Caller, project, region, name, etag string, validateOnly bool) (*apis.Service, int64, error) {
	p, region, err := c.serviceScope(ctx, project, region, name)
	if err != nil {
		return nil, 0, err
	}
	project = p.ProjectID
	if err := c.authorizeService(ctx, caller, iam.PermServicesDelete, project, region, name); err != nil {
		return nil, 0, err
	}
	s, rev, err := c.readService(ctx, project, region, name)
	if err != nil {
		return nil, 0, err
	}
	stale := func() error {
		return Aborted("The service '%s' was modified concurrently (etag %s is stale). Read it again and retry.", name, etag)
	}
	if _, err := etagRevision(etag, rev, stale); err != nil {
		return nil, 0, err
	}
	c.decorate(s, rev)
	if validateOnly {
		return s, rev, nil
	}
	revisions, err := c.revisionsOf(ctx, project, region, name)
	if err != nil {
		return nil, 0, err
	}
	deletion := []write{
		{key: state.ServiceKey(project, region, name), expected: rev, conflict: func() error {
			return Aborted("The service '%s' was modified concurrently. Retry the deletion.", name)
		}},
		{key: state.ServicePolicyKey(project, region, name), expected: store.AnyRevision},
	}
	var serving, reserve []write
	for _, e := range revisions {
		w := write{key: e.Key, expected: e.Revision}
		if servesTraffic(s, e.name) {
			serving = append(serving, w)
		} else {
			reserve = append(reserve, w)
		}
	}
	deletion = append(deletion, serving...)
	for {
		ok, err := fits(append(deletion[:len(deletion):len(deletion)], reserve...))
		if err != nil {
			return nil, 0, err
		}
		if ok {
			break
		}
		if len(reserve) == 0 {
			return nil, 0, FailedPrecondition("Service '%s' has %d revisions that serve traffic or are its latest; one deletion takes at most %d. Move its traffic to fewer revisions first.", name, len(serving), MaxTxnOps-3)
		}
		n, err := fitting(reserve)
		if err != nil {
			return nil, 0, err
		}
		if _, err := c.commit(ctx, caller, change{
			writes: reserve[:n],
			record: audit.Record{Kind: KindServiceDeleteStep, Permission: iam.PermServicesDelete, Resource: apis.ServiceResource(project, region, name)},
		}); err != nil {
			return nil, 0, err
		}
		reserve = reserve[n:]
	}
	_, err = c.commit(ctx, caller, change{
		writes: append(deletion, reserve...),
		done: func() {
			if c.cfg.Logs != nil {
				c.cfg.Logs.Forget(project + "/" + region + "/" + name)
			}
		},
		record: audit.Record{Kind: audit.KindServiceDelete, Permission: iam.PermServicesDelete, Resource: apis.ServiceResource(project, region, name), Details: serviceDetails(s)},
	})
	return s, rev, err
}

// servesTraffic reports whether revision is s's latest or named by its
// traffic (what DeleteRevision refuses to delete).
func servesTraffic(s *apis.Service, revision string) bool {
	if s.Status.LatestCreatedRevisionName == revision || s.Status.LatestReadyRevisionName == revision {
		return true
	}
	for _, t := range append(s.Spec.Traffic, s.Status.Traffic...) {
		if t.RevisionName == revision {
			return true
		}
	}
	return false
}

// storedRevision is a revision's key, store revision and name.
type storedRevision struct {
	store.Entry
	name string
}

// revisionsOf lists a service's stored revisions.
func (c *Core) revisionsOf(ctx context.Context, project, region, name string) ([]storedRevision, error) {
	// Revision names start with the service's name and "-" (validated), so
	// the listing holds this service's revisions and those of services whose
	// names extend it, not the whole region's: a delete costs the same
	// whatever the number of other services.
	entries, _, err := c.cfg.Store.List(ctx, state.RevisionsPrefix+project+"/"+region+"/"+name+"-")
	if err != nil {
		return nil, err
	}
	var out []storedRevision
	for _, e := range entries {
		// One that does not decode is skipped, as the gateway's copy skips it:
		// it serves nothing and can be no one's.
		var rv apis.Revision
		if json.Unmarshal(e.Value, &rv) == nil && rv.Metadata.Labels[apis.LabelService] == name {
			out = append(out, storedRevision{Entry: e, name: rv.Metadata.Name})
		}
	}
	return out, nil
}

// ListRevisions lists revisions of a project in region (AllRegions: all),
// of one service when service is set, with the derived Active condition.
func (c *Core) ListRevisions(ctx context.Context, caller *Caller, project, region, service string) ([]apis.Revision, []int64, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, nil, err
	}
	if region, err = c.Region(region, service == ""); err != nil {
		return nil, nil, err
	}
	project = p.ProjectID
	if service != "" {
		err = c.authorizeService(ctx, caller, iam.PermRevisionsList, project, region, service)
	} else {
		_, err = c.AuthorizeProject(ctx, caller, project, iam.PermRevisionsList)
	}
	if err != nil {
		return nil, nil, err
	}
	prefix := state.RevisionsPrefix + project + "/"
	if region != AllRegions {
		prefix += region + "/"
	}
	entries, _, err := c.cfg.Store.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	var (
		out    []apis.Revision
		revs   []int64
		active = map[string]map[string]bool{} // region → active revisions
	)
	for _, e := range entries {
		var rv apis.Revision
		if err := json.Unmarshal(e.Value, &rv); err != nil {
			return nil, nil, err
		}
		if service != "" && rv.Metadata.Labels[apis.LabelService] != service {
			continue
		}
		r := rv.Metadata.Labels[apis.LabelLocation]
		if active[r] == nil {
			if active[r], err = c.activeRevisions(ctx, project, r); err != nil {
				return nil, nil, err
			}
		}
		decorateRevision(&rv, active[r][rv.Metadata.Name])
		out = append(out, rv)
		revs = append(revs, e.Revision)
	}
	return out, revs, nil
}

// GetRevision reads one revision; service, when set, must be its service.
func (c *Core) GetRevision(ctx context.Context, caller *Caller, project, region, service, name string) (*apis.Revision, int64, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, 0, err
	}
	if region, err = c.Region(region, false); err != nil {
		return nil, 0, err
	}
	project = p.ProjectID
	var rv apis.Revision
	rev, err := state.Get(ctx, c.cfg.Store, state.RevisionKey(project, region, name), &rv)
	found := err == nil && (service == "" || rv.Metadata.Labels[apis.LabelService] == service)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, 0, err
	}
	owner := service
	if found {
		owner = rv.Metadata.Labels[apis.LabelService]
	}
	if owner != "" {
		err = c.authorizeService(ctx, caller, iam.PermRevisionsGet, project, region, owner)
	} else {
		_, err = c.AuthorizeProject(ctx, caller, project, iam.PermRevisionsGet)
	}
	if err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, 0, NotFound("Resource '%s' of kind 'REVISION' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	active, err := c.activeRevisions(ctx, project, region)
	if err != nil {
		return nil, 0, err
	}
	decorateRevision(&rv, active[rv.Metadata.Name])
	return &rv, rev, nil
}

// DeleteRevision deletes a revision that serves no traffic (Cloud Run refuses
// to delete one that does, or that is its service's latest).
func (c *Core) DeleteRevision(ctx context.Context, caller *Caller, project, region, name string) (*apis.Revision, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, err
	}
	if region, err = c.Region(region, false); err != nil {
		return nil, err
	}
	project = p.ProjectID
	var rv apis.Revision
	revRev, err := state.Get(ctx, c.cfg.Store, state.RevisionKey(project, region, name), &rv)
	if errors.Is(err, store.ErrNotFound) {
		if _, err := c.AuthorizeProject(ctx, caller, project, iam.PermRevisionsDelete); err != nil {
			return nil, err
		}
		return nil, NotFound("Resource '%s' of kind 'REVISION' in region '%s' in project '%s' does not exist.", name, region, project)
	}
	if err != nil {
		return nil, err
	}
	service := rv.Metadata.Labels[apis.LabelService]
	if err := c.authorizeService(ctx, caller, iam.PermRevisionsDelete, project, region, service); err != nil {
		return nil, err
	}
	if s, _, err := c.readService(ctx, project, region, service); err == nil {
		if s.Status.LatestCreatedRevisionName == name || s.Status.LatestReadyRevisionName == name {
			return nil, FailedPrecondition("Revision '%s' is the latest revision of service '%s' and cannot be deleted.", name, service)
		}
		for _, t := range append(s.Spec.Traffic, s.Status.Traffic...) {
			if t.RevisionName == name {
				return nil, FailedPrecondition("Revision '%s' is referenced by the traffic of service '%s' and cannot be deleted; move its traffic and tags first.", name, service)
			}
		}
	}
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.RevisionKey(project, region, name), expected: revRev, conflict: func() error {
			return Aborted("The revision '%s' was modified concurrently. Retry the deletion.", name)
		}}},
		record: audit.Record{Kind: audit.KindRevisionDelete, Permission: iam.PermRevisionsDelete, Resource: apis.ServiceResource(project, region, service), Details: &audit.Details{Revision: name}},
	})
	return &rv, err
}

// activeRevisions returns the revisions serving traffic in a project and
// region, keyed by name, for the Active condition gcloud lists.
func (c *Core) activeRevisions(ctx context.Context, project, region string) (map[string]bool, error) {
	services, _, err := state.List[apis.Service](ctx, c.cfg.Store, state.ServicesPrefix+project+"/"+region+"/")
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

// ServiceMetrics returns a service's recent metrics over window (1h, 6h, 1d
// or 7d), every node's share merged. Reading them needs what reading the
// service needs (run.services.get), as the Metrics tab of Cloud Run's
// console shows them to whoever may open the service.
func (c *Core) ServiceMetrics(ctx context.Context, caller *Caller, project, region, name, window string) (history.Result, error) {
	s, _, err := c.GetService(ctx, caller, project, region, name)
	if err != nil {
		return history.Result{}, err
	}
	if window == "" {
		window = "1h"
	}
	if _, ok := history.Windows[window]; !ok {
		return history.Result{}, InvalidArgument("window %q: want 1h, 6h, 1d or 7d", window)
	}
	if c.cfg.Metrics == nil {
		return history.Result{}, Unimplemented("this server keeps no metrics history")
	}
	return c.cfg.Metrics.Query(ctx, history.Key{Project: s.Metadata.Namespace, Region: s.Metadata.Labels[apis.LabelLocation], Service: name}, window)
}

// ServiceLogs returns up to limit of the newest lines a service's instances
// printed (of one revision when revision is set), oldest first. Reading logs
// needs what reading the service needs.
func (c *Core) ServiceLogs(ctx context.Context, caller *Caller, project, region, name, revision string, limit int) ([]logs.Entry, error) {
	s, _, err := c.GetService(ctx, caller, project, region, name)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > logs.DefaultLinesPerService {
		return nil, InvalidArgument("limit must be a whole number from 1 to %d", logs.DefaultLinesPerService)
	}
	var keep func(logs.Entry) bool
	if revision != "" {
		keep = func(e logs.Entry) bool { return e.Revision == revision }
	}
	entries := []logs.Entry{}
	switch project, region := s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation]; {
	case c.cfg.Entries != nil: // durable
		// Lines are written in batches: write what is queued so that a
		// read right after a request sees its lines.
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c.cfg.Entries.Flush(fctx)
		cancel()
		got, err := c.cfg.Entries.Lines(ctx, project, region, name, revision, limit)
		if err != nil {
			return nil, err
		}
		if got != nil {
			entries = got
		}
	case c.cfg.Logs != nil:
		if got := c.cfg.Logs.Read(project+"/"+region+"/"+name, limit, keep); got != nil {
			entries = got
		}
	}
	return entries, nil
}

// validateVolumes checks in-memory volumes' size limits and, for file://
// images, that the process sandbox can mount them: its file system is the
// host's, read-only, so a mount path must be under its private /tmp or
// /dev/shm (made there), or a directory that exists on the host.
func validateVolumes(spec apis.RevisionSpec) error {
	for i, v := range spec.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.SizeLimit == "" {
			continue
		}
		if _, err := runtime.ParseMemory(v.EmptyDir.SizeLimit); err != nil {
			return InvalidField(&apis.FieldError{Path: fmt.Sprintf("spec.template.spec.volumes[%d].emptyDir.sizeLimit", i), Message: err.Error()})
		}
	}
	if !runtime.IsFileImage(spec.Containers[0].Image) {
		return nil
	}
	for i, m := range spec.Containers[0].VolumeMounts {
		if strings.HasPrefix(m.MountPath, "/tmp/") || strings.HasPrefix(m.MountPath, "/dev/shm/") {
			continue
		}
		if fi, err := os.Stat(m.MountPath); err == nil && fi.IsDir() {
			continue
		}
		return InvalidField(&apis.FieldError{Path: fmt.Sprintf("spec.template.spec.containers[0].volumeMounts[%d].mountPath", i),
			Message: fmt.Sprintf("%q: a file:// image runs in the process sandbox, whose file system is the host's, read-only: mount volumes under /tmp or /dev/shm, or at a directory that exists on the host", m.MountPath)})
	}
	return nil
}
