package e2e

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/apis"
)

// wrkSummary is what the test reads from wrk's report.
type wrkSummary struct{ total, non2xx int }

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(t *testing.T, out string) wrkSummary {
	t.Helper()
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("wrk report without a request count:\n%s", out)
	}
	var s wrkSummary
	s.total, _ = strconv.Atoi(m[1])
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		s.non2xx, _ = strconv.Atoi(m[1])
	}
	return s
}

// TestAnonymousRateLimitFlood: a public service with
// --anonymous-rate-limit holds a wrk flood from one address to its rate
// (429 with Retry-After), while a caller with its own invoker binding is
// served normally throughout and a valid token without one is limited; the
// limit shows in describe, the refusals in /metrics and in the audit trail
// (aggregated), and a bad value changes nothing.
func TestAnonymousRateLimitFlood(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (.ci/run installs it)")
	}
	s := startServer(t)
	svcURL := s.deploy(t, "limited", helloBin, "--no-invoker-iam-check", "--anonymous-rate-limit=5,burst=5")

	r := s.mustCLI(t, "run", "services", "describe", "limited", "--region="+region, "--format", "json")
	var desc struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &desc); err != nil {
		t.Fatal(err)
	}
	if got, want := desc.Metadata.Annotations[apis.AnnotationAnonymousRateLimit], "5,burst=5,total=500,total-burst=500"; got != want {
		t.Fatalf("describe: %s = %q, want %q", apis.AnnotationAnonymousRateLimit, got, want)
	}
	human := s.mustCLI(t, "run", "services", "describe", "limited", "--region="+region)
	if !strings.Contains(human.stdout, apis.AnnotationAnonymousRateLimit) {
		t.Errorf("human describe does not show the limit:\n%s", human.stdout)
	}

	// Bad input: one clear line, nothing changed.
	bad := s.cli(t, "run", "services", "update", "limited", "--region="+region, "--anonymous-rate-limit=fast")
	if line := cliFails(t, bad); !strings.Contains(line, "--anonymous-rate-limit") {
		t.Errorf("bad limit: %q does not name the flag", line)
	}

	// The granted caller: a service account the owner bound as invoker
	// (the service is public anyway), with a valid token for it.
	sa := s.createSA(t, "steady")
	s.grant(t, "limited", "serviceAccount:"+sa, "roles/run.invoker")
	tok := s.idToken(t, sa, svcURL)
	// The attacker's account: a valid token, but no binding of its own.
	stranger := s.createSA(t, "stranger")
	strangerTok := s.idToken(t, stranger, svcURL)

	firstAnonymous := time.Now()
	if got := s.get(t, svcURL+"/"); got.status != 200 {
		t.Fatalf("first anonymous request: %d %s", got.status, got.body)
	}

	u, _ := url.Parse(svcURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const floodSeconds = 3
	cmd := exec.CommandContext(ctx, wrk, "-t1", "-c8", "-d"+strconv.Itoa(floodSeconds)+"s", "-H", "Host: "+u.Host, "http://"+s.currentAddr()+"/")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	served := 0
	for time.Since(start) < floodSeconds*time.Second {
		got := s.get(t, svcURL+"/", "Authorization", bearer(tok))
		if got.status != 200 {
			t.Fatalf("authenticated caller during the flood: %d %s", got.status, got.body)
		}
		served++
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wrk: %v\n%s", err, out.String())
	}
	elapsed := time.Since(firstAnonymous)
	flood := parseWrk(t, out.String())
	allowed := flood.total - flood.non2xx
	// The bucket allows at most its burst plus the rate over the time since
	// the first anonymous GET (which spent one token), rounded up.
	limit := 5 + int(math.Ceil(5*elapsed.Seconds())) - 1
	t.Logf("flood: %d requests, %d refused, %d allowed (bound %d) in %v; authenticated caller served %d", flood.total, flood.non2xx, allowed, limit, elapsed, served)
	if flood.non2xx == 0 || allowed > limit {
		t.Fatalf("the limit did not hold: %d of %d flood requests allowed, bound %d", allowed, flood.total, limit)
	}
	if served == 0 {
		t.Fatal("the authenticated caller sent nothing during the flood")
	}

	// Raw: the refusal's shape.
	got := s.get(t, svcURL+"/")
	if got.status == 200 { // the bucket may have refilled one token since wrk stopped
		got = s.get(t, svcURL+"/")
	}
	if got.status != 429 {
		t.Fatalf("anonymous request right after the flood: %d, want 429", got.status)
	}
	// A token proves an account, not a grant: the stranger's is charged to
	// the flooded address like no token at all.
	got = s.get(t, svcURL+"/", "Authorization", bearer(strangerTok))
	if got.status == 200 { // a token may have refilled meanwhile
		got = s.get(t, svcURL+"/", "Authorization", bearer(strangerTok))
	}
	if got.status != 429 {
		t.Fatalf("valid token without a binding right after the flood: %d, want 429", got.status)
	}
	if secs, err := strconv.Atoi(got.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After = %q, want whole seconds", got.header.Get("Retry-After"))
	}

	// Metrics: the refusals, by service.
	metrics := s.get(t, s.serverURL(t)+"/metrics").body
	re := regexp.MustCompile(`usher_anonymous_rate_limited_total\{[^}]*service="limited"[^}]*\} (\d+)`)
	m := re.FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("/metrics has no usher_anonymous_rate_limited_total for limited")
	}
	if n, _ := strconv.Atoi(m[1]); n < flood.non2xx {
		t.Errorf("usher_anonymous_rate_limited_total = %d, want at least wrk's %d refusals", n, flood.non2xx)
	}

	// Audit: the refusals are in the trail, aggregated (far fewer records
	// than refusals), and the total count covers them. On a loaded machine
	// the audit queue can fill under the flood: what it drops is counted in
	// a project-level record instead, which the total includes.
	poll(t, 15*time.Second, "rate-limit refusals in the audit trail", func() (bool, string) {
		records, n, dropped := 0, 0, 0
		for _, r := range s.auditLog(t) {
			switch {
			case r.Service == "limited" && r.Status == 429:
				records++
				n += max(r.Count, 1)
			case r.Service == "" && strings.Contains(r.Reason, "not recorded one by one"):
				dropped += r.Count
			}
		}
		return n+dropped >= flood.non2xx && records < flood.non2xx,
			strconv.Itoa(records) + " records for " + strconv.Itoa(n) + " refusals, " + strconv.Itoa(dropped) + " dropped"
	})

	// The attacker: a principal that may invoke but not update the service
	// cannot lift the limit, and nothing changes.
	denied := s.cli(t, "run", "services", "update", "limited", "--region="+region, "--anonymous-rate-limit=off", "--impersonate-service-account="+sa)
	if line := cliFails(t, denied); !strings.Contains(line, "run.services.update") && !strings.Contains(strings.ToLower(line), "permission") {
		t.Errorf("an invoker lifting the limit: %q, want a permission refusal", line)
	}
	r = s.mustCLI(t, "run", "services", "describe", "limited", "--region="+region, "--format", "json")
	if !strings.Contains(r.stdout, apis.AnnotationAnonymousRateLimit) {
		t.Fatal("a refused update removed the limit")
	}

	// Lifting the limit: anonymous callers are served again.
	s.mustCLI(t, "run", "services", "update", "limited", "--region="+region, "--anonymous-rate-limit=off")
	poll(t, 15*time.Second, "anonymous callers served after the limit is removed", func() (bool, string) {
		ok := true
		for range 10 {
			if got := s.get(t, svcURL+"/"); got.status != 200 {
				ok = false
			}
		}
		return ok, ""
	})
}
