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

// TestParseProbeFlag: gcloud's --startup-probe/--liveness-probe syntax.
func TestParseProbeFlag(t *testing.T) {
	p, err := parseProbeFlag("--startup-probe", "httpGet.path=/ready,httpGet.port=8080,initialDelaySeconds=1,timeoutSeconds=2,periodSeconds=3,failureThreshold=4")
	if err != nil {
		t.Fatal(err)
	}
	if p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port != 8080 || p.InitialDelaySeconds != 1 || p.TimeoutSeconds != 2 || p.PeriodSeconds != 3 || p.FailureThreshold != 4 {
		t.Errorf("parsed %+v", p)
	}
	if p, err := parseProbeFlag("--startup-probe", "tcpSocket.port=8080"); err != nil || p.TCPSocket == nil || p.TCPSocket.Port != 8080 {
		t.Errorf("tcpSocket: %+v %v", p, err)
	}
	if p, err := parseProbeFlag("--liveness-probe", ""); err != nil || p != nil {
		t.Errorf("empty: %+v %v, want no probe", p, err)
	}
	if p, err := parseProbeFlag("--liveness-probe", "grpc.port=8080,grpc.service=api"); err != nil || p.GRPC == nil || p.GRPC.Port != 8080 || p.GRPC.Service != "api" {
		t.Errorf("grpc: %+v %v", p, err)
	}
	for _, bad := range []string{"grpc.port=x", "periodSeconds=x", "httpGet.path", "exec.command=true"} {
		if _, err := parseProbeFlag("--liveness-probe", bad); err == nil || !strings.Contains(err.Error(), "--liveness-probe") {
			t.Errorf("%q: %v, want a refusal naming the flag", bad, err)
		}
	}
}
