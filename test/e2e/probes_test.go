package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestProbes: an httpGet startup probe holds traffic until the instance is
// ready; a failing one fails the deploy, naming the probe, and the previous
// revision keeps serving; an instance failing its liveness probe is
// replaced. In the process sandbox, so the probes reach the instance
// inside its own network namespace.
func TestProbes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process sandbox needs root")
	}
	s := startServer(t)
	u := s.deploy(t, "probed", proberBin, "--allow-unauthenticated", "--set-env-vars=TESTAPP_READY_AFTER=1500ms",
		"--startup-probe=httpGet.path=/ready,periodSeconds=1,failureThreshold=30")
	if r := s.get(t, u+"/ready"); r.status != http.StatusOK {
		t.Errorf("the first request after deploy: /ready %d, want 200 (the startup probe passed)", r.status)
	}

	r := s.cli(t, "run", "services", "update", "probed", "--region="+region, "--startup-probe=httpGet.path=/fail,periodSeconds=1,failureThreshold=2")
	if r.code == 0 || !strings.Contains(r.stderr, "startup probe") {
		t.Errorf("a failing startup probe: %s, want the deploy to fail naming the startup probe", r)
	}
	if r := s.get(t, u+"/ready"); r.status != http.StatusOK {
		t.Errorf("after a failed deploy: %d, want the previous revision serving", r.status)
	}
	if r := s.cli(t, "run", "services", "update", "probed", "--region="+region, "--liveness-probe=httpGet.path=/healthz,httpGet.port=9999"); r.code == 0 || !strings.Contains(r.stderr, "livenessProbe.httpGet.port") {
		t.Errorf("a probe on another port: %s, want a refusal naming livenessProbe.httpGet.port", r)
	}

	s.mustCLI(t, "run", "services", "update", "probed", "--region="+region, "--min-instances=1", "--max-instances=1",
		"--startup-probe=", "--liveness-probe=httpGet.path=/healthz,periodSeconds=1,failureThreshold=2")
	// One instance at most: once /sick, it answers /healthz 500 for ever,
	// so a 200 can only come from its replacement.
	if r := s.get(t, u+"/sick"); r.status != http.StatusOK {
		t.Fatalf("/sick: %d", r.status)
	}
	poll(t, time.Minute, "a new instance in place of the sick one", func() (bool, string) {
		r := s.get(t, u+"/healthz")
		return r.status == http.StatusOK, r.body
	})
}

// TestGRPCProbes: a gRPC health check (grpc.health.v1, over h2c) as startup
// and liveness probe: a SERVING service passes and the revision serves; a
// service the instance does not know fails the deploy, the previous
// revision serving on.
func TestGRPCProbes(t *testing.T) {
	s := startServer(t)
	s.deploy(t, "grpc-probed", grpcBin, "--use-http2", "--startup-probe=grpc.port=8080,periodSeconds=1,failureThreshold=10",
		"--liveness-probe=grpc.port=8080,periodSeconds=1,failureThreshold=3")
	before := s.describe(t, "grpc-probed").Status.LatestReadyRevisionName
	if before == "" {
		t.Fatal("no ready revision after a deploy whose gRPC startup probe passed")
	}
	r := s.cli(t, "run", "services", "update", "grpc-probed", "--region="+region, "--startup-probe=grpc.service=no.such.Service,periodSeconds=1,failureThreshold=2")
	if r.code == 0 || !strings.Contains(r.stderr, "startup probe") || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("a gRPC startup probe of an unknown service: %s, want the deploy to fail naming the probe", r)
	}
	if got := s.describe(t, "grpc-probed").Status.LatestReadyRevisionName; got != before {
		t.Errorf("after the failed deploy, the ready revision is %q, want %q still", got, before)
	}
}
