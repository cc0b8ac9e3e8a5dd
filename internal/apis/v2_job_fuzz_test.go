package apis

import (
	"encoding/json"
	"testing"
)

// FuzzParseV2Job feeds untrusted v2 Job and :run bodies to ParseV2Job and
// ParseV2RunJob. They must never panic; a job body they accept must convert
// to v1 and either validate after defaults or be refused, and a stored job
// must render back as v2 JSON.
func FuzzParseV2Job(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"template":{"template":{"containers":[{"image":"i"}]}}}`,
		`{"name":"projects/p/locations/l/jobs/j","labels":{"a":"b"},"template":{"taskCount":"10","parallelism":3,
		  "template":{"maxRetries":"1","timeout":"600s","serviceAccount":"sa@p.iam",
		  "containers":[{"image":"i","env":[{"name":"K","value":"V"}],"args":["x"]}]}},"generation":"7","conditions":[{}]}`,
		`{"template":{"template":{"containers":[{"image":"i"}],"vpcAccess":{"connector":"c"}}}}`,
		`{"template":{"template":{"timeout":"1.5s","containers":[{"image":"i","env":[{"name":"CLOUD_RUN_JOB","value":"x"}]}]}}}`,
		`{"template":{"taskCount":-1,"template":{"maxRetries":99,"containers":[{"image":"i"},{"image":"j"}]}}}`,
		`{"overrides":{"taskCount":"3","timeout":"30s","containerOverrides":[{"args":["a"],"clearArgs":true,"env":[{"name":"A","value":"B"}]}]}}`,
		`{"overrides":{"timeout":"99999999999s"}}`,
		`{"validate_only":true,"etag":"x"}`,
		`[`, `null`, `{}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, o, err := ParseV2RunJob(body); err == nil {
			_ = ValidateOverrides(o)
		}
		v, err := ParseV2Job(body)
		if err != nil {
			return
		}
		j, err := JobFromV2(v, "p", "j")
		if err != nil {
			return
		}
		j.SetDefaults("p", "sa@p.iam.gserviceaccount.com")
		if err := j.Validate(); err != nil {
			return
		}
		j.Metadata.Labels = map[string]string{LabelLocation: "us-central1"}
		if _, err := json.Marshal(JobToV2(j)); err != nil {
			t.Fatalf("rendering an accepted job: %v", err)
		}
	})
}
