package apis

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const (
	testProject = "proj"
	testRegion  = "us-central1"
	testURL     = "https://svc-abc.run.usher.localhost"
)

func ptr[T any](v T) *T { return &v }

// storedService is a service as Usher stores it after a create: defaults
// applied, location label set. mod changes it before defaults.
func storedService(name string, mod func(s *Service)) *Service {
	s := &Service{}
	s.Metadata.Name = name
	s.Metadata.Labels = map[string]string{LabelLocation: testRegion}
	s.Spec.Template.Spec.Containers = []Container{{Image: "registry.usher.localhost/hello:1"}}
	if mod != nil {
		mod(s)
	}
	s.SetDefaults(testProject, "default@proj.iam.usher.localhost")
	return s
}

// roundTripView returns what a v1 → v2 → v1 round trip must keep: the user's
// metadata and the spec (status and server-owned fields are the store's).
func roundTripView(s *Service) any {
	return struct {
		Name, Namespace                string
		Labels, Annotations            map[string]string
		TemplateLabels, TemplateAnnots map[string]string
		TemplateName                   string
		Spec                           RevisionSpec
		Traffic                        []TrafficTarget
	}{
		s.Metadata.Name, s.Metadata.Namespace,
		s.Metadata.Labels, s.Metadata.Annotations,
		s.Spec.Template.Metadata.Labels, s.Spec.Template.Metadata.Annotations,
		s.Spec.Template.Metadata.Name,
		s.Spec.Template.Spec,
		s.Spec.Traffic,
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var roundTripCases = []struct {
	name string
	mod  func(s *Service)
}{
	{"minimal", nil},
	{"env, command and args", func(s *Service) {
		c := &s.Spec.Template.Spec.Containers[0]
		c.Name = "app"
		c.Command = []string{"/bin/server", "--flag"}
		c.Args = []string{"serve", "--port=8080"}
		c.Env = []EnvVar{{Name: "GREETING", Value: "hello world"}, {Name: "EMPTY"}, {Name: "UNICODE", Value: "héllo ✓"}}
	}},
	{"concurrency, timeout, scale", func(s *Service) {
		s.Spec.Template.Spec.ContainerConcurrency = ptr(int64(7))
		s.Spec.Template.Spec.TimeoutSeconds = 900
		s.Spec.Template.Metadata.Annotations = map[string]string{AnnotationMinScale: "1", AnnotationMaxScale: "5"}
	}},
	{"concurrency one, max scale only", func(s *Service) {
		s.Spec.Template.Spec.ContainerConcurrency = ptr(int64(1))
		s.Spec.Template.Metadata.Annotations = map[string]string{AnnotationMaxScale: "3"}
	}},
	{"traffic split with tags", func(s *Service) {
		s.Spec.Template.Metadata.Name = "svc-00003-new"
		s.Spec.Traffic = []TrafficTarget{
			{RevisionName: "svc-00001-old", Percent: 10, Tag: "old"},
			{RevisionName: "svc-00002-mid", Percent: 30},
			{LatestRevision: ptr(true), Percent: 60, Tag: "latest"},
			{RevisionName: "svc-00002-mid", Tag: "canary"},
		}
	}},
	{"custom audiences and invoker IAM disabled", func(s *Service) {
		s.Metadata.Annotations = map[string]string{
			AnnotationCustomAudiences:    `["https://api.example.com","aud-2"]`,
			AnnotationInvokerIAMDisabled: "true",
		}
	}},
	{"service account and limits", func(s *Service) {
		s.Spec.Template.Spec.ServiceAccountName = "runner@proj.iam.usher.localhost"
		s.Spec.Template.Spec.Containers[0].Resources = &Resources{Limits: map[string]string{"cpu": "2", "memory": "1Gi"}}
		s.Spec.Template.Spec.Containers[0].Ports = []ContainerPort{{Name: "h2c", ContainerPort: 9090}}
	}},
	{"user and system labels and annotations", func(s *Service) {
		s.Metadata.Labels["team"] = "payments"
		s.Metadata.Labels["env"] = ""
		s.Metadata.Annotations = map[string]string{
			"example.com/owner":     "alice",
			AnnotationDescription:   "the payments API",
			AnnotationClientName:    "gcloud",
			AnnotationClientVersion: "500.0.0",
			AnnotationLaunchStage:   "BETA",
		}
		s.Spec.Template.Metadata.Labels = map[string]string{"version": "v2"}
		s.Spec.Template.Metadata.Annotations = map[string]string{
			"example.com/build":     "1234",
			AnnotationClientName:    "gcloud",
			AnnotationClientVersion: "500.0.0",
		}
	}},
	{"v1-only system annotations carried over", func(s *Service) {
		s.Metadata.Annotations = map[string]string{
			AnnotationCreator:                 "alice@example.com",
			"run.googleapis.com/operation-id": "op-1",
		}
		s.Spec.Template.Metadata.Annotations = map[string]string{
			AnnotationStartupCPUBoost: "true",
		}
	}},
}

// TestServiceV1V2RoundTrip renders stored services as v2, sends them back as
// a client would (JSON through ParseV2Service) and checks the v1 object
// built from them is the one stored.
func TestServiceV1V2RoundTrip(t *testing.T) {
	for _, tc := range roundTripCases {
		t.Run(tc.name, func(t *testing.T) {
			old := storedService("svc", tc.mod)
			if err := old.Validate(); err != nil {
				t.Fatalf("fixture does not validate: %v", err)
			}
			v := ServiceToV2(old, testURL)
			v.Etag = `"etag-1"`
			body, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseV2Service(body, nil, "")
			if err != nil {
				t.Fatalf("ParseV2Service(ServiceToV2 output) = %v, want accepted; body %s", err, body)
			}
			if parsed.Etag != v.Etag {
				t.Errorf("etag = %q, want %q", parsed.Etag, v.Etag)
			}
			for _, path := range []string{"direct", "json"} {
				in := v
				if path == "json" {
					in = parsed
				}
				got, err := ServiceFromV2(in, testProject, testRegion, "svc")
				if err != nil {
					t.Fatalf("%s: ServiceFromV2 = %v", path, err)
				}
				CarryOverV1Only(got, old)
				got.SetDefaults(testProject, "default@proj.iam.usher.localhost")
				if err := got.Validate(); err != nil {
					t.Fatalf("%s: round-tripped service does not validate: %v", path, err)
				}
				if g, w := roundTripView(got), roundTripView(old); !reflect.DeepEqual(g, w) {
					t.Errorf("%s: round trip\n got %s\nwant %s", path, jsonString(g), jsonString(w))
				}
				if got.InvokerIAMDisabled() != old.InvokerIAMDisabled() {
					t.Errorf("%s: InvokerIAMDisabled = %v, want %v", path, got.InvokerIAMDisabled(), old.InvokerIAMDisabled())
				}
				if g, w := got.CustomAudiences(), old.CustomAudiences(); !reflect.DeepEqual(g, w) {
					t.Errorf("%s: CustomAudiences = %q, want %q", path, g, w)
				}
			}
		})
	}
}

// TestServiceToV2 checks the fields a v2 client reads.
func TestServiceToV2(t *testing.T) {
	s := storedService("svc", func(s *Service) {
		s.Metadata.Labels["team"] = "a"
		s.Metadata.Annotations = map[string]string{
			AnnotationCreator:            "alice@example.com",
			AnnotationInvokerIAMDisabled: "true",
			AnnotationIAPEnabled:         "true",
			AnnotationCustomAudiences:    `["aud"]`,
			AnnotationLaunchStage:        "not-a-stage",
		}
		s.Spec.Template.Metadata.Annotations = map[string]string{AnnotationMinScale: "2"}
		s.Spec.Traffic = []TrafficTarget{{LatestRevision: ptr(true), Percent: 100}, {RevisionName: "svc-00001-abc", Tag: "blue"}}
	})
	s.Metadata.Generation = 3
	s.Status.ObservedGeneration = 2
	s.Status.LatestReadyRevisionName = "svc-00001-abc"
	s.Status.Conditions = []Condition{
		{Type: ConditionReady, Status: StatusTrue},
		{Type: "RoutesReady", Status: StatusFalse, Reason: "RevisionFailed", Severity: "warning"},
	}
	s.Status.Traffic = []TrafficTarget{{RevisionName: "svc-00001-abc", Percent: 100, LatestRevision: ptr(true)}, {RevisionName: "svc-00001-abc", Tag: "blue", URL: "https://blue---svc"}}
	v := ServiceToV2(s, testURL)

	checks := []struct {
		name      string
		got, want any
	}{
		{"name", v.Name, "projects/proj/locations/us-central1/services/svc"},
		{"labels (system ones hidden)", v.Labels, map[string]string{"team": "a"}},
		{"annotations (system ones hidden)", v.Annotations, map[string]string(nil)},
		{"creator", v.Creator, "alice@example.com"},
		{"invokerIamDisabled", v.InvokerIAMDisabled, true},
		{"iapEnabled", v.IAPEnabled, true},
		{"customAudiences", v.CustomAudiences, []string{"aud"}},
		{"launchStage (unknown stage shown as GA)", v.LaunchStage, V2LaunchStageGA},
		{"ingress", v.Ingress, V2IngressAll},
		{"uri", v.URI, testURL},
		{"urls", v.URLs, []string{testURL}},
		{"scaling", *v.Template.Scaling, V2RevisionScaling{MinInstanceCount: 2}},
		{"timeout", v.Template.Timeout, "300s"},
		{"concurrency", v.Template.MaxInstanceRequestConcurrency, int32(DefaultContainerConcurrency)},
		{"traffic", v.Traffic, []V2TrafficTarget{{Type: V2TrafficLatest, Percent: 100}, {Type: V2TrafficRevision, Revision: "svc-00001-abc", Tag: "blue"}}},
		{"trafficStatuses", v.TrafficStatuses, []V2TrafficTargetStatus{
			{Type: V2TrafficLatest, Revision: "svc-00001-abc", Percent: 100},
			{Type: V2TrafficRevision, Revision: "svc-00001-abc", Tag: "blue", URI: "https://blue---svc"},
		}},
		{"latestReadyRevision", v.LatestReadyRevision, "projects/proj/locations/us-central1/services/svc/revisions/svc-00001-abc"},
		{"latestCreatedRevision", v.LatestCreatedRevision, ""},
		{"reconciling", v.Reconciling, true},
		{"terminalCondition while reconciling", *v.TerminalCondition, V2Condition{Type: ConditionReady, State: V2ConditionReconciling}},
		{"conditions", v.Conditions, []V2Condition{{Type: "RoutesReady", State: V2ConditionFailed, Severity: "WARNING", Reason: "REVISION_FAILED"}}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("got %s, want %s", jsonString(c.got), jsonString(c.want))
			}
		})
	}
}

// TestRevisionToV2 checks the v2 view of stored revisions.
func TestRevisionToV2(t *testing.T) {
	base := func(conds ...Condition) *Revision {
		r := &Revision{APIVersion: ServingAPIVersion, Kind: KindRevision}
		r.Metadata.Name = "svc-00002-xyz"
		r.Metadata.Namespace = testProject
		r.Metadata.UID = "uid-1"
		r.Metadata.Generation = 1
		r.Metadata.CreationTimestamp = "2026-01-02T03:04:05Z"
		r.Metadata.Labels = map[string]string{LabelLocation: testRegion, LabelService: "svc", LabelConfigurationGeneration: "2", "team": "a"}
		r.Metadata.Annotations = map[string]string{AnnotationMinScale: "1", AnnotationMaxScale: "4", AnnotationCreator: "bob", "example.com/x": "y"}
		r.Spec = RevisionSpec{
			ContainerConcurrency: ptr(int64(5)),
			TimeoutSeconds:       60,
			ServiceAccountName:   "runner@proj.iam.usher.localhost",
			Containers: []Container{{
				Image: "img", Command: []string{"/a"}, Args: []string{"b"},
				Env:       []EnvVar{{Name: "K", Value: "V"}},
				Ports:     []ContainerPort{{Name: "http1", ContainerPort: 8080}},
				Resources: &Resources{Limits: map[string]string{"memory": "512Mi"}},
			}},
		}
		r.Status.ObservedGeneration = 1
		r.Status.Conditions = conds
		return r
	}
	wantBase := func() *V2Revision {
		return &V2Revision{
			Name:           "projects/proj/locations/us-central1/services/svc/revisions/svc-00002-xyz",
			UID:            "uid-1",
			Generation:     1,
			Labels:         map[string]string{"team": "a"},
			Annotations:    map[string]string{"example.com/x": "y"},
			CreateTime:     "2026-01-02T03:04:05Z",
			UpdateTime:     "2026-01-02T03:04:05Z",
			LaunchStage:    V2LaunchStageGA,
			Service:        "projects/proj/locations/us-central1/services/svc",
			Scaling:        &V2RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 4},
			Timeout:        "60s",
			ServiceAccount: "runner@proj.iam.usher.localhost",
			Containers: []V2Container{{
				Image: "img", Command: []string{"/a"}, Args: []string{"b"},
				Env:       []V2EnvVar{{Name: "K", Value: "V"}},
				Ports:     []V2ContainerPort{{Name: "http1", ContainerPort: 8080}},
				Resources: &V2ResourceRequirements{Limits: map[string]string{"memory": "512Mi"}},
			}},
			MaxInstanceRequestConcurrency: 5,
			ObservedGeneration:            1,
		}
	}
	cases := []struct {
		name string
		rev  *Revision
		want func(v *V2Revision)
	}{
		{"no conditions yet: reconciling", base(), func(v *V2Revision) { v.Reconciling = true }},
		{"ready", base(Condition{Type: ConditionReady, Status: StatusTrue, LastTransitionTime: "t"}), func(v *V2Revision) {
			v.Conditions = []V2Condition{{Type: ConditionReady, State: V2ConditionSucceeded, LastTransitionTime: "t"}}
		}},
		{"failed", base(Condition{Type: ConditionReady, Status: StatusFalse, Reason: "ContainerMissing", Message: "no image"}), func(v *V2Revision) {
			v.Conditions = []V2Condition{{Type: ConditionReady, State: V2ConditionFailed, Severity: "ERROR", Reason: "CONTAINER_MISSING", Message: "no image"}}
		}},
		{"unknown reason left out", base(Condition{Type: ConditionReady, Status: StatusUnknown, Reason: "Deploying"}), func(v *V2Revision) {
			v.Conditions = []V2Condition{{Type: ConditionReady, State: V2ConditionReconciling}}
			v.Reconciling = true
		}},
		{"no scale, no timeout, no concurrency", func() *Revision {
			r := base()
			r.Metadata.Annotations = nil
			r.Spec.TimeoutSeconds = 0
			r.Spec.ContainerConcurrency = nil
			return r
		}(), func(v *V2Revision) {
			v.Annotations, v.Scaling, v.Timeout, v.MaxInstanceRequestConcurrency, v.Reconciling = nil, nil, "", 0, true
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := wantBase()
			tc.want(want)
			got := RevisionToV2(tc.rev)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("RevisionToV2\n got %s\nwant %s", jsonString(got), jsonString(want))
			}
		})
	}
}

// currentV2 is the v2 view of a stored service an update starts from.
func currentV2(t *testing.T) *V2Service {
	t.Helper()
	s := storedService("svc", func(s *Service) {
		s.Metadata.Labels["team"] = "a"
		s.Metadata.Annotations = map[string]string{AnnotationDescription: "old description"}
		s.Spec.Template.Metadata.Annotations = map[string]string{AnnotationMinScale: "1", AnnotationMaxScale: "5"}
		s.Spec.Template.Spec.Containers[0].Env = []EnvVar{{Name: "A", Value: "1"}}
	})
	v := ServiceToV2(s, testURL)
	v.Etag = `"current"`
	return v
}

// TestParseV2ServiceUpdateMask checks that an update mask takes the named
// fields from the body (removing them when the body leaves them out) and
// keeps every other field of the current service.
func TestParseV2ServiceUpdateMask(t *testing.T) {
	const body = `{
		"etag": "\"sent\"",
		"labels": {"team": "b"},
		"description": "new description",
		"template": {
			"scaling": {"maxInstanceCount": "9"},
			"containers": [{"image": "new-image", "env": [{"name": "B", "value": "2"}]}]
		}
	}`
	type view struct {
		Labels      map[string]string
		Description string
		Image       string
		Env         []V2EnvVar
		Scaling     *V2RevisionScaling
		Timeout     string
		Etag        string
	}
	viewOf := func(v *V2Service) view {
		out := view{Labels: v.Labels, Description: v.Description, Etag: v.Etag}
		if v.Template != nil {
			out.Scaling, out.Timeout = v.Template.Scaling, v.Template.Timeout
			if len(v.Template.Containers) > 0 {
				out.Image, out.Env = v.Template.Containers[0].Image, v.Template.Containers[0].Env
			}
		}
		return out
	}
	oldView := view{
		Labels: map[string]string{"team": "a"}, Description: "old description", Image: "registry.usher.localhost/hello:1",
		Env: []V2EnvVar{{Name: "A", Value: "1"}}, Scaling: &V2RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 5}, Timeout: "300s",
		Etag: `"sent"`,
	}
	cases := []struct {
		name    string
		current bool
		mask    string
		want    func(v *view)
	}{
		{"no current: the body is the service", false, "labels", func(v *view) {
			*v = view{Labels: map[string]string{"team": "b"}, Description: "new description", Image: "new-image",
				Env: []V2EnvVar{{Name: "B", Value: "2"}}, Scaling: &V2RevisionScaling{MaxInstanceCount: 9}, Etag: `"sent"`}
		}},
		{"no mask: the body replaces everything", true, "", func(v *view) {
			*v = view{Labels: map[string]string{"team": "b"}, Description: "new description", Image: "new-image",
				Env: []V2EnvVar{{Name: "B", Value: "2"}}, Scaling: &V2RevisionScaling{MaxInstanceCount: 9}, Etag: `"sent"`}
		}},
		{"mask *: the body replaces everything", true, "*", func(v *view) {
			*v = view{Labels: map[string]string{"team": "b"}, Description: "new description", Image: "new-image",
				Env: []V2EnvVar{{Name: "B", Value: "2"}}, Scaling: &V2RevisionScaling{MaxInstanceCount: 9}, Etag: `"sent"`}
		}},
		{"labels only", true, "labels", func(v *view) { v.Labels = map[string]string{"team": "b"} }},
		{"labels and description, spaces and snake_case", true, " labels , description", func(v *view) {
			v.Labels = map[string]string{"team": "b"}
			v.Description = "new description"
		}},
		{"nested message", true, "template.scaling", func(v *view) { v.Scaling = &V2RevisionScaling{MaxInstanceCount: 9} }},
		{"nested field in snake_case", true, "template.scaling.max_instance_count", func(v *view) { v.Scaling = &V2RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 9} }},
		{"containers whole", true, "template.containers", func(v *view) {
			v.Image, v.Env = "new-image", []V2EnvVar{{Name: "B", Value: "2"}}
		}},
		{"named field absent from body is cleared", true, "template.timeout", func(v *view) { v.Timeout = "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cur *V2Service
			if tc.current {
				cur = currentV2(t)
			}
			got, err := ParseV2Service([]byte(body), cur, tc.mask)
			if err != nil {
				t.Fatalf("ParseV2Service = %v, want accepted", err)
			}
			want := oldView
			tc.want(&want)
			if g := viewOf(got); !reflect.DeepEqual(g, want) {
				t.Errorf("got %s\nwant %s", jsonString(g), jsonString(want))
			}
			if _, err := ServiceFromV2(got, testProject, testRegion, "svc"); err != nil {
				t.Errorf("ServiceFromV2 = %v, want accepted", err)
			}
		})
	}
	if cur := currentV2(t); cur.Etag != `"current"` {
		t.Errorf("current etag = %q after parsing, want it untouched", cur.Etag)
	}
}

// TestParseV2ServiceAccepts checks the decoding rules of Google's front end:
// snake_case names, enums by number, int64 as strings, output-only fields
// and nulls ignored.
func TestParseV2ServiceAccepts(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		check func(v *V2Service) (got, want any)
	}{
		{"snake_case names", `{"template":{"service_account":"a@b","max_instance_request_concurrency":3,"containers":[{"image":"i"}]}}`,
			func(v *V2Service) (any, any) {
				return []any{v.Template.ServiceAccount, v.Template.MaxInstanceRequestConcurrency}, []any{"a@b", int32(3)}
			}},
		{"enum by number", `{"ingress":1,"launchStage":3,"traffic":[{"type":2,"revision":"r","percent":100}]}`,
			func(v *V2Service) (any, any) {
				return []any{v.Ingress, v.LaunchStage, v.Traffic[0].Type}, []any{V2IngressAll, "BETA", V2TrafficRevision}
			}},
		{"enum number as string", `{"traffic":[{"type":"1","percent":100}]}`,
			func(v *V2Service) (any, any) { return v.Traffic[0].Type, V2TrafficLatest }},
		{"int64 as string", `{"template":{"scaling":{"minInstanceCount":"2","maxInstanceCount":"10"}}}`,
			func(v *V2Service) (any, any) {
				return *v.Template.Scaling, V2RevisionScaling{MinInstanceCount: 2, MaxInstanceCount: 10}
			}},
		{"output-only fields ignored", `{"uid":"x","generation":"7","uri":"https://evil","conditions":[{"type":"Ready"}],"reconciling":true,"terminalCondition":{"state":"CONDITION_SUCCEEDED"}}`,
			func(v *V2Service) (any, any) {
				return []any{v.UID, v.Generation, v.URI, v.Conditions, v.Reconciling, v.TerminalCondition},
					[]any{"", int64(0), "", []V2Condition(nil), false, (*V2Condition)(nil)}
			}},
		{"nulls ignored", `{"description":null,"template":{"vpcAccess":null,"containers":[{"image":"i","livenessProbe":null}]}}`,
			func(v *V2Service) (any, any) { return v.Template.Containers[0].Image, "i" }},
		{"empty unsupported values accepted", `{"binaryAuthorization":{},"iapEnabled":false,"scaling":{"scalingMode":"AUTOMATIC"},"template":{"executionEnvironment":"EXECUTION_ENVIRONMENT_UNSPECIFIED","containers":[{"image":"i","resources":{"cpuIdle":true,"startupCpuBoost":false}}]}}`,
			func(v *V2Service) (any, any) {
				return v.Template.Containers[0].Resources.Limits, map[string]string(nil)
			}},
		{"tcp startup probe on the serving port", `{"template":{"containers":[{"image":"i","startupProbe":{"tcpSocket":{"port":8080},"periodSeconds":1,"failureThreshold":3}}]}}`,
			func(v *V2Service) (any, any) { return v.Template.Containers[0].Image, "i" }},
		{"empty object", `{}`, func(v *V2Service) (any, any) { return v.Template, (*V2RevisionTemplate)(nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseV2Service([]byte(tc.body), nil, "")
			if err != nil {
				t.Fatalf("ParseV2Service = %v, want accepted", err)
			}
			if got, want := tc.check(v); !reflect.DeepEqual(got, want) {
				t.Errorf("got %s, want %s", jsonString(got), jsonString(want))
			}
		})
	}
}

// TestParseV2ServiceRefuses checks that what Usher cannot honour, and what
// v2 does not define, is refused with an error naming the field; an
// attacker's malformed body is refused before anything is decoded.
func TestParseV2ServiceRefuses(t *testing.T) {
	cases := []struct {
		name, body, mask, want string
	}{
		{"unknown field", `{"bogus":1}`, "", `Unknown name "bogus" at 'service'`},
		{"unknown nested field", `{"template":{"containers":[{"image":"i","privileged":true}]}}`, "", `Unknown name "privileged" at 'service.template.containers[0]'`},
		{"vpc access", `{"template":{"vpcAccess":{"connector":"c"}}}`, "", "service.template.vpcAccess: is not supported"},
		{"vpc access snake_case", `{"template":{"vpc_access":{"connector":"c"}}}`, "", "service.template.vpcAccess: is not supported"},
		{"secret volume of another project", `{"template":{"volumes":[{"name":"v","secret":{"secret":"s","items":[{"path":"x","mode":"rw"}]}}]}}`, "", "service.template.volumes[0].secret.items[0].mode"},
		{"nfs volume", `{"template":{"volumes":[{"name":"v","nfs":{"server":"s"}}]}}`, "", "service.template.volumes[0].nfs"},
		{"volume mount subPath", `{"template":{"containers":[{"image":"i","volumeMounts":[{"name":"v","mountPath":"/v","subPath":"x"}]}]}}`, "", "volumeMounts[0].subPath"},
		{"binary authorization", `{"binaryAuthorization":{"useDefault":true}}`, "", "service.binaryAuthorization"},
		{"ingress none", `{"ingress":"INGRESS_TRAFFIC_NONE"}`, "", "service.ingress: INGRESS_TRAFFIC_NONE is not supported"},
		{"ingress none by number", `{"ingress":4}`, "", "service.ingress: INGRESS_TRAFFIC_NONE"},
		{"unknown enum name", `{"launchStage":"GENERALLY"}`, "", "service.launchStage: invalid value"},
		{"unknown enum number", `{"traffic":[{"type":9}]}`, "", "service.traffic[0].type: invalid value"},
		{"service-level min instances", `{"scaling":{"minInstanceCount":1}}`, "", "service.scaling.minInstanceCount"},
		{"manual scaling", `{"scaling":{"scalingMode":"MANUAL"}}`, "", "service.scaling.scalingMode: MANUAL is not supported"},
		{"grpc probe with an unknown field", `{"template":{"containers":[{"image":"i","livenessProbe":{"grpc":{"port":8080,"serviceName":"x"}}}]}}`, "", `Unknown name "serviceName"`},
		{"probe headers", `{"template":{"containers":[{"image":"i","startupProbe":{"httpGet":{"path":"/","httpHeaders":[{"name":"a","value":"b"}]}}}]}}`, "", "service.template.containers[0].startupProbe.httpGet.httpHeaders"},
		{"secret env from a config map", `{"template":{"containers":[{"image":"i","env":[{"name":"S","valueSource":{"configMapKeyRef":{}}}]}]}}`, "", `Unknown name "configMapKeyRef" at 'service.template.containers[0].env[0].valueSource'`},
		{"startup probe on another port name", `{"template":{"containers":[{"image":"i","startupProbe":{"tcpSocket":{"host":"10.0.0.1"}}}]}}`, "", "service.template.containers[0].startupProbe"},
		{"cpu throttled", `{"template":{"containers":[{"image":"i","resources":{"cpuIdle":false}}]}}`, "", "service.template.containers[0].resources.cpuIdle"},
		{"gen1", `{"template":{"executionEnvironment":"EXECUTION_ENVIRONMENT_GEN1"}}`, "", "service.template.executionEnvironment"},
		{"node selector", `{"template":{"nodeSelector":{"accelerator":"nvidia-l4"}}}`, "", "service.template.nodeSelector"},
		{"integer not a number", `{"template":{"scaling":{"maxInstanceCount":"ten"}}}`, "", `service.template.scaling.maxInstanceCount: "ten" is not an integer`},
		{"list element not an object", `{"traffic":[1]}`, "", "service.traffic[0]: must be an object"},
		{"message not an object", `{"template":"x"}`, "", "service.template: must be an object"},
		{"not JSON", `{`, "", "Invalid JSON payload"},
		{"not an object", `[]`, "", "Invalid JSON payload"},
		{"trailing data", `{}{}`, "", "Unexpected data after the object"},
		{"wrong type", `{"labels":"x"}`, "", "Invalid JSON payload"},
		{"mask names an unknown field", `{}`, "labels,bogus", `update_mask: "bogus" is not a field`},
		{"mask names an output field", `{}`, "uri", `update_mask: "uri" is not a field`},
		{"mask into a list", `{}`, "template.containers.image", "update_mask: \"template.containers.image\": containers cannot be updated in part"},
		{"mask into a scalar", `{}`, "description.x", "update_mask"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cur *V2Service
			if tc.mask != "" {
				cur = currentV2(t)
			}
			v, err := ParseV2Service([]byte(tc.body), cur, tc.mask)
			if err == nil {
				t.Fatalf("ParseV2Service accepted, got %s; want an error containing %q", jsonString(v), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestServiceFromV2Refuses checks what ServiceFromV2 refuses after a body
// parsed: each error names the field.
func TestServiceFromV2Refuses(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"no template", `{}`, "service.template: is required"},
		{"no container", `{"template":{}}`, "service.template.containers: exactly one container"},
		{"sidecar", `{"template":{"containers":[{"image":"a"},{"image":"b"}]}}`, "service.template.containers: exactly one container is required, got 2"},
		{"no image", `{"template":{"containers":[{"image":" "}]}}`, "service.template.containers[0].image: is required"},
		{"system label", `{"labels":{"cloud.googleapis.com/location":"elsewhere"},"template":{"containers":[{"image":"i"}]}}`, "service.labels: key \"cloud.googleapis.com/location\" uses a system prefix"},
		{"system annotation", `{"annotations":{"run.googleapis.com/invoker-iam-disabled":"true"},"template":{"containers":[{"image":"i"}]}}`, "service.annotations: key \"run.googleapis.com/invoker-iam-disabled\""},
		{"system template annotation", `{"template":{"annotations":{"autoscaling.knative.dev/maxScale":"1000"},"containers":[{"image":"i"}]}}`, "service.template.annotations"},
		{"system template label", `{"template":{"labels":{"usher.dev/x":"y"},"containers":[{"image":"i"}]}}`, "service.template.labels"},
		{"negative min", `{"template":{"scaling":{"minInstanceCount":-1},"containers":[{"image":"i"}]}}`, "service.template.scaling.minInstanceCount: -1 must not be negative"},
		{"negative max", `{"template":{"scaling":{"maxInstanceCount":"-3"},"containers":[{"image":"i"}]}}`, "service.template.scaling.maxInstanceCount"},
		{"fractional timeout", `{"template":{"timeout":"1.5s","containers":[{"image":"i"}]}}`, "service.template.timeout: \"1.5s\" must be a positive whole number"},
		{"timeout without unit", `{"template":{"timeout":"300","containers":[{"image":"i"}]}}`, "service.template.timeout: \"300\" is not a duration"},
		{"negative timeout", `{"template":{"timeout":"-5s","containers":[{"image":"i"}]}}`, "service.template.timeout"},
		{"latest with a revision", `{"traffic":[{"type":"TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST","revision":"r","percent":100}],"template":{"containers":[{"image":"i"}]}}`, "service.traffic[0].revision: must be empty"},
		{"revision without a name", `{"traffic":[{"type":"TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION","percent":100}],"template":{"containers":[{"image":"i"}]}}`, "service.traffic[0].revision: is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseV2Service([]byte(tc.body), nil, "")
			if err != nil {
				t.Fatalf("ParseV2Service = %v, want accepted (ServiceFromV2 refuses this)", err)
			}
			s, err := ServiceFromV2(v, testProject, testRegion, "svc")
			if err == nil {
				t.Fatalf("ServiceFromV2 accepted, got %s; want an error containing %q", jsonString(s), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestServiceFromV2Traffic checks how v2 traffic targets become v1 ones,
// including an unspecified type (a revision name decides it).
func TestServiceFromV2Traffic(t *testing.T) {
	body := `{"template":{"containers":[{"image":"i"}]},"traffic":[
		{"percent":50},
		{"revision":"svc-1","percent":25,"tag":"one"},
		{"type":"TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED","revision":"svc-2","percent":25},
		{"type":"TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST","tag":"head"}
	]}`
	v, err := ParseV2Service([]byte(body), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServiceFromV2(v, testProject, testRegion, "svc")
	if err != nil {
		t.Fatal(err)
	}
	want := []TrafficTarget{
		{LatestRevision: ptr(true), Percent: 50},
		{RevisionName: "svc-1", Percent: 25, Tag: "one"},
		{RevisionName: "svc-2", Percent: 25},
		{LatestRevision: ptr(true), Tag: "head"},
	}
	if !reflect.DeepEqual(s.Spec.Traffic, want) {
		t.Errorf("traffic = %s, want %s", jsonString(s.Spec.Traffic), jsonString(want))
	}
}

// TestCarryOverV1Only checks that a v2 write keeps the system keys v2 cannot
// express and never revives one a v2 field decides.
func TestCarryOverV1Only(t *testing.T) {
	old := storedService("svc", func(s *Service) {
		s.Metadata.Labels["cloud.googleapis.com/extra"] = "kept"
		s.Metadata.Annotations = map[string]string{
			AnnotationCreator:            "alice",
			AnnotationInvokerIAMDisabled: "true",
			AnnotationCustomAudiences:    `["old"]`,
			AnnotationDescription:        "old",
			"example.com/user":           "old user value",
		}
		s.Spec.Template.Metadata.Annotations = map[string]string{
			AnnotationMinScale:                         "3",
			"run.googleapis.com/execution-environment": "gen2",
		}
	})
	v, err := ParseV2Service([]byte(`{"description":"new","template":{"containers":[{"image":"i"}]}}`), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServiceFromV2(v, testProject, testRegion, "svc")
	if err != nil {
		t.Fatal(err)
	}
	CarryOverV1Only(s, old)
	checks := []struct {
		name      string
		got, want map[string]string
	}{
		{"service labels", s.Metadata.Labels, map[string]string{LabelLocation: testRegion, "cloud.googleapis.com/extra": "kept"}},
		{"service annotations", s.Metadata.Annotations, map[string]string{AnnotationCreator: "alice", AnnotationDescription: "new"}},
		{"template annotations", s.Spec.Template.Metadata.Annotations, map[string]string{"run.googleapis.com/execution-environment": "gen2"}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("got %s, want %s", jsonString(c.got), jsonString(c.want))
			}
		})
	}
	if s.InvokerIAMDisabled() {
		t.Errorf("InvokerIAMDisabled = true after a v2 write that left it unset, want false (the old annotation must not come back)")
	}
}

// TestV2AnyJSON checks the google.protobuf.Any rendering of operations.
func TestV2AnyJSON(t *testing.T) {
	cases := []struct {
		name    string
		v       any
		want    string
		wantErr bool
	}{
		{"object", &V2Status{Code: 5, Message: "m"}, `{"@type":"t","code":5,"message":"m"}`, false},
		{"empty object", struct{}{}, `{"@type":"t"}`, false},
		{"not an object", []int{1}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := V2AnyJSON("t", tc.v)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestV2IngressAndDefaultURI: v2's ingress enum and defaultUriDisabled are
// stored as the v1 annotations and shown back; a disabled default URI hides
// every URL, tags' included.
func TestV2IngressAndDefaultURI(t *testing.T) {
	for _, tc := range []struct{ body, annotation string }{
		{`{"ingress":"INGRESS_TRAFFIC_ALL"}`, ""},
		{`{"ingress":"INGRESS_TRAFFIC_INTERNAL_ONLY"}`, IngressInternal},
		{`{"ingress":2}`, IngressInternal},
		{`{"ingress":"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"}`, IngressInternalAndLB},
	} {
		body := strings.TrimSuffix(tc.body, "}") + `,"defaultUriDisabled":true,"template":{"containers":[{"image":"i"}]}}`
		v, err := ParseV2Service([]byte(body), nil, "")
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		s, err := ServiceFromV2(v, "proj", "us-central1", "svc")
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got := s.Metadata.Annotations[AnnotationIngress]; got != tc.annotation {
			t.Errorf("%s: ingress annotation %q, want %q", body, got, tc.annotation)
		}
		if !s.DefaultURLDisabled() {
			t.Errorf("%s: default URL not disabled", body)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", body, err)
		}
		s.Status.Traffic = []TrafficTarget{{RevisionName: "svc-1", Tag: "blue", URL: "https://blue---svc"}}
		back := ServiceToV2(s, testURL)
		if back.Ingress != v.Ingress || !back.DefaultURIDisabled || back.URI != "" || len(back.URLs) != 0 || back.TrafficStatuses[0].URI != "" {
			t.Errorf("%s: shown back as ingress %s, defaultUriDisabled %v, uri %q, urls %v, tag uri %q; want %s, true and no URL",
				body, back.Ingress, back.DefaultURIDisabled, back.URI, back.URLs, back.TrafficStatuses[0].URI, v.Ingress)
		}
	}
}

// TestV2WorkingDir: a service container's workingDir round-trips through
// v2 and is checked like v1's; a job's is refused (jobs do not run it yet).
func TestV2WorkingDir(t *testing.T) {
	v, err := ParseV2Service([]byte(`{"template":{"containers":[{"image":"i","working_dir":"/srv"}]}}`), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServiceFromV2(v, "proj", "us-central1", "svc")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Spec.Template.Spec.Containers[0].WorkingDir; got != "/srv" {
		t.Fatalf("workingDir %q, want /srv", got)
	}
	if got := ServiceToV2(s, testURL).Template.Containers[0].WorkingDir; got != "/srv" {
		t.Errorf("shown back as %q, want /srv", got)
	}
	s.Spec.Template.Spec.Containers[0].WorkingDir = "srv"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "workingDir") {
		t.Errorf("relative workingDir: %v, want a refusal naming workingDir", err)
	}
	if _, err := ParseV2Job([]byte(`{"template":{"template":{"containers":[{"image":"i","workingDir":"/srv"}]}}}`)); err == nil || !strings.Contains(err.Error(), "workingDir") {
		t.Errorf("a job's workingDir: %v, want a refusal naming it", err)
	}
}

// TestV2Volumes: in-memory volumes and their mounts round-trip through v2
// (medium MEMORY, or unset: Cloud Run's only medium); a volume of another
// kind, or none, is refused.
func TestV2Volumes(t *testing.T) {
	body := `{"template":{"volumes":[{"name":"cache","emptyDir":{"medium":"MEMORY","sizeLimit":"64Mi"}},{"name":"scratch","emptyDir":{}}],
		"containers":[{"image":"i","volumeMounts":[{"name":"cache","mountPath":"/cache"},{"name":"scratch","mountPath":"/tmp/s"}]}]}}`
	v, err := ParseV2Service([]byte(body), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServiceFromV2(v, "proj", "us-central1", "svc")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	spec := s.Spec.Template.Spec
	want := []Volume{{Name: "cache", EmptyDir: &EmptyDirVolumeSource{Medium: MediumMemory, SizeLimit: "64Mi"}}, {Name: "scratch", EmptyDir: &EmptyDirVolumeSource{Medium: MediumMemory}}}
	if !reflect.DeepEqual(spec.Volumes, want) || len(spec.Containers[0].VolumeMounts) != 2 || spec.Containers[0].VolumeMounts[0] != (VolumeMount{Name: "cache", MountPath: "/cache"}) {
		t.Fatalf("stored volumes %+v, mounts %+v", spec.Volumes, spec.Containers[0].VolumeMounts)
	}
	back := ServiceToV2(s, testURL).Template
	if len(back.Volumes) != 2 || back.Volumes[0].EmptyDir.Medium != V2MediumMemory || back.Volumes[0].EmptyDir.SizeLimit != "64Mi" || len(back.Containers[0].VolumeMounts) != 2 {
		t.Errorf("shown back as %+v, %+v", back.Volumes, back.Containers[0].VolumeMounts)
	}
	if _, err := ServiceFromV2(&V2Service{Template: &V2RevisionTemplate{Volumes: []V2Volume{{Name: "v"}}, Containers: []V2Container{{Image: "i"}}}}, "proj", "us-central1", "svc"); err == nil {
		t.Errorf("a volume of no kind accepted")
	}
}

// TestValidateVolumes: what a v1 revision's volumes and mounts may be.
func TestValidateVolumes(t *testing.T) {
	mem := func(name string) Volume {
		return Volume{Name: name, EmptyDir: &EmptyDirVolumeSource{Medium: MediumMemory}}
	}
	for _, tc := range []struct {
		name    string
		volumes []Volume
		mounts  []VolumeMount
		want    string // "" accepted
	}{
		{"in memory", []Volume{mem("v")}, []VolumeMount{{Name: "v", MountPath: "/cache"}}, ""},
		{"unmounted", []Volume{mem("v")}, nil, ""},
		{"disk medium", []Volume{{Name: "v", EmptyDir: &EmptyDirVolumeSource{}}}, nil, "volumes[0].emptyDir.medium"},
		{"no source", []Volume{{Name: "v"}}, nil, "volumes[0]"},
		{"bad name", []Volume{mem("V_1")}, nil, "volumes[0].name"},
		{"same name twice", []Volume{mem("v"), mem("v")}, nil, "volumes[1].name"},
		{"mount of no volume", nil, []VolumeMount{{Name: "v", MountPath: "/v"}}, "volumeMounts[0].name"},
		{"relative mount", []Volume{mem("v")}, []VolumeMount{{Name: "v", MountPath: "v"}}, "volumeMounts[0].mountPath"},
		{"root", []Volume{mem("v")}, []VolumeMount{{Name: "v", MountPath: "/"}}, "volumeMounts[0].mountPath"},
		{"escape", []Volume{mem("v")}, []VolumeMount{{Name: "v", MountPath: "/v/../etc"}}, "volumeMounts[0].mountPath"},
		{"over /proc", []Volume{mem("v")}, []VolumeMount{{Name: "v", MountPath: "/proc/self"}}, "volumeMounts[0].mountPath"},
		{"over /dev", []Volume{mem("v")}, []VolumeMount{{Name: "v", MountPath: "/dev"}}, "volumeMounts[0].mountPath"},
		{"one path twice", []Volume{mem("v"), mem("w")}, []VolumeMount{{Name: "v", MountPath: "/a"}, {Name: "w", MountPath: "/a"}}, "volumeMounts[1].mountPath"},
	} {
		s := &Service{Metadata: ObjectMeta{Name: "svc"}, Spec: ServiceSpec{Template: RevisionTemplate{Spec: RevisionSpec{
			Containers: []Container{{Image: "i", VolumeMounts: tc.mounts}}, Volumes: tc.volumes}}}}
		err := s.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal naming %s", tc.name, err, tc.want)
		}
	}
}

// TestV2Probes: startup and liveness probes round-trip through v2 and are
// checked like v1's.
func TestV2Probes(t *testing.T) {
	body := `{"template":{"containers":[{"image":"i","startupProbe":{"httpGet":{"path":"/ready"},"periodSeconds":"2","failureThreshold":5},
		"livenessProbe":{"tcpSocket":{"port":8080},"periodSeconds":3}}]}}`
	v, err := ParseV2Service([]byte(body), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServiceFromV2(v, "proj", "us-central1", "svc")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	c := s.Spec.Template.Spec.Containers[0]
	if c.StartupProbe == nil || c.StartupProbe.HTTPGet == nil || c.StartupProbe.HTTPGet.Path != "/ready" || c.StartupProbe.PeriodSeconds != 2 || c.StartupProbe.FailureThreshold != 5 ||
		c.LivenessProbe == nil || c.LivenessProbe.TCPSocket == nil || c.LivenessProbe.PeriodSeconds != 3 {
		t.Fatalf("stored probes %+v, %+v", c.StartupProbe, c.LivenessProbe)
	}
	back := ServiceToV2(s, testURL).Template.Containers[0]
	if back.StartupProbe == nil || back.StartupProbe.HTTPGet.Path != "/ready" || back.LivenessProbe == nil || back.LivenessProbe.TCPSocket == nil {
		t.Errorf("shown back as %+v, %+v", back.StartupProbe, back.LivenessProbe)
	}
	for _, bad := range []Probe{
		{}, // a liveness probe needs an action
		{HTTPGet: &HTTPGetAction{Path: "ready"}},
		{HTTPGet: &HTTPGetAction{Path: "/"}, TCPSocket: &TCPSocketAction{}},
		{TCPSocket: &TCPSocketAction{}, PeriodSeconds: 1, TimeoutSeconds: 2},
		{TCPSocket: &TCPSocketAction{}, FailureThreshold: -1},
		{TCPSocket: &TCPSocketAction{}, SuccessThreshold: 2},
	} {
		s.Spec.Template.Spec.Containers[0].LivenessProbe = &bad
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "livenessProbe") {
			t.Errorf("liveness probe %+v: %v, want a refusal naming it", bad, err)
		}
	}
}
