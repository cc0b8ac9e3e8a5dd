package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2/apierror"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	runv2 "google.golang.org/api/run/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/controller"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/state"
)

const (
	parentV2  = "projects/" + project + "/locations/" + region
	failImage = "file:///usher-test/fails-to-start"
)

// instantInstances starts every revision at once, except failImage's.
type instantInstances struct{}

func (instantInstances) Start(_ context.Context, rev *apis.Revision) error {
	if rev.Spec.Containers[0].Image == failImage {
		return errors.New("exit status 1")
	}
	return nil
}

func (instantInstances) Retire(context.Context, func(string) bool) {}

// startController runs the real controller over the harness's store, so
// services become Ready (or fail) as under `usher serve`.
func startController(t *testing.T, h *harness) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctrl := controller.New(controller.Config{Store: h.st, Instances: instantInstances{},
		ServiceURL: func(p, r, n string) string { return serviceURL(p, r, n) }})
	ctrl.Start(ctx)
	mir := mirror.New(h.st, mirror.Config{
		Decode: func(key string, value []byte) (any, bool, error) {
			if !strings.HasPrefix(key, state.ServicesPrefix) {
				return nil, false, nil
			}
			s := new(apis.Service)
			return s, true, json.Unmarshal(value, s)
		},
		OnChange: func(objects map[string]mirror.Object, _ int64) { ctrl.Observe(objects) },
	})
	if err := mir.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	go mir.Run(ctx)
}

// serviceURL is the URL the harness's API renders.
func serviceURL(p, r, n string) string {
	return apis.ServiceURL("http", n, p, r, "run.localhost", "8080")
}

func tokenSource(tok string) option.ClientOption {
	return option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, TokenType: "Bearer"}))
}

// gapicServices is cloud.google.com/go/run/apiv2's REST client, as email.
func (h *harness) gapicServices(email string) *run.ServicesClient {
	h.t.Helper()
	c, err := run.NewServicesRESTClient(context.Background(), option.WithEndpoint(h.server.URL), tokenSource(h.token(email)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// discovery is google.golang.org/api/run/v2's client, as email.
func (h *harness) discovery(email string) *runv2.Service {
	h.t.Helper()
	c, err := runv2.NewService(context.Background(), option.WithEndpoint(h.server.URL+"/"), tokenSource(h.token(email)))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// httpCode is the HTTP status of a client library error (0 if none).
func httpCode(err error) int {
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		return ae.HTTPCode()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func helloService(image string) *runpb.Service {
	return &runpb.Service{
		Labels: map[string]string{"team": "blue"},
		Template: &runpb.RevisionTemplate{
			Scaling:                       &runpb.RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 3},
			Timeout:                       durationpb.New(120 * time.Second),
			MaxInstanceRequestConcurrency: 20,
			Containers: []*runpb.Container{{
				Image: image,
				Args:  []string{"--serve"},
				Env:   []*runpb.EnvVar{{Name: "GREETING", Values: &runpb.EnvVar_Value{Value: "hi"}}},
			}},
		},
	}
}

// TestV2GoogleClientLibrary drives the v2 API with cloud.google.com/go/run/apiv2
// (REST transport) through a service's whole life.
func TestV2GoogleClientLibrary(t *testing.T) {
	h := newHarness(t)
	startController(t, h)
	ctx := waitCtx(t)
	c := h.gapicServices(owner)
	name := parentV2 + "/services/hello"
	url := serviceURL(project, region, "hello")

	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parentV2, ServiceId: "hello", Service: helloService("file:///bin/true")})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	if !strings.HasPrefix(op.Name(), parentV2+"/operations/") {
		t.Errorf("operation name = %q, want under %s/operations/", op.Name(), parentV2)
	}
	created, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("create Wait: %v", err)
	}
	if created.Name != name || created.Uri != url || !slices.Equal(created.Urls, []string{url}) {
		t.Errorf("created name %q uri %q urls %v, want %q %q", created.Name, created.Uri, created.Urls, name, url)
	}
	if got := created.GetTerminalCondition(); got.GetType() != "Ready" || got.GetState() != runpb.Condition_CONDITION_SUCCEEDED {
		t.Errorf("terminalCondition = %v, want Ready CONDITION_SUCCEEDED", got)
	}
	if created.Generation != 1 || created.ObservedGeneration != 1 || created.Reconciling {
		t.Errorf("generation %d observed %d reconciling %v, want 1 1 false", created.Generation, created.ObservedGeneration, created.Reconciling)
	}
	if !strings.HasPrefix(created.LatestReadyRevision, name+"/revisions/hello-00001-") {
		t.Errorf("latestReadyRevision = %q", created.LatestReadyRevision)
	}
	if created.Creator != owner || created.Uid == "" || created.Etag == "" || created.CreateTime == nil {
		t.Errorf("creator %q uid %q etag %q createTime %v", created.Creator, created.Uid, created.Etag, created.CreateTime)
	}

	got, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: name})
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	tmpl := got.GetTemplate()
	ctr := tmpl.GetContainers()[0]
	if ctr.Image != "file:///bin/true" || ctr.Env[0].GetValue() != "hi" || !slices.Equal(ctr.Args, []string{"--serve"}) ||
		tmpl.GetScaling().GetMinInstanceCount() != 1 || tmpl.GetScaling().GetMaxInstanceCount() != 3 ||
		tmpl.GetTimeout().AsDuration() != 120*time.Second || tmpl.MaxInstanceRequestConcurrency != 20 ||
		got.Labels["team"] != "blue" || got.Ingress != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
		t.Errorf("GetService = %v", got)
	}
	if len(got.Traffic) != 1 || got.Traffic[0].Type != runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST || got.Traffic[0].Percent != 100 {
		t.Errorf("traffic = %v, want 100%% to latest", got.Traffic)
	}
	if len(got.TrafficStatuses) != 1 || got.TrafficStatuses[0].Percent != 100 || !strings.HasPrefix(got.TrafficStatuses[0].Revision, "hello-00001-") {
		t.Errorf("trafficStatuses = %v", got.TrafficStatuses)
	}

	var listed []string
	for it := c.ListServices(ctx, &runpb.ListServicesRequest{Parent: parentV2}); ; {
		s, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("ListServices: %v", err)
		}
		listed = append(listed, s.Name)
	}
	if !slices.Equal(listed, []string{name}) {
		t.Errorf("ListServices = %v, want [%s]", listed, name)
	}

	// Read-modify-write, as the library's users do: the whole service goes
	// back, output-only fields and enum numbers included.
	stale := got.Etag
	got.InvokerIamDisabled = true
	got.Template.Containers[0].Env[0].Values = &runpb.EnvVar_Value{Value: "hello"}
	upOp, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: got})
	if err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	updated, err := upOp.Wait(ctx)
	if err != nil {
		t.Fatalf("update Wait: %v", err)
	}
	if updated.Generation != 2 || !updated.InvokerIamDisabled || updated.Template.Containers[0].Env[0].GetValue() != "hello" ||
		!strings.HasPrefix(updated.LatestReadyRevision, name+"/revisions/hello-00002-") {
		t.Errorf("updated = generation %d invokerIamDisabled %v env %v ready %q", updated.Generation, updated.InvokerIamDisabled,
			updated.Template.Containers[0].Env, updated.LatestReadyRevision)
	}

	// A stale etag is refused and changes nothing.
	got.Etag = stale
	got.Template.Containers[0].Image = "file:///bin/false"
	if _, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: got}); httpCode(err) != http.StatusConflict || !strings.Contains(err.Error(), "stale") {
		t.Errorf("update with stale etag: %v, want 409 ABORTED", err)
	}

	revs, err := run.NewRevisionsRESTClient(ctx, option.WithEndpoint(h.server.URL), tokenSource(h.token(owner)))
	if err != nil {
		t.Fatal(err)
	}
	defer revs.Close()
	var revNames []string
	for it := revs.ListRevisions(ctx, &runpb.ListRevisionsRequest{Parent: name}); ; {
		r, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("ListRevisions: %v", err)
		}
		if r.Service != name || r.GetContainers()[0].Image != "file:///bin/true" {
			t.Errorf("revision %s: service %q containers %v", r.Name, r.Service, r.Containers)
		}
		revNames = append(revNames, r.Name)
	}
	if len(revNames) != 2 {
		t.Fatalf("ListRevisions = %v, want 2 revisions", revNames)
	}
	if r, err := revs.GetRevision(ctx, &runpb.GetRevisionRequest{Name: updated.LatestReadyRevision}); err != nil || r.Containers[0].Env[0].GetValue() != "hello" {
		t.Errorf("GetRevision = %v, %v", r, err)
	}

	// IAM through the v2 paths: the same policy v1 serves.
	pol, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name, Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}})
	if err != nil {
		t.Fatalf("GetIamPolicy: %v", err)
	}
	if len(pol.Bindings) != 0 || len(pol.Etag) == 0 {
		t.Errorf("empty policy = %v", pol)
	}
	set, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: &iampb.Policy{
		Etag: pol.Etag, Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"user:alice@example.com"}}}}})
	if err != nil {
		t.Fatalf("SetIamPolicy: %v", err)
	}
	if _, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: &iampb.Policy{
		Etag: pol.Etag, Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}}}); httpCode(err) != http.StatusConflict {
		t.Errorf("SetIamPolicy with stale etag: %v, want 409", err)
	}
	v1 := h.policy(client.ServicePath(project, region, "hello"))
	if !strings.Contains(v1.raw, "user:alice@example.com") || strings.Contains(v1.raw, "allUsers") || v1.body["etag"] != base64.StdEncoding.EncodeToString(set.Etag) {
		t.Errorf("v1 view of the policy = %s", v1.raw)
	}
	perms, err := h.gapicServices("alice@example.com").TestIamPermissions(ctx, &iampb.TestIamPermissionsRequest{Resource: name,
		Permissions: []string{"run.routes.invoke", "run.services.get", "run.services.setIamPolicy"}})
	if err != nil {
		t.Fatalf("TestIamPermissions: %v", err)
	}
	if !slices.Equal(perms.Permissions, []string{"run.routes.invoke"}) {
		t.Errorf("TestIamPermissions = %v, want [run.routes.invoke]", perms.Permissions)
	}

	delOp, err := c.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: name, Etag: stale})
	if httpCode(err) != http.StatusConflict {
		t.Errorf("DeleteService with stale etag: %v, want 409", err)
	}
	delOp, err = c.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: name})
	if err != nil {
		t.Fatalf("DeleteService: %v", err)
	}
	deleted, err := delOp.Wait(ctx)
	if err != nil || deleted.Name != name {
		t.Fatalf("delete Wait = %v, %v", deleted, err)
	}
	if _, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: name}); httpCode(err) != http.StatusNotFound {
		t.Errorf("GetService after delete: %v, want 404", err)
	}
	if r := h.policy(client.ServicePath(project, region, "hello")); r.body["etag"] != iam.EmptyEtag {
		t.Errorf("policy after delete = %s, want none", r.raw)
	}
}

// TestV2DiscoveryClient drives the v2 API with google.golang.org/api/run/v2.
func TestV2DiscoveryClient(t *testing.T) {
	h := newHarness(t)
	startController(t, h)
	c := h.discovery(owner)
	services := c.Projects.Locations.Services
	name := parentV2 + "/services/disco"

	op, err := services.Create(parentV2, &runv2.GoogleCloudRunV2Service{
		Template:        &runv2.GoogleCloudRunV2RevisionTemplate{Containers: []*runv2.GoogleCloudRunV2Container{{Image: "file:///bin/true"}}},
		CustomAudiences: []string{"https://disco.example.com"},
	}).ServiceId("disco").Do()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for !op.Done {
		if op, err = c.Projects.Locations.Operations.Wait(op.Name, &runv2.GoogleLongrunningWaitOperationRequest{Timeout: "30s"}).Do(); err != nil {
			t.Fatalf("Operations.Wait: %v", err)
		}
	}
	if op.Error != nil {
		t.Fatalf("operation failed: %v", op.Error)
	}
	var created runv2.GoogleCloudRunV2Service
	if err := json.Unmarshal(op.Response, &created); err != nil {
		t.Fatal(err)
	}
	if created.Name != name || created.TerminalCondition.State != "CONDITION_SUCCEEDED" || !slices.Equal(created.CustomAudiences, []string{"https://disco.example.com"}) {
		t.Errorf("created = %+v", created)
	}
	if again, err := c.Projects.Locations.Operations.Get(op.Name).Do(); err != nil || !again.Done {
		t.Errorf("Operations.Get = %+v, %v", again, err)
	}

	got, err := services.Get(name).Do()
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.InvokerIamDisabled || got.Template.Timeout != "300s" || got.Template.MaxInstanceRequestConcurrency != apis.DefaultContainerConcurrency || got.Template.ServiceAccount != apis.DefaultServiceAccount(project) {
		t.Errorf("Get = invokerIamDisabled %v timeout %q concurrency %d serviceAccount %q", got.InvokerIamDisabled, got.Template.Timeout,
			got.Template.MaxInstanceRequestConcurrency, got.Template.ServiceAccount)
	}

	// invokerIamDisabled round trip, alone through an update mask: no new revision.
	patchOp, err := services.Patch(name, &runv2.GoogleCloudRunV2Service{InvokerIamDisabled: true}).UpdateMask("invokerIamDisabled").Do()
	if err != nil {
		t.Fatalf("Patch: %v", err)
	}
	if !patchOp.Done {
		t.Errorf("metadata-only patch not done at once: %+v", patchOp)
	}
	got, err = services.Get(name).Do()
	if err != nil || !got.InvokerIamDisabled || got.Generation != 1 || got.Template.Containers[0].Image != "file:///bin/true" {
		t.Fatalf("after patch: %+v, %v", got, err)
	}
	v1 := h.call(h.token(owner), "GET", client.ServicePath(project, region, "disco"), nil)
	ann, _ := v1.body["metadata"].(map[string]any)["annotations"].(map[string]any)
	if ann[apis.AnnotationInvokerIAMDisabled] != "true" || ann[apis.AnnotationCustomAudiences] != `["https://disco.example.com"]` {
		t.Errorf("v1 annotations = %v", ann)
	}
	got.InvokerIamDisabled = false
	got.ForceSendFields = []string{"InvokerIamDisabled"}
	if _, err := services.Patch(name, got).Do(); err != nil {
		t.Fatalf("Patch back: %v", err)
	}
	if got, err = services.Get(name).Do(); err != nil || got.InvokerIamDisabled || got.Generation != 1 {
		t.Errorf("after patching back: invokerIamDisabled %v generation %d, %v", got.InvokerIamDisabled, got.Generation, err)
	}

	list, err := services.List(parentV2).Do()
	if err != nil || len(list.Services) != 1 || list.Services[0].Name != name {
		t.Errorf("List = %+v, %v", list, err)
	}
	if list, err := services.List("projects/" + project + "/locations/-").Do(); err != nil || len(list.Services) != 1 {
		t.Errorf("List in every location = %+v, %v", list, err)
	}

	_, err = services.Create(parentV2, &runv2.GoogleCloudRunV2Service{
		Template: &runv2.GoogleCloudRunV2RevisionTemplate{
			Containers: []*runv2.GoogleCloudRunV2Container{{Image: "file:///bin/true"}},
			VpcAccess:  &runv2.GoogleCloudRunV2VpcAccess{Connector: "projects/p/locations/l/connectors/c"},
		},
	}).ServiceId("vpc").Do()
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusBadRequest || !strings.Contains(ge.Message, "service.template.vpcAccess") {
		t.Errorf("create with vpcAccess: %v, want 400 naming service.template.vpcAccess", err)
	}

	del, err := services.Delete(name).Do()
	if err != nil || !del.Done {
		t.Fatalf("Delete = %+v, %v", del, err)
	}
	if _, err := services.Get(name).Do(); httpCode(err) != http.StatusNotFound {
		t.Errorf("Get after delete: %v, want 404", err)
	}
}

// TestV2V1Interop: one stored object, two views.
func TestV2V1Interop(t *testing.T) {
	h := newHarness(t)
	startController(t, h)
	ctx := waitCtx(t)
	tok := h.token(owner)
	c := h.gapicServices(owner)

	// v1 → v2, with annotations gcloud writes that v2 cannot express.
	v1svc := apis.Service{Metadata: apis.ObjectMeta{Name: "from-v1", Annotations: map[string]string{AnnotationClientName: "gcloud"}},
		Spec: apis.ServiceSpec{Template: apis.RevisionTemplate{
			Metadata: apis.ObjectMeta{Annotations: map[string]string{apis.AnnotationMaxScale: "5", apis.AnnotationCPUThrottling: "true"}},
			Spec:     apis.RevisionSpec{Containers: []apis.Container{{Image: "file:///bin/true"}}}}}}
	if r := h.call(tok, "POST", client.ServicesPath(project, region), v1svc); r.status != 200 {
		t.Fatalf("v1 create: %d %s", r.status, r.raw)
	}
	name := parentV2 + "/services/from-v1"
	var got *runpb.Service
	waitFor(t, func() bool {
		var err error
		got, err = c.GetService(ctx, &runpb.GetServiceRequest{Name: name})
		return err == nil && got.ObservedGeneration == 1
	})
	if got.Uri != serviceURL(project, region, "from-v1") || got.Template.Scaling.GetMaxInstanceCount() != 5 || got.Client != "gcloud" || len(got.Template.Annotations) != 0 {
		t.Errorf("v2 view of a v1 service = %v", got)
	}
	// Writing it back unchanged through v2 rolls out nothing and keeps what
	// only v1 can say.
	op, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: got})
	if err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	if same, err := op.Wait(ctx); err != nil || same.Generation != 1 {
		t.Errorf("unchanged update = generation %d, %v; want 1", same.GetGeneration(), err)
	}
	r := h.call(tok, "GET", client.ServicePath(project, region, "from-v1"), nil)
	var back apis.Service
	if err := json.Unmarshal([]byte(r.raw), &back); err != nil {
		t.Fatal(err)
	}
	if back.Spec.Template.Metadata.Annotations[apis.AnnotationCPUThrottling] != "true" || back.Metadata.Annotations[AnnotationClientName] != "gcloud" {
		t.Errorf("v1 annotations after a v2 update: %v / %v", back.Metadata.Annotations, back.Spec.Template.Metadata.Annotations)
	}

	// v2 → v1.
	createOp, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parentV2, ServiceId: "from-v2", Service: helloService("file:///bin/true")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createOp.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	r = h.call(tok, "GET", client.ServicePath(project, region, "from-v2"), nil)
	var v1view apis.Service
	if err := json.Unmarshal([]byte(r.raw), &v1view); err != nil || r.status != 200 {
		t.Fatalf("v1 GET = %d %s", r.status, r.raw)
	}
	spec := v1view.Spec.Template.Spec
	ann := v1view.Spec.Template.Metadata.Annotations
	if !v1view.Ready() || v1view.Status.URL != serviceURL(project, region, "from-v2") || *spec.ContainerConcurrency != 20 || spec.TimeoutSeconds != 120 ||
		ann[apis.AnnotationMinScale] != "1" || ann[apis.AnnotationMaxScale] != "3" || v1view.Metadata.Labels["team"] != "blue" ||
		spec.Containers[0].Env[0] != (apis.EnvVar{Name: "GREETING", Value: "hi"}) {
		t.Errorf("v1 view of a v2 service = %s", r.raw)
	}
	if r := h.call(tok, "GET", client.RevisionsPath(project, region)+"?labelSelector="+apis.LabelService+"%3Dfrom-v2", nil); r.status != 200 || !strings.Contains(r.raw, "from-v2-00001-") {
		t.Errorf("v1 revisions = %d %s", r.status, r.raw)
	}
}

// AnnotationClientName is gcloud's client annotation.
const AnnotationClientName = "run.googleapis.com/client-name"

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestV2OperationFailure: a revision that cannot start fails the operation
// with Ready's message.
func TestV2OperationFailure(t *testing.T) {
	h := newHarness(t)
	startController(t, h)
	ctx := waitCtx(t)
	c := h.gapicServices(owner)
	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parentV2, ServiceId: "broken", Service: helloService(failImage)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = op.Wait(ctx)
	var ae *apierror.APIError
	if !errors.As(err, &ae) || ae.GRPCStatus().Code() != codes.FailedPrecondition || !strings.Contains(ae.GRPCStatus().Message(), "failed to start") {
		t.Fatalf("Wait = %v, want FAILED_PRECONDITION with the start failure", err)
	}
	got, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: parentV2 + "/services/broken"})
	if err != nil || got.TerminalCondition.State != runpb.Condition_CONDITION_FAILED || got.TerminalCondition.GetReason() != runpb.Condition_REVISION_FAILED {
		t.Errorf("GetService = %v, %v", got.GetTerminalCondition(), err)
	}
}

// TestV2Requests covers the wire format without client libraries: what is
// refused (naming the field) and what is tolerated.
func TestV2Requests(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)
	create := func(id, body string) response {
		return h.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId="+id, json.RawMessage(body))
	}
	const ctr = `"containers":[{"image":"file:///bin/true"}]`
	refused := []struct {
		name, body, want string
	}{
		{"vpc access", `{"template":{` + ctr + `,"vpcAccess":{"connector":"c"}}}`, "service.template.vpcAccess"},
		{"volume of no kind", `{"template":{` + ctr + `,"volumes":[{"name":"v"}]}}`, "service.template.volumes"},
		{"secret volume of another project", `{"template":{"volumes":[{"name":"v","secret":{"secret":"projects/other/secrets/s"}}],"containers":[{"image":"file:///bin/true","volumeMounts":[{"name":"v","mountPath":"/s"}]}]}}`, "volumes[0].secret.secretName"},
		{"mount of no volume", `{"template":{"containers":[{"image":"x","volumeMounts":[{"name":"v","mountPath":"/v"}]}]}}`, "volumeMounts[0].name"},
		{"gen2", `{"template":{` + ctr + `,"executionEnvironment":"EXECUTION_ENVIRONMENT_GEN2"}}`, "service.template.executionEnvironment"},
		{"no ingress by name", `{"ingress":"INGRESS_TRAFFIC_NONE","template":{` + ctr + `}}`, "service.ingress"},
		{"no ingress by number", `{"ingress":4,"template":{` + ctr + `}}`, "service.ingress"},
		{"sidecar", `{"template":{"containers":[{"image":"a"},{"image":"b"}]}}`, "service.template.containers"},
		{"grpc liveness probe on another port", `{"template":{"containers":[{"image":"x","livenessProbe":{"grpc":{"port":9}}}]}}`, "livenessProbe.grpc.port"},
		{"two probe actions", `{"template":{"containers":[{"image":"x","livenessProbe":{"grpc":{},"tcpSocket":{}}}]}}`, "set one of"},
		{"liveness probe on another port", `{"template":{"containers":[{"image":"x","livenessProbe":{"httpGet":{"path":"/","port":9}}}]}}`, "livenessProbe.httpGet.port"},
		{"manual scaling", `{"scaling":{"manualInstanceCount":2},"template":{` + ctr + `}}`, "service.scaling.manualInstanceCount"},
		{"secret env with a bad version", `{"template":{"containers":[{"image":"x","env":[{"name":"K","valueSource":{"secretKeyRef":{"secret":"s","version":"newest"}}}]}]}}`, "secretKeyRef"},
		{"secret env with value", `{"template":{"containers":[{"image":"x","env":[{"name":"K","value":"v","valueSource":{"secretKeyRef":{"secret":"s"}}}]}]}}`, "cannot be set together"},
		{"session affinity", `{"template":{` + ctr + `,"sessionAffinity":true}}`, "service.template.sessionAffinity"},
		{"binary authorization", `{"binaryAuthorization":{"useDefault":true},"template":{` + ctr + `}}`, "service.binaryAuthorization"},
		{"node selector", `{"template":{` + ctr + `,"nodeSelector":{"accelerator":"nvidia-l4"}}}`, "service.template.nodeSelector"},
		{"unknown field", `{"template":{` + ctr + `,"vpcAcess":{}}}`, `Unknown name "vpcAcess"`},
		{"system annotation", `{"annotations":{"run.googleapis.com/ingress":"internal"},"template":{` + ctr + `}}`, "service.annotations"},
		{"no template", `{}`, "service.template"},
		{"no image", `{"template":{"containers":[{}]}}`, "service.template.containers[0].image"},
		{"fractional timeout", `{"template":{` + ctr + `,"timeout":"1.5s"}}`, "service.template.timeout"},
		{"bad enum", `{"traffic":[{"type":"SOMETIMES","percent":100}],"template":{` + ctr + `}}`, "service.traffic[0].type"},
		{"reserved env", `{"template":{"containers":[{"image":"x","env":[{"name":"PORT","value":"1"}]}]}}`, "PORT is reserved"},
	}
	for _, tt := range refused {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			r := create("refused", tt.body)
			msg, _ := r.body["error"].(map[string]any)["message"].(string)
			if r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" || !strings.Contains(msg, tt.want) {
				t.Fatalf("create = %d %s, want 400 INVALID_ARGUMENT naming %q", r.status, r.raw, tt.want)
			}
		})
	}
	if r := h.call(tok, "GET", "/v2/"+parentV2+"/services/refused", nil); r.status != 404 {
		t.Fatalf("a refused create stored something: %d %s", r.status, r.raw)
	}

	// What clients send back after a read, the way protojson writes it:
	// output-only fields, enum numbers, int64 strings, snake_case names, and
	// a startup probe that is what Usher does anyway.
	tolerated := `{
		"name": "projects/test-project/locations/us-central1/services/ok",
		"uid": "x", "generation": "7", "createTime": "2024-01-01T00:00:00Z", "reconciling": true,
		"terminal_condition": {"type": "Ready", "state": 4}, "conditions": [{"type": "RoutesReady", "state": 2}],
		"ingress": 1, "launchStage": 4, "uri": "http://elsewhere", "traffic": [{"type": 1, "percent": 100}],
		"template": {
			"execution_environment": 0, "max_instance_request_concurrency": "5",
			"scaling": {"maxInstanceCount": 2},
			"containers": [{"image": "file:///bin/true", "ports": [{"containerPort": 9000}],
				"startupProbe": {"tcpSocket": {"port": 9000}, "timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1},
				"resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true}}]
		}
	}`
	r := create("ok", tolerated)
	if r.status != 200 || r.body["done"] != false || !strings.HasPrefix(r.body["name"].(string), parentV2+"/operations/") {
		t.Fatalf("create = %d %s", r.status, r.raw)
	}
	meta, _ := r.body["metadata"].(map[string]any)
	if meta["@type"] != apis.V2ServiceTypeURL || meta["generation"] != "1" || meta["uri"] != serviceURL(project, region, "ok") || meta["reconciling"] != true {
		t.Errorf("operation metadata = %v", meta)
	}
	get := h.call(tok, "GET", "/v2/"+parentV2+"/services/ok", nil)
	tmpl, _ := get.body["template"].(map[string]any)
	if tmpl["maxInstanceRequestConcurrency"] != float64(5) || !strings.Contains(get.raw, `"containerPort": 9000`) || !strings.Contains(get.raw, `"memory": "512Mi"`) {
		t.Errorf("GET = %s", get.raw)
	}
	if tc, _ := get.body["terminalCondition"].(map[string]any); tc["state"] != apis.V2ConditionReconciling {
		t.Errorf("terminalCondition before the controller ran = %v, want CONDITION_RECONCILING", tc)
	}
	if r := create("ok", tolerated); r.status != 409 || r.errStatus() != "ALREADY_EXISTS" {
		t.Errorf("second create = %d %s, want 409 ALREADY_EXISTS", r.status, r.raw)
	}

	// validateOnly checks and answers without writing.
	if r := h.call(tok, "POST", "/v2/"+parentV2+"/services?serviceId=dry&validateOnly=true", json.RawMessage(`{"template":{`+ctr+`}}`)); r.status != 200 || r.body["done"] != true {
		t.Errorf("validateOnly create = %d %s", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v2/"+parentV2+"/services/dry", nil); r.status != 404 {
		t.Errorf("validateOnly stored the service: %d %s", r.status, r.raw)
	}

	// An update mask changes only what it names.
	patch := h.call(tok, "PATCH", "/v2/"+parentV2+"/services/ok?updateMask=labels,template.scaling.maxInstanceCount",
		json.RawMessage(`{"labels":{"env":"test"},"template":{"scaling":{"maxInstanceCount":9},"containers":[{"image":"ignored"}]}}`))
	if patch.status != 200 {
		t.Fatalf("masked PATCH = %d %s", patch.status, patch.raw)
	}
	get = h.call(tok, "GET", "/v2/"+parentV2+"/services/ok", nil)
	if !strings.Contains(get.raw, `"env": "test"`) || !strings.Contains(get.raw, `"maxInstanceCount": 9`) || !strings.Contains(get.raw, "file:///bin/true") || get.body["generation"] != "2" {
		t.Errorf("after masked PATCH = %s", get.raw)
	}
	if r := h.call(tok, "PATCH", "/v2/"+parentV2+"/services/ok?updateMask=uri", json.RawMessage(`{}`)); r.status != 400 {
		t.Errorf("mask naming an output-only field = %d %s, want 400", r.status, r.raw)
	}
	if r := h.call(tok, "PATCH", "/v2/"+parentV2+"/services/ok", json.RawMessage(`{"name":"projects/test-project/locations/us-central1/services/other","template":{`+ctr+`}}`)); r.status != 400 {
		t.Errorf("PATCH naming another service = %d %s, want 400", r.status, r.raw)
	}
	if r := h.call(tok, "PATCH", "/v2/"+parentV2+"/services/new?allowMissing=true", json.RawMessage(`{"template":{`+ctr+`}}`)); r.status != 200 {
		t.Errorf("PATCH allowMissing = %d %s", r.status, r.raw)
	}

	// Operations: unknown IDs are not found; listing is not offered.
	if r := h.call(tok, "GET", "/v2/"+parentV2+"/operations/bm9wZQ", nil); r.status != 404 {
		t.Errorf("unknown operation = %d %s, want 404", r.status, r.raw)
	}
	if r := h.call(tok, "GET", "/v2/"+parentV2+"/operations", nil); r.status != 501 || r.errStatus() != "UNIMPLEMENTED" {
		t.Errorf("list operations = %d %s, want 501", r.status, r.raw)
	}
	// :wait returns the operation still running once its timeout passes.
	opName := r.body["name"].(string)
	if w := h.call(tok, "POST", "/v2/"+opName+":wait", map[string]string{"timeout": "0.1s"}); w.status != 200 || w.body["done"] != false {
		t.Errorf("wait = %d %s, want the operation not done", w.status, w.raw)
	}
}

// TestV2Pagination: list pages follow nextPageToken to every service once.
func TestV2Pagination(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		h.createService(n)
	}
	tok := h.token(owner)
	var names []string
	path := "/v2/" + parentV2 + "/services?pageSize=2"
	for pages := 0; ; pages++ {
		r := h.call(tok, "GET", path, nil)
		if r.status != 200 || pages > 3 {
			t.Fatalf("list = %d %s", r.status, r.raw)
		}
		for _, s := range r.body["services"].([]any) {
			names = append(names, s.(map[string]any)["name"].(string))
		}
		next, _ := r.body["nextPageToken"].(string)
		if next == "" {
			break
		}
		path = "/v2/" + parentV2 + "/services?pageSize=2&pageToken=" + next
	}
	var want []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		want = append(want, parentV2+"/services/"+n)
	}
	if !slices.Equal(names, want) {
		t.Errorf("paged list = %v, want %v", names, want)
	}
	if r := h.call(tok, "GET", "/v2/"+parentV2+"/services?pageToken=%25%25", nil); r.status != 400 {
		t.Errorf("bad page token = %d %s, want 400", r.status, r.raw)
	}
}

// TestV2Authorization: v2 asks for the same permissions v1 does.
func TestV2Authorization(t *testing.T) {
	h := newHarness(t)
	h.createService("svc")
	c := client.New(client.Config{Server: h.server.URL, Credential: h.secret})
	grant := func(path, role, member string) {
		t.Helper()
		if _, err := c.ModifyIamPolicy(context.Background(), path, func(p *iam.Policy) (bool, error) {
			return p.AddBinding(role, member, nil), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	grant(client.ProjectPath(project), "roles/run.viewer", "user:viewer@example.com")
	grant(client.ServicePath(project, region, "svc"), "roles/run.developer", "user:svcdev@example.com")

	svc := "/v2/" + parentV2 + "/services/svc"
	body := json.RawMessage(`{"template":{"containers":[{"image":"file:///bin/true"}]}}`)
	opName := h.call(h.token(owner), "PATCH", svc, body).body["name"].(string)
	tests := []struct {
		who, method, path string
		body              any
		want              int
	}{
		{"stranger@example.com", "GET", "/v2/" + parentV2 + "/services", nil, 403},
		{"stranger@example.com", "GET", svc, nil, 403},
		{"stranger@example.com", "PATCH", svc, body, 403},
		{"stranger@example.com", "DELETE", svc, nil, 403},
		{"stranger@example.com", "GET", svc + "/revisions", nil, 403},
		{"stranger@example.com", "GET", "/v2/" + opName, nil, 403},
		{"stranger@example.com", "POST", svc + ":getIamPolicy", map[string]any{}, 403},
		{"stranger@example.com", "POST", "/v2/" + parentV2 + "/services?serviceId=new", body, 403},
		{"viewer@example.com", "GET", "/v2/" + parentV2 + "/services", nil, 200},
		{"viewer@example.com", "GET", svc, nil, 200},
		{"viewer@example.com", "GET", svc + ":getIamPolicy", nil, 200},
		{"viewer@example.com", "GET", "/v2/" + opName, nil, 200},
		{"viewer@example.com", "PATCH", svc, body, 403},
		{"viewer@example.com", "DELETE", svc, nil, 403},
		{"viewer@example.com", "POST", svc + ":setIamPolicy", map[string]any{"policy": map[string]any{}}, 403},
		{"svcdev@example.com", "GET", "/v2/" + parentV2 + "/services", nil, 403}, // service grants do not reach the project
		{"svcdev@example.com", "PATCH", svc, body, 200},
		{"svcdev@example.com", "GET", "/v2/" + opName, nil, 200},
		{"svcdev@example.com", "DELETE", svc + "/revisions/svc-00001-abc", nil, 404},
		{"svcdev@example.com", "POST", svc + ":setIamPolicy", map[string]any{"policy": map[string]any{}}, 403},
		{owner, "GET", "/v2/" + parentV2 + "/services/missing", nil, 404},
		{owner, "GET", "/v2/projects/no-such-project/locations/" + region + "/services", nil, 404},
		{"", "GET", svc, nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.who+" "+tt.method+" "+tt.path, func(t *testing.T) {
			tok := ""
			if tt.who != "" {
				tok = h.token(tt.who)
			}
			r := h.call(tok, tt.method, tt.path, tt.body)
			if r.status != tt.want {
				t.Fatalf("got %d %s, want %d", r.status, r.raw, tt.want)
			}
			if tt.want == 403 && (r.errStatus() != "PERMISSION_DENIED" || !strings.Contains(r.raw, "Permission 'run.")) {
				t.Errorf("403 body = %s, want PERMISSION_DENIED naming the permission", r.raw)
			}
		})
	}
}

// TestParseV2Service checks the decoding rules on their own.
func TestParseV2Service(t *testing.T) {
	current := &apis.V2Service{
		Labels:             map[string]string{"keep": "me"},
		InvokerIAMDisabled: true,
		Template: &apis.V2RevisionTemplate{
			Timeout:    "60s",
			Scaling:    &apis.V2RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 4},
			Containers: []apis.V2Container{{Image: "img"}},
		},
	}
	tests := []struct {
		name, body, mask string
		check            func(*apis.V2Service) bool
	}{
		{"full replace", `{"template":{"containers":[{"image":"new"}]}}`, "",
			func(v *apis.V2Service) bool {
				return v.Template.Containers[0].Image == "new" && v.Labels == nil && !v.InvokerIAMDisabled
			}},
		{"star mask replaces", `{"template":{"containers":[{"image":"new"}]}}`, "*",
			func(v *apis.V2Service) bool { return v.Labels == nil }},
		{"mask keeps the rest", `{"labels":{"a":"b"}}`, "labels",
			func(v *apis.V2Service) bool {
				return v.Labels["a"] == "b" && v.Labels["keep"] == "" && v.InvokerIAMDisabled && v.Template.Timeout == "60s"
			}},
		{"masked field absent from the body is cleared", `{}`, "invoker_iam_disabled",
			func(v *apis.V2Service) bool { return !v.InvokerIAMDisabled && v.Labels["keep"] == "me" }},
		{"nested mask", `{"template":{"scaling":{"maxInstanceCount":8}}}`, "template.scaling.maxInstanceCount",
			func(v *apis.V2Service) bool {
				return v.Template.Scaling.MaxInstanceCount == 8 && v.Template.Scaling.MinInstanceCount == 1 && v.Template.Containers[0].Image == "img"
			}},
		{"etag comes from the body", `{"etag":"AAAAAAAAAAc="}`, "labels",
			func(v *apis.V2Service) bool { return v.Etag == "AAAAAAAAAAc=" }},
		{"enum numbers and names", `{"traffic":[{"type":2,"revision":"r","percent":100}],"launchStage":"BETA"}`, "",
			func(v *apis.V2Service) bool {
				return v.Traffic[0].Type == apis.V2TrafficRevision && v.LaunchStage == "BETA"
			}},
		{"null is unset", `{"description":null,"template":{"vpcAccess":null,"containers":null}}`, "",
			func(v *apis.V2Service) bool { return v.Template != nil && v.Template.Containers == nil }},
		{"empty unsupported messages are unset", `{"template":{"vpcAccess":{},"volumes":[],"encryptionKey":"","sessionAffinity":false}}`, "",
			func(v *apis.V2Service) bool { return v.Template != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := apis.ParseV2Service([]byte(tt.body), current, tt.mask)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				b, _ := json.Marshal(got)
				t.Errorf("ParseV2Service = %s", b)
			}
		})
	}
	for _, bad := range []string{`[]`, `{"template":`, `{} {}`, `{"template":{"containers":{"image":"x"}}}`, `{"traffic":[{"percent":"x"}]}`} {
		if _, err := apis.ParseV2Service([]byte(bad), nil, ""); err == nil {
			t.Errorf("ParseV2Service(%s) accepted", bad)
		}
	}
}
