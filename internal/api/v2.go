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

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
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
	a.routesV2Jobs() // v2_jobs.go
}

// google.rpc.Code values carried in operation errors.
const (
	rpcNotFound           = 5
	rpcFailedPrecondition = 9
)

// v2View renders a stored service at store revision rev.
func (a *API) v2View(s *apis.Service, rev int64) *apis.V2Service {
	region := s.Metadata.Labels[apis.LabelLocation]
	v := apis.ServiceToV2(s, a.cfg.Core.ServiceURL(s.Metadata.Namespace, region, s.Metadata.Name))
	v.Etag = iam.Etag(rev)
	return v
}

// v2Target is the project, region and service name a v2 request addresses.
func v2Target(r *http.Request) (project, region, name string) {
	project, region = pathScope(r)
	return project, region, r.PathValue("name")
}

// sameServiceName reports whether a v2 body's name (if any) is the service
// the path names; the project may be given by ID or number.
func sameServiceName(bodyName string, old *apis.Service, project, region, name string) bool {
	if old != nil {
		project = old.Metadata.Namespace
	}
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
	project, region := pathScope(r)
	got, err := a.cfg.Core.ListServices(r.Context(), c, project, listRegion(region))
	if err != nil {
		return err
	}
	idx := make([]int, len(got.Items))
	for i := range idx {
		idx[i] = i
	}
	page, next, err := pageOf(r, idx, func(i int) string {
		s := got.Items[i]
		return s.Metadata.Labels[apis.LabelLocation] + "/" + s.Metadata.Name
	})
	if err != nil {
		return err
	}
	out := listServicesV2Response{Services: []*apis.V2Service{}, NextPageToken: next}
	for _, i := range page {
		out.Services = append(out.Services, a.v2View(&got.Items[i], got.Revisions[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

// pageOf returns the page of items (sorted by key) that pageSize and
// pageToken ask for, and the token of the next page ("" when none). A token
// is the last key returned, so pages stay consistent while items change.
func pageOf[T any](r *http.Request, items []T, key func(T) string) ([]T, string, error) {
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
		for i < len(items) && key(items[i]) <= string(after) {
			i++
		}
		items = items[i:]
	}
	if len(items) <= size {
		return items, "", nil
	}
	page := items[:size]
	return page, base64.RawURLEncoding.EncodeToString([]byte(key(page[len(page)-1]))), nil
}

func (a *API) serviceGetOrPolicyV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, method := splitMethod(r.PathValue("name")); method != "" {
		return a.serviceGetOrPolicy(w, r, c) // getIamPolicy, as v1
	}
	project, region, name := v2Target(r)
	s, rev, err := a.cfg.Core.GetService(r.Context(), c, project, region, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a.v2View(s, rev))
}

func (a *API) createServiceV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
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
	res, err := a.cfg.Core.WriteService(r.Context(), c, admin.ServiceWrite{
		Project: project, Region: region, Name: name, Mode: admin.Create, ValidateOnly: validateOnly,
		Build: func(*apis.Service, int64) (*apis.Service, error) {
			v, err := apis.ParseV2Service(body, nil, "")
			if err != nil {
				return nil, invalidArgument("%v", err)
			}
			s, err := apis.ServiceFromV2(v, project, region, name)
			if err != nil {
				return nil, invalidArgument("%v", err)
			}
			return s, nil
		},
	})
	if err != nil {
		return err
	}
	return a.writeResult(w, r, c, res, validateOnly)
}

// writeResult answers a v2 write with its operation: done at once for
// validateOnly, else as it stands now.
func (a *API) writeResult(w http.ResponseWriter, r *http.Request, c *caller, res *admin.WriteResult, validateOnly bool) error {
	s := res.Service
	project, region := s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation]
	if validateOnly {
		op, err := doneOperation(project, region, opRef{Kind: opValidate, Service: s.Metadata.Name, UID: s.Metadata.UID}, a.v2View(s, 0))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, op)
	}
	kind := opUpdate
	if res.Created {
		kind = opCreate
	}
	return a.writeOperation(w, r, c, project, region, opRef{Kind: kind, Service: s.Metadata.Name, Generation: s.Metadata.Generation, UID: s.Metadata.UID})
}

// updateServiceV2 is PATCH: the body replaces the service, or with
// updateMask only the named fields. An etag in the body must be current.
func (a *API) updateServiceV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region, name := v2Target(r)
	mode := admin.Replace
	if allowMissing, err := queryBool(r, "allowMissing"); err != nil {
		return err
	} else if allowMissing {
		mode = admin.Upsert
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
	var pre struct {
		Etag string `json:"etag"`
	}
	json.Unmarshal(body, &pre) // a malformed body is refused by ParseV2Service
	res, err := a.cfg.Core.WriteService(r.Context(), c, admin.ServiceWrite{
		Project: project, Region: region, Name: name, Mode: mode, Etag: pre.Etag,
		ValidateOnly: validateOnly, ForceNewRevision: forceNewRevision,
		Build: func(old *apis.Service, rev int64) (*apis.Service, error) {
			var current *apis.V2Service
			if old != nil {
				current = a.v2View(old, rev)
			}
			v, err := apis.ParseV2Service(body, current, r.URL.Query().Get("updateMask"))
			if err != nil {
				return nil, invalidArgument("%v", err)
			}
			if !sameServiceName(v.Name, old, project, region, name) {
				return nil, invalidArgument("service.name %q does not match the service %q in the path", v.Name, name)
			}
			s, err := apis.ServiceFromV2(v, project, region, name)
			if err != nil {
				return nil, invalidArgument("%v", err)
			}
			if old != nil {
				apis.CarryOverV1Only(s, old)
			}
			return s, nil
		},
	})
	if err != nil {
		return err
	}
	return a.writeResult(w, r, c, res, validateOnly)
}

func (a *API) deleteServiceV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region, name := v2Target(r)
	validateOnly, err := queryBool(r, "validateOnly")
	if err != nil {
		return err
	}
	s, rev, err := a.cfg.Core.DeleteService(r.Context(), c, project, region, name, r.URL.Query().Get("etag"), validateOnly)
	if err != nil {
		return err
	}
	view := a.v2View(s, rev)
	ref := opRef{Kind: opDelete, Service: name, UID: s.Metadata.UID}
	if validateOnly {
		ref.Kind = opValidate
	} else {
		view.DeleteTime = a.cfg.Core.Now().UTC().Format(time.RFC3339)
	}
	op, err := doneOperation(s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation], ref, view)
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
	project, region, name := v2Target(r)
	if err := apis.ValidateServiceName(name); err != nil {
		return invalidField(err)
	}
	revs, etags, err := a.cfg.Core.ListRevisions(r.Context(), c, project, region, name)
	if err != nil {
		return err
	}
	idx := make([]int, len(revs))
	for i := range idx {
		idx[i] = i
	}
	page, next, err := pageOf(r, idx, func(i int) string { return revs[i].Metadata.Name })
	if err != nil {
		return err
	}
	out := listRevisionsV2Response{Revisions: []*apis.V2Revision{}, NextPageToken: next}
	for _, i := range page {
		v := apis.RevisionToV2(&revs[i])
		v.Etag = iam.Etag(etags[i])
		out.Revisions = append(out.Revisions, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getRevisionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region, name := v2Target(r)
	revName, method := splitMethod(r.PathValue("revision"))
	if method != "" {
		return notFound("no method %q on revisions", method)
	}
	if err := apis.ValidateServiceName(name); err != nil {
		return invalidField(err)
	}
	rv, rev, err := a.cfg.Core.GetRevision(r.Context(), c, project, region, name, revName)
	if err != nil {
		return err
	}
	v := apis.RevisionToV2(rv)
	v.Etag = iam.Etag(rev)
	return writeJSON(w, http.StatusOK, v)
}

func (a *API) deleteRevisionV2(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region, name := v2Target(r)
	revName, _ := splitMethod(r.PathValue("revision"))
	if _, _, err := a.cfg.Core.GetRevision(r.Context(), c, project, region, name, revName); err != nil {
		return err
	}
	if _, err := a.cfg.Core.DeleteRevision(r.Context(), c, project, region, revName); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"name": apis.V2ServiceName(project, region, name) + "/revisions/" + revName, "done": true})
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
	Service    string `json:"s,omitempty"`
	Generation int64  `json:"g,omitempty"`
	UID        string `json:"u,omitempty"`
	// Job and Execution name what a job's operation is about (v2_jobs.go).
	Job       string `json:"j,omitempty"`
	Execution string `json:"e,omitempty"`
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
		case opJobCreate, opJobUpdate, opJobDelete:
			err = apis.ValidateJobName(o.Job)
		case opJobRun, opExecutionCancel, opExecutionDelete:
			if err = apis.ValidateJobName(o.Job); err == nil {
				err = apis.ValidateExecutionName(o.Execution)
			}
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
// returns the service's store revision (0 when absent) to watch for change.
func (a *API) operationState(ctx context.Context, c *caller, project, region string, ref opRef) (*apis.V2Operation, int64, error) {
	if ref.Kind == opDelete || ref.Kind == opValidate {
		op, err := doneOperation(project, region, ref, &apis.V2Service{Name: apis.V2ServiceName(project, region, ref.Service), UID: ref.UID})
		return op, 0, err
	}
	op := &apis.V2Operation{Name: ref.name(project, region)}
	s, rev, err := a.cfg.Core.GetService(ctx, c, project, region, ref.Service)
	if admin.IsNotFound(err) || (err == nil && s.Metadata.UID != ref.UID) {
		op.Done = true
		op.Error = &apis.V2Status{Code: rpcNotFound, Message: "Service '" + ref.Service + "' was deleted before the operation completed."}
		op.Metadata, err = apis.V2AnyJSON(apis.V2ServiceTypeURL, &apis.V2Service{Name: apis.V2ServiceName(project, region, ref.Service), UID: ref.UID})
		return op, 0, err
	}
	if err != nil {
		return nil, 0, err
	}
	if op.Metadata, err = apis.V2AnyJSON(apis.V2ServiceTypeURL, a.v2View(s, rev)); err != nil {
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
func (a *API) writeOperation(w http.ResponseWriter, r *http.Request, c *caller, project, region string, ref opRef) error {
	if isJobOp(ref.Kind) {
		op, err := a.jobOperationState(r.Context(), c, project, region, ref)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, op)
	}
	op, _, err := a.operationState(r.Context(), c, project, region, ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, op)
}

// operationTarget parses and authorizes the operation in the path.
func (a *API) operationTarget(r *http.Request, c *caller, id string) (project, region string, ref opRef, err error) {
	project, region = pathScope(r)
	if ref, err = parseOpID(id); err != nil {
		return "", "", ref, err
	}
	if isJobOp(ref.Kind) {
		project, region, err = a.authorizeJobOperation(r.Context(), c, project, region, ref)
		return project, region, ref, err
	}
	project, region, err = a.cfg.Core.AuthorizeService(r.Context(), c, iam.PermServicesGet, project, region, ref.Service)
	if err != nil {
		return "", "", ref, err
	}
	return project, region, ref, nil
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
	return a.writeOperation(w, r, c, project, region, ref)
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
	if isJobOp(ref.Kind) {
		op, err := a.waitJobOperation(ctx, c, project, region, ref)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, op)
	}
	for {
		op, rev, err := a.operationState(r.Context(), c, project, region, ref)
		if err != nil {
			return err
		}
		if op.Done || !a.cfg.Core.WaitServiceChange(ctx, project, region, ref.Service, rev) {
			return writeJSON(w, http.StatusOK, op)
		}
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
	project, _ := pathScope(r)
	if _, err := a.cfg.Core.AuthorizeProject(r.Context(), c, project, iam.PermRunOperationsGet); err != nil {
		return err
	}
	return unimplemented("Listing operations is not supported by Usher: operations are computed from their service. Get one by the name its method returned.")
}
