package api

// Cloud Run Admin API v2: /v2/projects/{p}/locations/{l}/services…, their
// revisions, IAM methods and long-running operations.
//
// v2 is a view of the same stored Knative v1 objects (see apis.ServiceToV2):
// writes store v1 services, so the controller and the gateway need nothing
// new. Authentication and authorization are v1's (authed, check, the
// run.services.* and run.revisions.* permissions); the IAM methods are v1's
// own handlers.
//
// Operations are computed, not stored: an operation's ID encodes what it
// waits for (kind, service, generation, uid), so nothing is left to clean up.
// A create or update is done when the stored service's
// status.observedGeneration has reached the operation's generation and Ready
// is True (response: the service) or False (error FAILED_PRECONDITION with
// Ready's message). Deletes are done at once. Reading an operation needs
// run.services.get on its service, which the caller that started it holds.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// routesV2 registers the v2 API. Path wildcards are named as v1's ({ns},
// {region}, {name}) so resolveScope, serviceTarget and the v1 IAM handlers
// serve v2 requests unchanged.
func (a *API) routesV2() {
	m := a.mux
	const loc = "/v2/projects/{ns}/locations/{region}"
	m.Handle("GET "+loc+"/services", a.authed(a.listServicesV2))
	m.Handle("POST "+loc+"/services", a.authed(a.createServiceV2))
	m.Handle("GET "+loc+"/services/{name}", a.authed(a.serviceGetOrPolicyV2))
	// ":getIamPolicy", ":setIamPolicy", ":testIamPermissions".
	m.Handle("POST "+loc+"/services/{name}", a.authed(a.servicePolicyMethod))
	m.Handle("PATCH "+loc+"/services/{name}", a.authed(a.updateServiceV2))
	m.Handle("DELETE "+loc+"/services/{name}", a.authed(a.deleteServiceV2))
	m.Handle("GET "+loc+"/services/{name}/revisions", a.authed(a.listRevisionsV2))
	m.Handle("GET "+loc+"/services/{name}/revisions/{revision}", a.authed(a.getRevisionV2))
	m.Handle("DELETE "+loc+"/services/{name}/revisions/{revision}", a.authed(a.deleteRevisionV2))
	m.Handle("GET "+loc+"/operations", a.authed(a.listOperationsV2))
	m.Handle("GET "+loc+"/operations/{op}", a.authed(a.getOperationV2))
	m.Handle("POST "+loc+"/operations/{op}", a.authed(a.waitOperationV2)) // ":wait"
	m.Handle("DELETE "+loc+"/operations/{op}", a.authed(a.deleteOperationV2))
}

func unimplemented(format string, args ...any) *Error {
	return newError(http.StatusNotImplemented, "UNIMPLEMENTED", format, args...)
}

// google.rpc.Code values carried in operation errors.
const (
	rpcNotFound           = 5
	rpcFailedPrecondition = 9
)

// v2View renders a stored service at store revision rev.
func (a *API) v2View(s *apis.Service, rev int64) *apis.V2Service {
	region := s.Metadata.Labels[apis.LabelLocation]
	v := apis.ServiceToV2(s, a.cfg.ServiceURL(s.Metadata.Namespace, region, s.Metadata.Name))
	v.Etag = iam.Etag(rev)
	return v
}

// v2Target is the project, region and service name a v2 request addresses.
func (a *API) v2Target(r *http.Request) (project, region, name string, err error) {
	sc, err := a.resolveScope(r)
	if err != nil {
		return "", "", "", err
	}
	name = r.PathValue("name")
	if err := apis.ValidateServiceName(name); err != nil {
		return "", "", "", invalidArgument("%v", err)
	}
	return sc.project.ProjectID, sc.singleRegion(a.cfg.DefaultRegion), name, nil
}

// sameServiceName reports whether a v2 body's name (if any) is the service
// the path names; the project may be given by ID or number.
func sameServiceName(bodyName, project, region, name string) bool {
	return bodyName == "" || bodyName == apis.V2ServiceName(project, region, name) ||
		bodyName == apis.V2ServiceName(apis.ProjectNumber(project), region, name)
}

func readBodyV2(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, invalidArgument("reading request body: %v", err)
	}
	if len(b) > maxBody {
		return nil, invalidArgument("request body exceeds %d bytes", maxBody)
	}
	if strings.TrimSpace(string(b)) == "" {
		b = []byte("{}")
	}
	return b, nil
}

// queryBool reads a boolean query parameter ("" is false).
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalidArgument("Invalid value at '%s' (TYPE_BOOL), %q", name, v)
	}
	return b, nil
}

// ---- services ----

type listServicesV2Response struct {
	Services      []*apis.V2Service `json:"services"`
	NextPageToken string            `json:"nextPageToken,omitempty"`
}

func (a *API) listServicesV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.authorizeScope(r, c, iam.PermServicesList)
	if err != nil {
		return err
	}
	entries, _, err := a.cfg.Store.List(r.Context(), sc.prefix(state.ServicesPrefix))
	if err != nil {
		return err
	}
	page, next, err := pageOf(r, entries)
	if err != nil {
		return err
	}
	out := listServicesV2Response{Services: []*apis.V2Service{}, NextPageToken: next}
	for _, e := range page {
		var s apis.Service
		if err := json.Unmarshal(e.Value, &s); err != nil {
			return err
		}
		out.Services = append(out.Services, a.v2View(&s, e.Revision))
	}
	return writeJSON(w, http.StatusOK, out)
}

// pageOf returns the page of entries (sorted by key) that pageSize and
// pageToken ask for, and the token of the next page ("" when none). A token
// is the last key returned, so pages stay consistent while entries change.
func pageOf(r *http.Request, entries []store.Entry) ([]store.Entry, string, error) {
	const defaultSize, maxSize = 100, 1000
	q := r.URL.Query()
	size := defaultSize
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, "", invalidArgument("Invalid value at 'page_size' (TYPE_INT32), %q", v)
		}
		if n > 0 {
			size = min(n, maxSize)
		}
	}
	if tok := q.Get("pageToken"); tok != "" {
		after, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return nil, "", invalidArgument("page_token %q is not a token this server issued", tok)
		}
		i := 0
		for i < len(entries) && entries[i].Key <= string(after) {
			i++
		}
		entries = entries[i:]
	}
	if len(entries) <= size {
		return entries, "", nil
	}
	page := entries[:size]
	return page, base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].Key)), nil
}

func (a *API) serviceGetOrPolicyV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, method := splitMethod(r.PathValue("name")); method != "" {
		return a.serviceGetOrPolicy(w, r, c) // getIamPolicy, as v1
	}
	project, region, name, err := a.v2Target(r)
	if err != nil {
		return err
	}
	if err := a.authorizeService(r.Context(), c, iam.PermServicesGet, project, region, name); err != nil {
		return err
	}
	s, rev, err := a.readService(r.Context(), project, region, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a.v2View(s, rev))
}

func (a *API) createServiceV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	project, region := sc.project.ProjectID, sc.singleRegion(a.cfg.DefaultRegion)
	proj, err := a.projectLevel(ctx, project)
	if err != nil {
		return err
	}
	if err := a.check(c, iam.PermServicesCreate, "projects/"+project+"/locations/"+region, proj); err != nil {
		return err
	}
	name := r.URL.Query().Get("serviceId")
	if name == "" {
		return invalidArgument("service_id is required: pass ?serviceId=NAME")
	}
	if err := apis.ValidateServiceName(name); err != nil {
		return invalidArgument("service_id: %v", err)
	}
	validateOnly, err := queryBool(r, "validateOnly")
	if err != nil {
		return err
	}
	body, err := readBodyV2(r)
	if err != nil {
		return err
	}
	v, err := apis.ParseV2Service(body, nil, "")
	if err != nil {
		return invalidArgument("%v", err)
	}
	s, err := apis.ServiceFromV2(v, project, region, name)
	if err != nil {
		return invalidArgument("%v", err)
	}
	if err := a.prepareService(s, nil, project, region, c); err != nil {
		return err
	}
	if err := a.checkInvokerGuardrail(ctx, project, s, nil); err != nil { // guardrails.go
		return err
	}
	if validateOnly {
		return a.writeValidated(w, project, region, s)
	}
	rev, err := state.Put(ctx, a.cfg.Store, state.ServiceKey(project, region, name), s, store.MustNotExist)
	if errors.Is(err, store.ErrConflict) {
		return alreadyExists("Resource '%s' already exists.", name)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(ctx, rev); err != nil {
		return err
	}
	a.audit(ctx, c, audit.KindServiceCreate, iam.PermServicesCreate, apis.ServiceResource(project, region, name), serviceDetails(s))
	return a.writeOperation(w, r, project, region, opRef{Kind: opCreate, Service: name, Generation: s.Metadata.Generation, UID: s.Metadata.UID})
}

// updateServiceV2 is PATCH: the body replaces the service, or with
// updateMask only the named fields. An etag in the body must be current.
func (a *API) updateServiceV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	project, region, name, err := a.v2Target(r)
	if err != nil {
		return err
	}
	if err := a.authorizeService(ctx, c, iam.PermServicesUpdate, project, region, name); err != nil {
		return err
	}
	allowMissing, err := queryBool(r, "allowMissing")
	if err != nil {
		return err
	}
	validateOnly, err := queryBool(r, "validateOnly")
	if err != nil {
		return err
	}
	forceNewRevision, err := queryBool(r, "forceNewRevision")
	if err != nil {
		return err
	}
	body, err := readBodyV2(r)
	if err != nil {
		return err
	}
	old, rev, err := a.readService(ctx, project, region, name)
	var current *apis.V2Service
	switch {
	case err == nil:
		current = a.v2View(old, rev)
	case isNotFound(err) && allowMissing:
		proj, err := a.projectLevel(ctx, project)
		if err != nil {
			return err
		}
		if err := a.check(c, iam.PermServicesCreate, "projects/"+project+"/locations/"+region, proj); err != nil {
			return err
		}
	default:
		return err
	}
	v, err := apis.ParseV2Service(body, current, r.URL.Query().Get("updateMask"))
	if err != nil {
		return invalidArgument("%v", err)
	}
	if !sameServiceName(v.Name, project, region, name) {
		return invalidArgument("service.name %q does not match the service %q in the path", v.Name, apis.V2ServiceName(project, region, name))
	}
	if v.Etag != "" {
		want, err := iam.ParseEtag(v.Etag)
		if err != nil {
			return invalidArgument("service.etag: %v", err)
		}
		if want != rev {
			return aborted("The service '%s' was modified concurrently (etag %s is stale). Read it again and retry.", name, v.Etag)
		}
	}
	s, err := apis.ServiceFromV2(v, project, region, name)
	if err != nil {
		return invalidArgument("%v", err)
	}
	kind, expected := opCreate, store.MustNotExist
	if old != nil {
		apis.CarryOverV1Only(s, old)
		kind, expected = opUpdate, rev
	}
	if err := a.prepareService(s, old, project, region, c); err != nil {
		return err
	}
	if err := a.checkInvokerGuardrail(ctx, project, s, old); err != nil { // guardrails.go
		return err
	}
	if forceNewRevision && old != nil && s.Metadata.Generation == old.Metadata.Generation {
		s.Metadata.Generation++
	}
	if validateOnly {
		return a.writeValidated(w, project, region, s)
	}
	newRev, err := state.Put(ctx, a.cfg.Store, state.ServiceKey(project, region, name), s, expected)
	if errors.Is(err, store.ErrConflict) {
		if old == nil {
			return alreadyExists("Resource '%s' already exists.", name)
		}
		return aborted("The service '%s' was modified concurrently. Read it again and retry.", name)
	}
	if err != nil {
		return err
	}
	if err := a.cfg.Sync.WaitFor(ctx, newRev); err != nil {
		return err
	}
	a.audit(ctx, c, serviceWriteKind(old), iam.PermServicesUpdate, apis.ServiceResource(project, region, name), serviceDetails(s))
	return a.writeOperation(w, r, project, region, opRef{Kind: kind, Service: name, Generation: s.Metadata.Generation, UID: s.Metadata.UID})
}

func isNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

func (a *API) deleteServiceV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	project, region, name, err := a.v2Target(r)
	if err != nil {
		return err
	}
	if err := a.authorizeService(ctx, c, iam.PermServicesDelete, project, region, name); err != nil {
		return err
	}
	validateOnly, err := queryBool(r, "validateOnly")
	if err != nil {
		return err
	}
	s, rev, err := a.readService(ctx, project, region, name)
	if err != nil {
		return err
	}
	if etag := r.URL.Query().Get("etag"); etag != "" {
		want, err := iam.ParseEtag(etag)
		if err != nil {
			return invalidArgument("etag: %v", err)
		}
		if want != rev {
			return aborted("The service '%s' was modified concurrently (etag %s is stale). Read it again and retry.", name, etag)
		}
	}
	view := a.v2View(s, rev)
	ref := opRef{Kind: opDelete, Service: name, UID: s.Metadata.UID}
	if validateOnly {
		ref.Kind = opValidate
	} else {
		if err := a.removeService(ctx, project, region, name, rev); err != nil {
			return err
		}
		a.audit(ctx, c, audit.KindServiceDelete, iam.PermServicesDelete, apis.ServiceResource(project, region, name), serviceDetails(s))
		view.DeleteTime = a.cfg.Now().UTC().Format(time.RFC3339)
	}
	op, err := doneOperation(project, region, ref, view)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, op)
}

// removeService deletes the service stored at rev (compare-and-swap) with its
// policy and revisions (v1 and v2 delete alike), and waits until the
// gateway no longer routes it.
func (a *API) removeService(ctx context.Context, project, region, name string, rev int64) error {
	last, err := a.cfg.Store.Delete(ctx, state.ServiceKey(project, region, name), rev)
	if errors.Is(err, store.ErrConflict) {
		return aborted("The service '%s' was modified concurrently. Retry the deletion.", name)
	}
	if err != nil {
		return err
	}
	if drev, err := a.cfg.Store.Delete(ctx, state.ServicePolicyKey(project, region, name), store.AnyRevision); err == nil {
		last = drev
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	revs, _, err := a.cfg.Store.List(ctx, state.RevisionsPrefix+project+"/"+region+"/")
	if err != nil {
		return err
	}
	for _, e := range revs {
		var rv apis.Revision
		if json.Unmarshal(e.Value, &rv) == nil && rv.Metadata.Labels[apis.LabelService] == name {
			if drev, err := a.cfg.Store.Delete(ctx, e.Key, store.AnyRevision); err == nil {
				last = drev
			}
		}
	}
	if a.cfg.Logs != nil {
		a.cfg.Logs.Forget(project + "/" + region + "/" + name)
	}
	return a.cfg.Sync.WaitFor(ctx, last)
}

// writeValidated answers a validateOnly request: a finished operation whose
// response is the service as it would be stored.
func (a *API) writeValidated(w http.ResponseWriter, project, region string, s *apis.Service) error {
	op, err := doneOperation(project, region, opRef{Kind: opValidate, Service: s.Metadata.Name, UID: s.Metadata.UID}, a.v2View(s, 0))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, op)
}

// ---- revisions ----

type listRevisionsV2Response struct {
	Revisions     []*apis.V2Revision `json:"revisions"`
	NextPageToken string             `json:"nextPageToken,omitempty"`
}

func (a *API) listRevisionsV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	project, region, name, err := a.v2Target(r)
	if err != nil {
		return err
	}
	if err := a.authorizeService(ctx, c, iam.PermRevisionsList, project, region, name); err != nil {
		return err
	}
	entries, _, err := a.cfg.Store.List(ctx, state.RevisionsPrefix+project+"/"+region+"/")
	if err != nil {
		return err
	}
	var mine []store.Entry
	revs := map[string]*apis.Revision{}
	for _, e := range entries {
		var rv apis.Revision
		if err := json.Unmarshal(e.Value, &rv); err != nil {
			return err
		}
		if rv.Metadata.Labels[apis.LabelService] == name {
			mine = append(mine, e)
			revs[e.Key] = &rv
		}
	}
	page, next, err := pageOf(r, mine)
	if err != nil {
		return err
	}
	out := listRevisionsV2Response{Revisions: []*apis.V2Revision{}, NextPageToken: next}
	for _, e := range page {
		v := apis.RevisionToV2(revs[e.Key])
		v.Etag = iam.Etag(e.Revision)
		out.Revisions = append(out.Revisions, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getRevisionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	project, region, name, err := a.v2Target(r)
	if err != nil {
		return err
	}
	revName, method := splitMethod(r.PathValue("revision"))
	if method != "" {
		return notFound("no method %q on revisions", method)
	}
	if err := a.authorizeService(ctx, c, iam.PermRevisionsGet, project, region, name); err != nil {
		return err
	}
	var rv apis.Revision
	rev, err := state.Get(ctx, a.cfg.Store, state.RevisionKey(project, region, revName), &rv)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rv.Metadata.Labels[apis.LabelService] != name) {
		return notFound("Resource '%s' of kind 'REVISION' in region '%s' in project '%s' does not exist.", revName, region, project)
	}
	if err != nil {
		return err
	}
	v := apis.RevisionToV2(&rv)
	v.Etag = iam.Etag(rev)
	return writeJSON(w, http.StatusOK, v)
}

func (a *API) deleteRevisionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region, name, err := a.v2Target(r)
	if err != nil {
		return err
	}
	if err := a.authorizeService(r.Context(), c, iam.PermRevisionsDelete, project, region, name); err != nil {
		return err
	}
	return unimplemented("Deleting revisions is not supported by Usher yet; revisions are deleted with their service.")
}

// ---- operations ----

// Operation kinds.
const (
	opCreate   = "create"
	opUpdate   = "update"
	opDelete   = "delete"
	opValidate = "validate" // validateOnly: nothing was written
)

// opRef is what an operation waits for; its JSON, base64url-encoded, is the
// operation ID. IDs are not secret: reading one needs run.services.get on
// its service, and says nothing the service does not.
type opRef struct {
	Kind       string `json:"k"`
	Service    string `json:"s"`
	Generation int64  `json:"g,omitempty"`
	UID        string `json:"u,omitempty"`
}

func (o opRef) name(project, region string) string {
	b, _ := json.Marshal(o)
	return "projects/" + project + "/locations/" + region + "/operations/" + base64.RawURLEncoding.EncodeToString(b)
}

func parseOpID(id string) (opRef, error) {
	var o opRef
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err == nil {
		err = json.Unmarshal(b, &o)
	}
	if err == nil {
		switch o.Kind {
		case opCreate, opUpdate, opDelete, opValidate:
			err = apis.ValidateServiceName(o.Service)
		default:
			err = errors.New("unknown kind")
		}
	}
	if err != nil {
		return o, notFound("Operation '%s' not found.", id)
	}
	return o, nil
}

// doneOperation is a finished operation whose metadata and response are v.
func doneOperation(project, region string, ref opRef, v *apis.V2Service) (*apis.V2Operation, error) {
	body, err := apis.V2AnyJSON(apis.V2ServiceTypeURL, v)
	if err != nil {
		return nil, err
	}
	return &apis.V2Operation{Name: ref.name(project, region), Metadata: body, Done: true, Response: body}, nil
}

// operationState computes an operation from the stored service. It also
// returns the service key's revision (0 when absent) to watch for change.
func (a *API) operationState(ctx context.Context, project, region string, ref opRef) (*apis.V2Operation, int64, error) {
	if ref.Kind == opDelete || ref.Kind == opValidate {
		op, err := doneOperation(project, region, ref, &apis.V2Service{Name: apis.V2ServiceName(project, region, ref.Service), UID: ref.UID})
		return op, 0, err
	}
	op := &apis.V2Operation{Name: ref.name(project, region)}
	var s apis.Service
	rev, err := state.Get(ctx, a.cfg.Store, state.ServiceKey(project, region, ref.Service), &s)
	if errors.Is(err, store.ErrNotFound) || (err == nil && s.Metadata.UID != ref.UID) {
		op.Done = true
		op.Error = &apis.V2Status{Code: rpcNotFound, Message: "Service '" + ref.Service + "' was deleted before the operation completed."}
		op.Metadata, err = apis.V2AnyJSON(apis.V2ServiceTypeURL, &apis.V2Service{Name: apis.V2ServiceName(project, region, ref.Service), UID: ref.UID})
		return op, 0, err
	}
	if err != nil {
		return nil, 0, err
	}
	if op.Metadata, err = apis.V2AnyJSON(apis.V2ServiceTypeURL, a.v2View(&s, rev)); err != nil {
		return nil, 0, err
	}
	if s.Status.ObservedGeneration < ref.Generation {
		return op, rev, nil
	}
	for _, cond := range s.Status.Conditions {
		if cond.Type != apis.ConditionReady {
			continue
		}
		switch cond.Status {
		case apis.StatusTrue:
			op.Done, op.Response = true, op.Metadata
		case apis.StatusFalse:
			op.Done = true
			op.Error = &apis.V2Status{Code: rpcFailedPrecondition, Message: cond.Message}
		}
	}
	return op, rev, nil
}

// writeOperation answers a write with its operation, as it stands now.
func (a *API) writeOperation(w http.ResponseWriter, r *http.Request, project, region string, ref opRef) error {
	op, _, err := a.operationState(r.Context(), project, region, ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, op)
}

// operationTarget parses and authorizes the operation in the path.
func (a *API) operationTarget(r *http.Request, c *caller, id string) (project, region string, ref opRef, err error) {
	sc, err := a.resolveScope(r)
	if err != nil {
		return "", "", ref, err
	}
	project, region = sc.project.ProjectID, sc.singleRegion(a.cfg.DefaultRegion)
	if ref, err = parseOpID(id); err != nil {
		return "", "", ref, err
	}
	err = a.authorizeService(r.Context(), c, iam.PermServicesGet, project, region, ref.Service)
	return project, region, ref, err
}

func (a *API) getOperationV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("op"))
	if method != "" {
		return notFound("no method %q on operations", method)
	}
	project, region, ref, err := a.operationTarget(r, c, id)
	if err != nil {
		return err
	}
	return a.writeOperation(w, r, project, region, ref)
}

// Bounds of operations.wait's timeout.
const (
	defaultWaitTimeout = time.Minute
	maxWaitTimeout     = 5 * time.Minute
)

// waitOperationV2 is ":wait": it answers when the operation is done or the
// timeout passes (then with the operation not done, as Google does).
func (a *API) waitOperationV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("op"))
	if method != "wait" {
		return notFound("no method %q on operations", method)
	}
	var req struct {
		Timeout string `json:"timeout"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	timeout := defaultWaitTimeout
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d < 0 || !strings.HasSuffix(req.Timeout, "s") {
			return invalidArgument("timeout %q is not a duration like \"30s\"", req.Timeout)
		}
		timeout = min(d, maxWaitTimeout)
	}
	project, region, ref, err := a.operationTarget(r, c, id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	key := state.ServiceKey(project, region, ref.Service)
	for {
		op, rev, err := a.operationState(r.Context(), project, region, ref)
		if err != nil {
			return err
		}
		if op.Done || !waitForChange(ctx, a.cfg.Store, key, rev) {
			return writeJSON(w, http.StatusOK, op)
		}
	}
}

// waitForChange blocks until key changes after rev; false when ctx ends first.
func waitForChange(ctx context.Context, st store.Store, key string, rev int64) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case _, ok := <-st.Watch(ctx, key, rev):
		return ok && ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

func (a *API) deleteOperationV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, method := splitMethod(r.PathValue("op"))
	if method != "" {
		return notFound("no method %q on operations", method)
	}
	if _, _, _, err := a.operationTarget(r, c, id); err != nil {
		return err
	}
	// Operations are computed, not kept: there is nothing to forget.
	return writeJSON(w, http.StatusOK, struct{}{})
}

func (a *API) listOperationsV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	sc, err := a.resolveScope(r)
	if err != nil {
		return err
	}
	proj, err := a.projectLevel(r.Context(), sc.project.ProjectID)
	if err != nil {
		return err
	}
	if err := a.check(c, iam.PermRunOperationsGet, proj.Resource, proj); err != nil {
		return err
	}
	return unimplemented("Listing operations is not supported by Usher: operations are computed from their service. Get one by the name its method returned.")
}
