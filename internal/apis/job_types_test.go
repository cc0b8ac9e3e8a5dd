package apis

import (
	"encoding/json"
	"strings"
	"testing"
)

func validJob() *Job {
	j := &Job{Metadata: ObjectMeta{Name: "nightly"}}
	j.Spec.Template.Spec.Template.Spec.Containers = []Container{{Image: "file:///bin/true"}}
	j.SetDefaults("p", "sa@p.iam.gserviceaccount.com")
	return j
}

func TestJobValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Job)
		want   string // "" valid, else part of the error
	}{
		{"defaults", func(*Job) {}, ""},
		{"bad name", func(j *Job) { j.Metadata.Name = "Nightly" }, "metadata.name"},
		{"too many tasks", func(j *Job) { j.Spec.Template.Spec.TaskCount = MaxTaskCount + 1 }, "taskCount"},
		{"negative parallelism", func(j *Job) { j.Spec.Template.Spec.Parallelism = -1 }, "parallelism"},
		{"too many retries", func(j *Job) { r := int32(11); j.Spec.Template.Spec.Template.Spec.MaxRetries = &r }, "maxRetries"},
		{"timeout too long", func(j *Job) { j.Spec.Template.Spec.Template.Spec.TimeoutSeconds = MaxTaskTimeoutSeconds + 1 }, "timeoutSeconds"},
		{"no image", func(j *Job) { j.Spec.Template.Spec.Template.Spec.Containers[0].Image = "" }, "image"},
		{"two containers", func(j *Job) {
			ts := &j.Spec.Template.Spec.Template.Spec
			ts.Containers = append(ts.Containers, ts.Containers[0])
		}, "containers"},
		{"reserved env", func(j *Job) {
			j.Spec.Template.Spec.Template.Spec.Containers[0].Env = []EnvVar{{Name: "CLOUD_RUN_TASK_ATTEMPT", Value: "9"}}
		}, "CLOUD_RUN_TASK_ATTEMPT"},
		{"env from another project's secret", func(j *Job) {
			j.Spec.Template.Spec.Template.Spec.Containers[0].Env = []EnvVar{{Name: "S", ValueFrom: &EnvVarSource{SecretKeyRef: &SecretKeySelector{Name: "projects/p/secrets/s", Key: "latest"}}}}
		}, "env[0].valueFrom.secretKeyRef.name"},
		{"env from a secret's bad version", func(j *Job) {
			j.Spec.Template.Spec.Template.Spec.Containers[0].Env = []EnvVar{{Name: "S", ValueFrom: &EnvVarSource{SecretKeyRef: &SecretKeySelector{Name: "s", Key: "newest"}}}}
		}, "env[0].valueFrom.secretKeyRef.key"},
		{"PORT", func(j *Job) {
			j.Spec.Template.Spec.Template.Spec.Containers[0].Env = []EnvVar{{Name: "PORT", Value: "1"}}
		}, "PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			tc.change(j)
			err := j.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestInt64String(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Int64String
		err  bool
	}{
		{`"600"`, 600, false}, {`600`, 600, false}, {`"x"`, 0, true}, {`1.5`, 0, true}, {`"99999999999999999999"`, 0, true},
	} {
		var got Int64String
		err := json.Unmarshal([]byte(tc.in), &got)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("unmarshal %s: got %d, %v, want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if b, _ := json.Marshal(Int64String(600)); string(b) != `"600"` {
		t.Errorf("marshal 600: got %s, want \"600\"", b)
	}
}

// FuzzJob: any request body decodes, defaults and validates without a
// panic, and a valid job keeps its limits.
func FuzzJob(f *testing.F) {
	b, _ := json.Marshal(validJob())
	f.Add(b)
	f.Add([]byte(`{"spec":{"template":{"spec":{"taskCount":-1,"template":{"spec":{"maxRetries":-5,"timeoutSeconds":"0"}}}}}}`))
	f.Add([]byte(`{"metadata":{"name":"a"},"spec":{"template":{"spec":{"template":{"spec":{"containers":[]}}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var j Job
		if json.Unmarshal(body, &j) != nil {
			return
		}
		j.SetDefaults("p", "sa@p.iam.gserviceaccount.com")
		if j.Validate() != nil {
			return
		}
		es := j.Spec.Template.Spec
		if es.TaskCount < 1 || es.TaskCount > MaxTaskCount || es.Parallelism < 0 || len(es.Template.Spec.Containers) != 1 ||
			*es.Template.Spec.MaxRetries > MaxMaxRetries || es.Template.Spec.TimeoutSeconds < 1 {
			t.Errorf("valid job out of limits: %+v", es)
		}
	})
}
