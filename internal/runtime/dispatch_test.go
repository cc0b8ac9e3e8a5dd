package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeRuntime records the images it was asked to start.
type fakeRuntime struct{ started []string }

func (f *fakeRuntime) Start(ctx context.Context, spec InstanceSpec) (Instance, error) {
	f.started = append(f.started, spec.Image)
	return nil, nil
}

func TestByImage(t *testing.T) {
	proc, dock := &fakeRuntime{}, &fakeRuntime{}
	rt := ByImage{Process: proc, Docker: dock}
	for _, img := range []string{"file:///usr/local/bin/hello", "hello:latest", "gcr.io/p/app@sha256:0123", "us-docker.pkg.dev/cloudrun/container/hello"} {
		if _, err := rt.Start(context.Background(), InstanceSpec{Image: img}); err != nil {
			t.Errorf("Start(%q): %v", img, err)
		}
		if err := rt.Check(img); err != nil {
			t.Errorf("Check(%q): %v", img, err)
		}
	}
	if got := strings.Join(proc.started, " "); got != "file:///usr/local/bin/hello" {
		t.Errorf("process runtime started %q", got)
	}
	if got := strings.Join(dock.started, " "); got != "hello:latest gcr.io/p/app@sha256:0123 us-docker.pkg.dev/cloudrun/container/hello" {
		t.Errorf("docker runtime started %q", got)
	}
	if _, err := rt.Start(context.Background(), InstanceSpec{}); err == nil {
		t.Error("Start without an image succeeded")
	}
}

func TestByImageWithoutDocker(t *testing.T) {
	why := errors.New("docker: no engine at unix:///var/run/docker.sock: connection refused")
	proc := &fakeRuntime{}
	rt := ByImage{Process: proc, DockerErr: why}

	_, err := rt.Start(context.Background(), InstanceSpec{Image: "hello:latest"})
	want := `image "hello:latest" needs the Docker runtime, but no Docker engine is reachable: docker: no engine at unix:///var/run/docker.sock: connection refused`
	if err == nil || err.Error() != want {
		t.Errorf("Start = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrNoRuntime) || !errors.Is(err, why) {
		t.Errorf("Start error %v does not wrap ErrNoRuntime and the reason", err)
	}
	if err := rt.Check("hello:latest"); !errors.Is(err, ErrNoRuntime) {
		t.Errorf("Check = %v, want ErrNoRuntime", err)
	}

	// file:// images do not need Docker.
	if _, err := rt.Start(context.Background(), InstanceSpec{Image: "file:///bin/app"}); err != nil || len(proc.started) != 1 {
		t.Errorf("Start(file://) = %v, started %q", err, proc.started)
	}

	// Without a reason.
	_, err = ByImage{}.Start(context.Background(), InstanceSpec{Image: "hello"})
	if err == nil || !strings.Contains(err.Error(), "no Docker engine is reachable: the Docker runtime is not configured") {
		t.Errorf("Start with no Docker and no reason = %v", err)
	}
	_, err = ByImage{}.Start(context.Background(), InstanceSpec{Image: "file:///bin/app"})
	if !errors.Is(err, ErrNoRuntime) {
		t.Errorf("Start(file://) with no process runtime = %v, want ErrNoRuntime", err)
	}
}
