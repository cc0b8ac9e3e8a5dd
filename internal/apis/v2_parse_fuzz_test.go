package apis

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseV2Service feeds untrusted request bodies and update masks to
// ParseV2Service, as a client of the v2 API can. It must never panic; a body
// it accepts must convert to v1 (ServiceFromV2) and then validate, or be
// refused with an error, and what it stores must render back as v2.
func FuzzParseV2Service(f *testing.F) {
	seeds := []struct{ body, mask string }{
		{`{}`, ""},
		{`{"template":{"containers":[{"image":"i"}]}}`, ""},
		{`{"name":"projects/p/locations/l/services/svc","labels":{"a":"b"},"annotations":{"x/y":"z"},"description":"d",
		  "invokerIamDisabled":true,"customAudiences":["aud"],"ingress":"INGRESS_TRAFFIC_ALL","launchStage":"BETA",
		  "traffic":[{"type":"TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION","revision":"svc-1","percent":90,"tag":"t"},{"type":1,"percent":10}],
		  "template":{"revision":"svc-2","scaling":{"minInstanceCount":"1","maxInstanceCount":5},"timeout":"60s",
		   "serviceAccount":"sa@p.iam","maxInstanceRequestConcurrency":"8",
		   "containers":[{"name":"c","image":"i","command":["/x"],"args":["a"],"env":[{"name":"K","value":"V"}],
		    "resources":{"limits":{"cpu":"1","memory":"512Mi"},"cpuIdle":true},"ports":[{"name":"http1","containerPort":"8080"}],
		    "startupProbe":{"tcpSocket":{"port":8080}}}]}}`, ""},
		{`{"labels":{"a":"c"},"template":{"scaling":{"max_instance_count":"3"}}}`, "labels,template.scaling"},
		{`{"template":{"timeout":"1.5s"}}`, "template.timeout"},
		{`{"template":{"containers":[{"image":"i","env":[{"name":"S","valueSource":{}}]}]}}`, "*"},
		{`{"traffic":[1]}`, "traffic"},
		{`{"template":"x"}`, "template.containers.image"},
		{`{"labels":{"run.googleapis.com/x":"y"},"template":{"containers":[{"image":"i"}]}}`, ""},
		{`{"launchStage":99,"ingress":"2"}`, ""},
		{`{"template":{"scaling":{"minInstanceCount":-1,"maxInstanceCount":"99999999999"}}}`, ""},
		{`{"generation":"x","uri":{},"conditions":"no"}`, "uri"},
		{`{}{}`, ""},
		{`[`, ""},
		{`null`, "description"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.mask)
	}
	current := func() *V2Service {
		s := &Service{}
		s.Metadata.Name = "svc"
		s.Metadata.Labels = map[string]string{LabelLocation: "us-central1", "team": "a"}
		s.Metadata.Annotations = map[string]string{AnnotationCustomAudiences: `["a"]`}
		s.Spec.Template.Metadata.Annotations = map[string]string{AnnotationMinScale: "1"}
		s.Spec.Template.Spec.Containers = []Container{{Image: "img", Env: []EnvVar{{Name: "A", Value: "1"}}}}
		s.SetDefaults("proj", "default@proj.iam")
		return ServiceToV2(s, "https://svc")
	}
	f.Fuzz(func(t *testing.T, body []byte, mask string) {
		for _, cur := range []*V2Service{nil, current()} {
			v, err := ParseV2Service(body, cur, mask)
			if err != nil {
				if v != nil {
					t.Fatalf("ParseV2Service returned both %+v and error %v", v, err)
				}
				continue
			}
			if v == nil {
				t.Fatal("ParseV2Service returned nil without an error")
			}
			// The parsed service must encode and decode again (what the
			// admin API answers with).
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("accepted service does not encode: %v", err)
			}
			s, err := ServiceFromV2(v, "proj", "us-central1", "svc")
			if err != nil {
				if s != nil {
					t.Fatalf("ServiceFromV2 returned both a service and error %v", err)
				}
				continue
			}
			if s == nil {
				t.Fatal("ServiceFromV2 returned nil without an error")
			}
			if cur != nil {
				old := &Service{}
				old.Metadata.Labels = map[string]string{LabelLocation: "us-central1", "cloud.googleapis.com/x": "y"}
				CarryOverV1Only(s, old)
			}
			s.SetDefaults("proj", "default@proj.iam")
			if err := s.Validate(); err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Path == "" {
					t.Fatalf("Validate error %v does not name a field", err)
				}
				continue
			}
			// A service Usher would store renders back as v2 and parses again.
			back, err := json.Marshal(ServiceToV2(s, "https://svc"))
			if err != nil {
				t.Fatalf("stored service does not render as v2: %v", err)
			}
			if _, err := ParseV2Service(back, nil, ""); err != nil {
				t.Fatalf("ServiceToV2 of a valid service is refused by ParseV2Service: %v; body %s", err, back)
			}
		}
	})
}
