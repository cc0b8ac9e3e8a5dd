package cli

import (
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/apis"
)

// TestApplyVolumeFlags: gcloud's volume flags, in gcloud's order (clear,
// remove, add), and what they refuse.
func TestApplyVolumeFlags(t *testing.T) {
	spec := apis.RevisionSpec{Containers: []apis.Container{{Image: "i"}}}
	apply := func(f deployFlags) error { return applyVolumeFlags(&spec, &f) }
	if err := apply(deployFlags{
		addVolumes: []string{"name=cache,type=in-memory,size-limit=64Mi", "name=scratch,type=in-memory"},
		addMounts:  []string{"volume=cache,mount-path=/tmp/cache", "volume=scratch,mount-path=/tmp/s"},
	}); err != nil {
		t.Fatal(err)
	}
	if len(spec.Volumes) != 2 || spec.Volumes[0].EmptyDir.SizeLimit != "64Mi" || spec.Volumes[0].EmptyDir.Medium != apis.MediumMemory ||
		len(spec.Containers[0].VolumeMounts) != 2 || spec.Containers[0].VolumeMounts[1].MountPath != "/tmp/s" {
		t.Fatalf("after adding: volumes %+v, mounts %+v", spec.Volumes, spec.Containers[0].VolumeMounts)
	}
	if err := apply(deployFlags{removeVolumes: []string{"scratch"}, removeMounts: []string{"/tmp/s"}}); err != nil {
		t.Fatal(err)
	}
	if len(spec.Volumes) != 1 || len(spec.Containers[0].VolumeMounts) != 1 || spec.Volumes[0].Name != "cache" {
		t.Fatalf("after removing: volumes %+v, mounts %+v", spec.Volumes, spec.Containers[0].VolumeMounts)
	}
	if err := apply(deployFlags{clearVolumes: true, clearMounts: true}); err != nil || spec.Volumes != nil || spec.Containers[0].VolumeMounts != nil {
		t.Fatalf("after clearing: %v, volumes %+v, mounts %+v", err, spec.Volumes, spec.Containers[0].VolumeMounts)
	}
	for _, f := range []deployFlags{
		{addVolumes: []string{"name=v,type=nfs"}},
		{addVolumes: []string{"name=v"}},
		{addVolumes: []string{"name=v,type=in-memory,medium=disk"}},
		{addMounts: []string{"volume=v"}},
		{addMounts: []string{"volume=v,mount-path=/v,read-only=true"}},
	} {
		if err := apply(f); err == nil || !strings.Contains(err.Error(), "--add-volume") {
			t.Errorf("%+v: %v, want a refusal naming the flag", f, err)
		}
	}
}
