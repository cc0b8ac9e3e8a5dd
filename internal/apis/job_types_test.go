package apis

import (
	"encoding/json"
	"fmt"
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

// TestParseJobRefusesWhatJobsDoNotDo: a field or system annotation Usher
// does not implement for jobs is refused naming it, never decoded away.
func TestParseJobRefusesWhatJobsDoNotDo(t *testing.T) {
	const task = `{"spec":{"template":{"spec":{"template":{"spec":{"containers":[{"image":"i"%s}]%s}}}}}}`
	for _, c := range []struct{ name, body, want string }{
		{"volumes", fmt.Sprintf(task, "", `,"volumes":[{"name":"v","emptyDir":{}}]`), "spec.template.spec.template.spec.volumes"},
		{"volume mounts", fmt.Sprintf(task, `,"volumeMounts":[{"name":"v","mountPath":"/v"}]`, ""), "containers[0].volumeMounts"},
		{"probes", fmt.Sprintf(task, `,"startupProbe":{"tcpSocket":{}}`, ""), "containers[0].startupProbe"},
		{"working dir", fmt.Sprintf(task, `,"workingDir":"/srv"`, ""), "containers[0].workingDir"},
		{"unknown field", fmt.Sprintf(task, "", `,"priority":3`), "spec.template.spec.template.spec.priority"},
		{"vpc connector", `{"spec":{"template":{"metadata":{"annotations":{"run.googleapis.com/vpc-access-connector":"c"}},"spec":{"template":{"spec":{"containers":[{"image":"i"}]}}}}}}`, "run.googleapis.com/vpc-access-connector"},
	} {
		_, err := ParseJob([]byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
	j, err := ParseJob([]byte(fmt.Sprintf(task, `,"env":[{"name":"S","valueFrom":{"secretKeyRef":{"name":"s","key":"1"}}}]`, `,"maxRetries":2`)))
	if err != nil || j.Spec.Template.Spec.Template.Spec.Containers[0].Env[0].ValueFrom == nil {
		t.Fatalf("a job with a secret env var: %v %+v", err, j)
	}
}

func FuzzParseJob(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"j","annotations":{"run.googleapis.com/client-name":"gcloud"}},"spec":{"template":{"spec":{"taskCount":2,"template":{"spec":{"containers":[{"image":"i"}]}}}}}}`))
	f.Add([]byte(`{"spec":{"template":{"spec":{"template":{"spec":{"volumes":[1]}}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := ParseJob(b)
		if err == nil && j == nil {
			t.Fatal("no job and no error")
		}
	})
}
