package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPropagation measures, from a policy write acknowledged by node A (its
// CLI exited) to it being in force on node B, p50 and p99 over alternating
// grants and revokes of allUsers. It asserts only a loose bound.
func TestPropagation(t *testing.T) {
	e := startEtcd(t)
	ns := startNodes(t, storeURL(e), "a", "b")
	a, b := ns[0], ns[1]
	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region)
	url := a.serviceURL(t, "hello")
	expectStatus(t, b, url, 401, 10*time.Second)

	const rounds = 20
	var lags []time.Duration
	for i := range rounds {
		verb, want := "add-iam-policy-binding", 200
		if i%2 == 1 {
			verb, want = "remove-iam-policy-binding", 401
		}
		a.mustCLI(t, "run", "services", verb, "hello", "--member=allUsers", "--role=roles/run.invoker", "--region="+region)
		acked := time.Now()
		for {
			code, _, err := b.get(url)
			if err == nil && code == want {
				break
			}
			if time.Since(acked) > 5*time.Second {
				t.Fatalf("round %d: %s on A not in force on B after 5s (got %d %v)", i, verb, code, err)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lags = append(lags, time.Since(acked))
	}
	slices.Sort(lags)
	p50, p99 := lags[len(lags)/2], lags[(len(lags)*99+99)/100-1]
	t.Logf("propagation A→B over %d writes: p50 %s, p99 %s, max %s (includes one HTTP round trip)", rounds, p50, p99, lags[len(lags)-1])

	code, body, err := b.get("http://" + b.addr + "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, m := range []string{"usher_mirror_apply_seconds_count", `usher_mirror_fresh{node="b"} 1`, `usher_store_up{node="b"} 1`, `usher_gateway_requests_total{code="200",node="b"}`} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s:\n%s", m, body)
		}
	}
}
