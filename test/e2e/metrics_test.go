package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requestCount sums usher_run_request_count's series for service with
// decision and response class, from /metrics.
func (s *server) requestCount(t *testing.T, service, decision, class string) int {
	t.Helper()
	body := s.get(t, s.serverURL(t)+"/metrics").body
	n := 0
	re := regexp.MustCompile(`(?m)^usher_run_request_count\{([^}]*)\} (\d+)$`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		labels := m[1]
		if strings.Contains(labels, `service="`+service+`"`) && strings.Contains(labels, `decision="`+decision+`"`) &&
			strings.Contains(labels, `response_code_class="`+class+`"`) {
			v, _ := strconv.Atoi(m[2])
			n += v
		}
	}
	return n
}

// TestPerServiceRequestCount drives traffic of each kind (allowed,
// anonymous, 401, 403, rate-limited) and reads the per-service counters
// back; a deleted service leaves no series behind, and no label names a
// principal or a path.
func TestPerServiceRequestCount(t *testing.T) {
	s := startServer(t)
	privURL := s.deploy(t, "counted", helloBin)
	pubURL := s.deploy(t, "open", helloBin, "--no-invoker-iam-check", "--anonymous-rate-limit=0.01,burst=1")
	caller := s.createSA(t, "caller")
	stranger := s.createSA(t, "stranger")
	s.grant(t, "counted", "serviceAccount:"+caller, "roles/run.invoker")

	callerTok := s.idToken(t, caller, privURL)
	strangerTok := s.idToken(t, stranger, privURL)
	for range 3 {
		if got := s.get(t, privURL+"/secret-path", "Authorization", bearer(callerTok)); got.status != 200 {
			t.Fatalf("invoker: %d", got.status)
		}
	}
	for range 2 {
		if got := s.get(t, privURL+"/"); got.status != 401 {
			t.Fatalf("no token: %d", got.status)
		}
	}
	if got := s.get(t, privURL+"/", "Authorization", bearer(strangerTok)); got.status != 403 {
		t.Fatalf("stranger: %d", got.status)
	}
	if got := s.get(t, pubURL+"/"); got.status != 200 {
		t.Fatalf("anonymous within the burst: %d", got.status)
	}
	if got := s.get(t, pubURL+"/"); got.status != 429 {
		t.Fatalf("anonymous past the burst: %d", got.status)
	}

	for _, tt := range []struct {
		service, decision, class string
		want                     int
	}{
		{"counted", "allowed", "2xx", 3},
		{"counted", "401", "4xx", 2},
		{"counted", "403", "4xx", 1},
		{"open", "allowed", "2xx", 1},
		{"open", "429", "4xx", 1},
	} {
		if got := s.requestCount(t, tt.service, tt.decision, tt.class); got != tt.want {
			t.Errorf("usher_run_request_count{service=%q,decision=%q,response_code_class=%q} = %d, want %d", tt.service, tt.decision, tt.class, got, tt.want)
		}
	}
	body := s.get(t, s.serverURL(t)+"/metrics").body
	// Latencies: one observation per answered request in each share, none
	// for refusals; Usher's share and the instance's never exceed the total.
	for _, share := range []string{"total", "usher", "instance"} {
		re := regexp.MustCompile(`(?m)^usher_run_request_latencies_seconds_count\{[^}]*service="counted"[^}]*share="` + share + `"[^}]*\} (\d+)$`)
		m := re.FindStringSubmatch(body)
		if m == nil || m[1] != "3" {
			t.Errorf("request_latencies count for counted, share %s: %v, want 3", share, m)
		}
	}
	sum := func(share string) float64 {
		re := regexp.MustCompile(`(?m)^usher_run_request_latencies_seconds_sum\{[^}]*service="counted"[^}]*share="` + share + `"[^}]*\} (\S+)$`)
		m := re.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no request_latencies sum for share %s", share)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if total, usher, inst := sum("total"), sum("usher"), sum("instance"); usher <= 0 || inst <= 0 || usher > total || inst > total {
		t.Errorf("latency sums: total %g, usher %g, instance %g: want both shares positive and within the total", total, usher, inst)
	}
	// Instances: the invoked revision has one, active or idle.
	instRe := regexp.MustCompile(`(?m)^usher_run_container_instance_count\{[^}]*service="counted"[^}]*state="(active|idle)"[^}]*\} (\d+)$`)
	instances := 0
	for _, m := range instRe.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[2])
		instances += n
	}
	if instances < 1 {
		t.Errorf("usher_run_container_instance_count for counted: %d active+idle, want at least 1", instances)
	}
	// Cold starts: the first request to counted started its instance.
	coldRe := regexp.MustCompile(`(?m)^usher_run_cold_start_seconds_count\{[^}]*service="counted"[^}]*\} (\d+)$`)
	if m := coldRe.FindStringSubmatch(body); m == nil || m[1] == "0" {
		t.Errorf("usher_run_cold_start_seconds_count for counted: %v, want at least 1", m)
	}
	// Billable time: counted served requests, so it is above zero.
	billRe := regexp.MustCompile(`(?m)^usher_run_container_billable_instance_time_seconds_total\{[^}]*service="counted"[^}]*\} (\S+)$`)
	if m := billRe.FindStringSubmatch(body); m == nil {
		t.Error("no billable instance time for counted")
	} else if v, _ := strconv.ParseFloat(m[1], 64); v <= 0 {
		t.Errorf("billable instance time for counted = %g, want > 0 after 3 served requests", v)
	}
	for _, leak := range []string{caller, stranger, "secret-path"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics names %q: labels must never carry principals or paths", leak)
		}
	}
	if !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_cpu_seconds_total") {
		t.Error("/metrics lacks the Go runtime or process collectors")
	}

	s.mustCLI(t, "run", "services", "delete", "open", "--region="+region, "--quiet")
	poll(t, 15*time.Second, "the deleted service's series gone", func() (bool, string) {
		body := s.get(t, s.serverURL(t)+"/metrics").body
		return !strings.Contains(body, `service="open"`), ""
	})
	if got := s.requestCount(t, "counted", "allowed", "2xx"); got != 3 {
		t.Errorf("after deleting another service: counted allowed = %d, want 3 kept", got)
	}
}
