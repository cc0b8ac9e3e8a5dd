package e2e

import (
	"encoding/json"
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

// TestMetricsHistory: `usher run services metrics` reports each kind of
// traffic (allowed, 401, 403, anonymous, rate-limited, the busiest
// anonymous client), the history survives a restart, and reading it needs
// what reading the service needs.
func TestMetricsHistory(t *testing.T) {
	s := startServer(t)
	privURL := s.deploy(t, "hist-private", helloBin)
	pubURL := s.deploy(t, "hist-public", helloBin, "--no-invoker-iam-check", "--anonymous-rate-limit=0.01,burst=2")
	caller := s.createSA(t, "hist-caller")
	stranger := s.createSA(t, "hist-stranger")
	s.grant(t, "hist-private", "serviceAccount:"+caller, "roles/run.invoker")
	callerTok := s.idToken(t, caller, privURL)
	strangerTok := s.idToken(t, stranger, privURL)
	for range 3 {
		if got := s.get(t, privURL+"/", "Authorization", bearer(callerTok)); got.status != 200 {
			t.Fatalf("invoker: %d", got.status)
		}
	}
	for range 2 {
		s.get(t, privURL+"/")
	}
	s.get(t, privURL+"/", "Authorization", bearer(strangerTok))
	for range 5 {
		s.get(t, pubURL+"/") // 2 within the burst, then 429
	}

	type summary struct {
		Requests  map[string]int `json:"requests"`
		Classes   map[string]int `json:"responseClasses"`
		Anonymous int            `json:"anonymousRequests"`
		LatencyMs struct {
			P50 float64 `json:"p50"`
		} `json:"latencyMs"`
	}
	var res struct {
		Window  string  `json:"window"`
		Summary summary `json:"summary"`
		Points  []any   `json:"points"`
		Clients []struct {
			Address  string `json:"address"`
			Requests int    `json:"requests"`
		} `json:"busiestAnonymousClients"`
	}
	read := func(name string, args ...string) {
		t.Helper()
		out := s.mustCLI(t, append([]string{"run", "services", "metrics", name, "--region=" + region, "--format", "json"}, args...)...)
		res.Clients = nil
		if err := json.Unmarshal([]byte(out.stdout), &res); err != nil {
			t.Fatalf("metrics --format json: %v\n%s", err, out.stdout)
		}
	}
	check := func(when string) {
		t.Helper()
		read("hist-private")
		want := map[string]int{"allowed": 3, "401": 2, "403": 1, "429": 0}
		for k, v := range want {
			if res.Summary.Requests[k] != v {
				t.Errorf("%s: hist-private requests[%s] = %d, want %d (%v)", when, k, res.Summary.Requests[k], v, res.Summary.Requests)
			}
		}
		if res.Summary.Classes["2xx"] != 3 || res.Summary.Anonymous != 0 || res.Summary.LatencyMs.P50 <= 0 || len(res.Points) == 0 {
			t.Errorf("%s: hist-private %+v, %d points", when, res.Summary, len(res.Points))
		}
		read("hist-public", "--window", "7d")
		if res.Summary.Requests["allowed"] != 2 || res.Summary.Requests["429"] != 3 || res.Summary.Anonymous != 5 || res.Window != "7d" {
			t.Errorf("%s: hist-public over 7d: %+v", when, res.Summary)
		}
	}
	check("before restart")
	read("hist-public")
	if len(res.Clients) != 1 || res.Clients[0].Address != "127.0.0.1" || res.Clients[0].Requests != 5 {
		t.Errorf("busiest anonymous clients: %+v, want 127.0.0.1 with 5", res.Clients)
	}
	text := s.mustCLI(t, "run", "services", "metrics", "hist-private", "--region="+region).stdout
	if !strings.Contains(text, "REQUESTS") || !strings.Contains(text, "allowed 3, 401 2, 403 1") {
		t.Errorf("metrics as text:\n%s", text)
	}

	s.Stop()
	s.restart(t, "")
	check("after restart")

	// Reading metrics needs run.services.get on the service.
	if got := s.cli(t, "run", "services", "metrics", "hist-private", "--region="+region, "--impersonate-service-account="+stranger); got.code == 0 || !strings.Contains(got.stderr, "PERMISSION_DENIED") {
		t.Errorf("a principal without run.services.get reading metrics: %v", got)
	}
	if got := s.cli(t, "run", "services", "metrics", "hist-private", "--region="+region, "--window", "2h"); got.code == 0 || !strings.Contains(got.stderr, "window") {
		t.Errorf("--window 2h: %v", got)
	}
}

// TestInstanceUsage: a sandboxed instance's CPU time and memory, read from
// its cgroup, are in /metrics while it lives.
func TestInstanceUsage(t *testing.T) {
	s := startServer(t)
	u := s.deploy(t, "used", helloBin, "--allow-unauthenticated")
	if got := s.get(t, u+"/"); got.status != 200 {
		t.Fatalf("GET: %d", got.status)
	}
	if strings.Contains(s.Log(), "get no cpu, memory or pids limits") || strings.Contains(s.Log(), "NOT sandboxed") {
		t.Skip("*** this machine gives Usher no cgroups for instances: per-instance usage NOT TESTED ***")
	}
	body := s.get(t, s.serverURL(t)+"/metrics").body
	mem := regexp.MustCompile(`(?m)^usher_run_container_memory_bytes\{[^}]*service="used"[^}]*\} (\S+)$`).FindStringSubmatch(body)
	cpu := regexp.MustCompile(`(?m)^usher_run_container_cpu_seconds_total\{[^}]*service="used"[^}]*\} (\S+)$`).FindStringSubmatch(body)
	if mem == nil || cpu == nil {
		t.Fatalf("no per-instance usage for used in /metrics (memory %v, cpu %v)", mem, cpu)
	}
	if v, _ := strconv.ParseFloat(mem[1], 64); v <= 0 {
		t.Errorf("memory of a live instance = %s, want > 0", mem[1])
	}
	if v, _ := strconv.ParseFloat(cpu[1], 64); v <= 0 {
		t.Errorf("cpu seconds of an instance that served a request = %s, want > 0", cpu[1])
	}
}
