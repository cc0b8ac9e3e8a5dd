package pool

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
)

func startupProbe(path string, period, failures int32) revOpt {
	return func(r *apis.Revision) {
		r.Spec.Containers[0].StartupProbe = &apis.Probe{HTTPGet: &apis.HTTPGetAction{Path: path}, PeriodSeconds: period, FailureThreshold: failures}
	}
}

func livenessProbe(p apis.Probe) revOpt {
	return func(r *apis.Revision) { r.Spec.Containers[0].LivenessProbe = &p }
}

// TestStartupProbeHTTP: with an httpGet startup probe an instance that
// listens but is not ready yet takes no request until the probe passes.
func TestStartupProbeHTTP(t *testing.T) {
	p := newPool(t, Config{})
	rev := revision("r-ready", testApp(t), env("TESTAPP_READY_AFTER", "1500ms"), startupProbe("/ready", 1, 30))
	lease, err := p.Acquire(context.Background(), Key(rev), rev)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if code, body, err := get(lease.Addr(), "/ready"); err != nil || code != 200 {
		t.Errorf("the first request's instance: /ready %d %q %v, want 200: the pool routed before the probe passed", code, body, err)
	}
}

// TestStartupProbeFails: an instance that never passes its startup probe is
// stopped and the request gets the probe's failure.
func TestStartupProbeFails(t *testing.T) {
	p := newPool(t, Config{QueueTimeout: time.Minute})
	rev := revision("r-fail", testApp(t), startupProbe("/fail", 1, 2))
	_, err := p.Acquire(context.Background(), Key(rev), rev)
	if err == nil || !strings.Contains(err.Error(), "startup probe") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Acquire: %v, want the startup probe's failure", err)
	}
	if n := len(p.Stats(Key(rev)).Instances); n != 0 {
		t.Errorf("%d instances live after a failed startup probe, want 0", n)
	}
}

// TestLivenessProbeRestarts: an instance that starts failing its liveness
// probe is stopped after failureThreshold failures and replaced; a healthy
// one is left alone (TCP and HTTP).
func TestLivenessProbeRestarts(t *testing.T) {
	p := newPool(t, Config{})
	app := testApp(t)
	rev := revision("r-live", app, scale(1, 1), livenessProbe(apis.Probe{HTTPGet: &apis.HTTPGetAction{Path: "/healthz"}, PeriodSeconds: 1, FailureThreshold: 2}))
	steady := revision("r-steady", app, livenessProbe(apis.Probe{TCPSocket: &apis.TCPSocketAction{}, PeriodSeconds: 1, FailureThreshold: 1}))
	if err := p.Start(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	if err := call(context.Background(), p, steady, "/"); err != nil {
		t.Fatal(err)
	}
	first := p.Stats(Key(rev)).Instances
	if len(first) != 1 {
		t.Fatalf("instances %+v, want 1", first)
	}
	steadyID := p.Stats(Key(steady)).Instances[0].ID
	if code, _, err := get(first[0].Addr, "/sick"); err != nil || code != 200 {
		t.Fatalf("/sick: %d %v", code, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		now := p.Stats(Key(rev)).Instances
		if len(now) == 1 && now[0].ID != first[0].ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sick instance %s was not replaced: instances %+v", first[0].ID, now)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := p.Stats(Key(steady)).Instances; len(s) != 1 || s[0].ID != steadyID {
		t.Errorf("the healthy revision's instances changed: %+v, want %s alone", s, steadyID)
	}
}
