package cli

import (
	"testing"

	"github.com/usher-run/usher/internal/apis"
)

// TestApplySecretFlags: env vars and files from secrets, in gcloud's forms
// and order, and what is refused.
func TestApplySecretFlags(t *testing.T) {
	spec := apis.RevisionSpec{Containers: []apis.Container{{Image: "i", Env: []apis.EnvVar{{Name: "PLAIN", Value: "v"}}}}}
	apply := func(f deployFlags, set bool) error { return applySecretFlags(&spec, &f, set) }
	if err := apply(deployFlags{setSecrets: map[string]string{"DB": "db:latest", "/tmp/s/pw": "db:2", "/tmp/s/key": "db:1", "/tmp/k/k": "api:latest"}}, true); err != nil {
		t.Fatal(err)
	}
	ctr := spec.Containers[0]
	if len(ctr.Env) != 2 || ctr.Env[1].ValueFrom == nil || ctr.Env[1].ValueFrom.SecretKeyRef.Name != "db" || ctr.Env[0].Value != "v" {
		t.Fatalf("env: %+v", ctr.Env)
	}
	if len(spec.Volumes) != 2 || len(ctr.VolumeMounts) != 2 {
		t.Fatalf("volumes %+v mounts %+v", spec.Volumes, ctr.VolumeMounts)
	}
	v := secretVolumeAt(&spec, "/tmp/s")
	if v == nil || v.Secret.SecretName != "db" || len(v.Secret.Items) != 2 || v.Secret.Items[0] != (apis.KeyToPath{Key: "1", Path: "key"}) {
		t.Fatalf("the volume at /tmp/s: %+v", v)
	}
	if err := apply(deployFlags{removeSecrets: []string{"/tmp/s/key", "/tmp/s/pw", "DB"}}, false); err != nil {
		t.Fatal(err)
	}
	if secretVolumeAt(&spec, "/tmp/s") != nil || len(spec.Volumes) != 1 || len(spec.Containers[0].Env) != 1 {
		t.Fatalf("after removing: volumes %+v env %+v", spec.Volumes, spec.Containers[0].Env)
	}
	if err := apply(deployFlags{clearSecrets: true}, false); err != nil || len(spec.Volumes) != 0 || len(spec.Containers[0].VolumeMounts) != 0 || len(spec.Containers[0].Env) != 1 {
		t.Fatalf("after clearing: %v volumes %+v env %+v", err, spec.Volumes, spec.Containers[0].Env)
	}
	for _, f := range []deployFlags{
		{updateSecrets: map[string]string{"DB": "db"}},
		{updateSecrets: map[string]string{"DB": ":1"}},
		{updateSecrets: map[string]string{"/pw": "db:1"}},
		{updateSecrets: map[string]string{"/tmp/a/x": "db:1", "/tmp/a/y": "other:1"}},
	} {
		if err := apply(f, false); err == nil {
			t.Errorf("%+v: accepted", f.updateSecrets)
		}
	}
}
