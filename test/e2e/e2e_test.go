// Package e2e drives the built usher binary like a user does: `usher serve` as
// a real process, the CLI as real processes, HTTP to service URLs through the
// server's one listener.
package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	helloService = "my-hello-world-service"
	helloBody    = "Hello World!"
	invokerRole  = "roles/run.invoker"
)

// TestInvokerIAMScenario is the acceptance scenario, in order, on one
// server: private by default, 401/403/200 as the policy changes, forged tokens
// refused, allUsers on and off, concurrent binding changes, and a crash.
func TestInvokerIAMScenario(t *testing.T) {
	s := startServer(t)
	var svcURL string

	mustStep(t, "1 deploy", func(t *testing.T) {
		r := s.mustCLI(t, "run", "deploy", helloService, "--image=file://"+helloBin, "--region="+region)
		if want := "Service URL: http://" + helloService + "-"; !strings.Contains(r.stdout, want) {
			t.Errorf("deploy stdout: got %q, want it to contain %q", r.stdout, want)
		}
		sv := s.describe(t, helloService)
		if sv.Status.URL == "" {
			t.Fatalf("describe: got empty status.url, want the service URL")
		}
		if !strings.HasPrefix(sv.Status.URL, "http://"+helloService+"-") {
			t.Errorf("status.url: got %q, want http://%s-…", sv.Status.URL, helloService)
		}
		if !strings.Contains(r.stdout, "Service URL: "+sv.Status.URL) {
			t.Errorf("deploy stdout: got %q, want it to name status.url %q", r.stdout, sv.Status.URL)
		}
		if sv.Status.LatestReadyRevisionName == "" {
			t.Errorf("describe: got empty status.latestReadyRevisionName, want a revision")
		}
		if got := sv.ready(); got != "True" {
			t.Errorf("describe: got Ready condition %q, want True", got)
		}
		svcURL = sv.Status.URL
	})

	mustStep(t, "2 no credentials is 401", func(t *testing.T) {
		expect401(t, s.get(t, svcURL), "Bearer")
	})

	invoker := saEmail("invoker-sa")
	var tok string
	mustStep(t, "3 service account without a grant is 403", func(t *testing.T) {
		s.mustCLI(t, "iam", "service-accounts", "create", "invoker-sa")
		tok = s.idToken(t, invoker, svcURL)
		if got := claims(t, tok)["email"]; got != invoker {
			t.Errorf("token email: got %v, want %s", got, invoker)
		}
		r := s.get(t, svcURL, "Authorization", bearer(tok))
		if r.status != 403 {
			t.Fatalf("GET with an ungranted SA token: got %d %q, want 403", r.status, r.body)
		}
		if !strings.Contains(r.body, "403 Forbidden") {
			t.Errorf("403 body: got %q, want it to contain \"403 Forbidden\"", r.body)
		}
	})

	mustStep(t, "4 grant is in force before the CLI returns", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", helloService,
			"--member=serviceAccount:"+invoker, "--role="+invokerRole, "--region="+region)
		expectHello(t, s.get(t, svcURL, "Authorization", bearer(tok)))
		expectHello(t, s.get(t, svcURL, "X-Serverless-Authorization", bearer(tok)))
	})

	t.Run("5 forged and foreign tokens are 401 invalid_token", func(t *testing.T) {
		h, p, sig := jwtParts(t, tok)

		var payload map[string]any
		if err := json.Unmarshal(unb64(t, p), &payload); err != nil {
			t.Fatal(err)
		}
		payload["email"] = "owner@usher.localhost"
		payload["sub"] = "owner@usher.localhost"
		forgedPayload, _ := json.Marshal(payload)

		sigBytes := unb64(t, sig)
		flipped := slices.Clone(sigBytes)
		flipped[len(flipped)/2] ^= 0x01

		var header map[string]any
		if err := json.Unmarshal(unb64(t, h), &header); err != nil {
			t.Fatal(err)
		}
		header["alg"] = "none"
		noneHeader, _ := json.Marshal(header)
		header["alg"] = "HS256"
		hsHeader, _ := json.Marshal(header)
		// The classic key-confusion attack: HMAC keyed with the public keys.
		jwks := s.get(t, s.serverURL(t)+"/oauth2/v3/certs")
		if jwks.status != 200 {
			t.Fatalf("GET /oauth2/v3/certs: got %d, want 200", jwks.status)
		}
		mac := hmac.New(sha256.New, []byte(jwks.body))
		mac.Write([]byte(b64(hsHeader) + "." + p))
		hsToken := b64(hsHeader) + "." + p + "." + b64(mac.Sum(nil))

		otherAud := s.idToken(t, invoker, "http://other.example")
		access := strings.TrimSpace(s.mustCLI(t, "auth", "print-access-token").stdout)

		cases := []struct {
			name, header, value string
		}{
			{"payload modified, original signature", "Authorization", bearer(h + "." + b64(forgedPayload) + "." + sig)},
			{"signature bytes altered", "Authorization", bearer(h + "." + p + "." + b64(flipped))},
			{"alg none, empty signature", "Authorization", bearer(b64(noneHeader) + "." + p + ".")},
			{"HS256 keyed with the JWKS", "Authorization", bearer(hsToken)},
			{"audience of another URL", "Authorization", bearer(otherAud)},
			{"garbage", "Authorization", "Bearer abc"},
			{"owner access token", "Authorization", bearer(access)},
			{"truncated signature", "Authorization", bearer(h + "." + p + "." + sig[:len(sig)/2])},
			{"service URL plus a path as audience", "Authorization", bearer(s.idToken(t, invoker, svcURL+"/path"))},
			{"forged X-Serverless-Authorization", "X-Serverless-Authorization", bearer(h + "." + b64(forgedPayload) + "." + sig)},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				expect401(t, s.get(t, svcURL, c.header, c.value), `Bearer error="invalid_token"`)
			})
		}
		t.Run("X-Serverless-Authorization wins over a valid Authorization", func(t *testing.T) {
			r := s.get(t, svcURL, "Authorization", bearer(tok), "X-Serverless-Authorization", "Bearer abc")
			expect401(t, r, `Bearer error="invalid_token"`)
		})
		t.Run("the genuine token still works", func(t *testing.T) {
			expectHello(t, s.get(t, svcURL, "Authorization", bearer(tok)))
		})
	})

	t.Run("6 owner identity token without audiences", func(t *testing.T) {
		owner := strings.TrimSpace(s.mustCLI(t, "auth", "print-identity-token").stdout)
		expectHello(t, s.get(t, svcURL, "Authorization", bearer(owner)))
	})

	t.Run("7 allUsers makes it public", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "add-iam-policy-binding", helloService,
			"--member=allUsers", "--role=roles/run.invoker", "--region=us-central1")
		expectHello(t, s.get(t, svcURL))
	})

	t.Run("8 removing allUsers makes it private at once", func(t *testing.T) {
		s.mustCLI(t, "run", "services", "remove-iam-policy-binding", helloService,
			"--member=allUsers", "--role=roles/run.invoker", "--region=us-central1")
		expect401(t, s.get(t, svcURL), "Bearer")
		expectHello(t, s.get(t, svcURL, "Authorization", bearer(tok)))
	})

	t.Run("9 concurrent binding adds all land", func(t *testing.T) {
		var members []string
		for i := range 10 {
			name := fmt.Sprintf("concurrent-sa-%02d", i)
			members = append(members, "serviceAccount:"+s.createSA(t, name))
		}
		results := make([]cliResult, len(members))
		errs := make([]error, len(members))
		var wg sync.WaitGroup
		for i, m := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.runCLI("run", "services", "add-iam-policy-binding", helloService,
					"--member="+m, "--role="+invokerRole, "--region="+region)
			}()
		}
		wg.Wait()
		for i, r := range results {
			if errs[i] != nil {
				t.Error(errs[i])
			} else if r.code != 0 {
				t.Errorf("got %s\nwant exit 0", r)
			}
		}
		got := s.servicePolicy(t, helloService).members(invokerRole)
		for _, m := range append(members, "serviceAccount:"+invoker) {
			if !slices.Contains(got, m) {
				t.Errorf("roles/run.invoker members: got %q, want it to contain %s", got, m)
			}
		}
		if len(got) != len(members)+1 {
			t.Errorf("roles/run.invoker members: got %d %q, want %d", len(got), got, len(members)+1)
		}
	})

	t.Run("10 kill -9 and restart on the same data dir", func(t *testing.T) {
		before := s.servicePolicy(t, helloService)
		port := s.port(t)
		s.crash()
		s.restart(t, "127.0.0.1:"+port)

		if got := s.describe(t, helloService).Status.URL; got != svcURL {
			t.Errorf("status.url after restart: got %q, want %q", got, svcURL)
		}
		t.Run("still private", func(t *testing.T) {
			expect401(t, s.get(t, svcURL), "Bearer")
		})
		t.Run("policy intact", func(t *testing.T) {
			after := s.servicePolicy(t, helloService)
			if got, want := after.bindingsJSON(), before.bindingsJSON(); got != want {
				t.Errorf("bindings after restart: got %s, want %s", got, want)
			}
		})
		t.Run("fresh token cold-starts the instance", func(t *testing.T) {
			expectHello(t, s.get(t, svcURL, "Authorization", bearer(s.idToken(t, invoker, svcURL))))
		})
		t.Run("token minted before the crash still verifies", func(t *testing.T) {
			expectHello(t, s.get(t, svcURL, "Authorization", bearer(tok)))
		})
	})
}

// TestHeadersToInstance checks what reaches an instance: credentials used for
// IAM lose their signature, the app's own Authorization is untouched, spoofed
// forwarding and identity headers are dropped, and a public service gets the
// request as sent.
func TestHeadersToInstance(t *testing.T) {
	s := startServer(t)
	const name = "echo-service"
	svcURL := s.deploy(t, name, echoBin)
	u, err := url.Parse(svcURL)
	if err != nil {
		t.Fatal(err)
	}
	sa := s.createSA(t, "echo-invoker")
	tok := s.idToken(t, sa, svcURL)
	h, p, _ := jwtParts(t, tok)
	stripped := h + "." + p + ".SIGNATURE_REMOVED_BY_GOOGLE"

	t.Run("refused requests never reach the instance", func(t *testing.T) {
		refused := []struct {
			path    string
			status  int
			headers []string
		}{
			{"/refused-no-credentials", 401, nil},
			{"/refused-forged", 401, []string{"Authorization", bearer(h + "." + p + ".c2lnbmF0dXJl")}},
			{"/refused-not-granted", 403, []string{"Authorization", bearer(tok)}},
		}
		for _, c := range refused {
			if r := s.get(t, svcURL+c.path, c.headers...); r.status != c.status {
				t.Errorf("GET %s: got %d %q, want %d", c.path, r.status, r.body, c.status)
			}
		}
		s.grant(t, name, "serviceAccount:"+sa, invokerRole)
		if r := s.get(t, svcURL+"/admitted", "Authorization", bearer(tok)); r.status != 200 {
			t.Fatalf("GET /admitted with a granted token: got %d %q, want 200", r.status, r.body)
		}
		// The instance logs requests in order and Usher copies its output
		// in order: once /admitted shows, any refused request would too.
		poll(t, 10*time.Second, "the instance's log line for /admitted", func() (bool, string) {
			return strings.Contains(s.logSince(0), "echo: GET /admitted"), "not logged yet"
		})
		log := s.logSince(0)
		for _, c := range refused {
			if strings.Contains(log, "echo: GET "+c.path) {
				t.Errorf("the instance received GET %s (refused with %d), want it never to", c.path, c.status)
			}
		}
	})

	t.Run("X-Serverless-Authorization with an app Authorization and spoofed headers", func(t *testing.T) {
		seen := seenHeaders(t, s.get(t, svcURL+"/headers",
			"X-Serverless-Authorization", bearer(tok),
			"Authorization", "Bearer app-token-123",
			"X-Forwarded-For", "6.6.6.6",
			"Forwarded", "for=6.6.6.6",
			"X-Real-IP", "6.6.6.6",
			"X-Goog-Authenticated-User-Email", "evil@x.com",
		))
		expectHeader(t, seen, "Authorization", "Bearer app-token-123")
		expectHeader(t, seen, "X-Serverless-Authorization", bearer(stripped))
		expectHeader(t, seen, "X-Forwarded-For", "127.0.0.1")
		expectHeader(t, seen, "X-Forwarded-Proto", "http")
		for _, h := range []string{"Forwarded", "X-Real-Ip", "X-Goog-Authenticated-User-Email"} {
			if v, ok := seen.Headers[h]; ok {
				t.Errorf("instance saw %s: %q, want it absent", h, v)
			}
		}
		if seen.Host != u.Host {
			t.Errorf("instance saw Host %q, want %q", seen.Host, u.Host)
		}
	})

	t.Run("aliases of stripped headers never reach the instance", func(t *testing.T) {
		// CGI, WSGI, nginx and others read "_" and "." as "-": these would
		// be the identity and forwarding headers to such an app.
		aliases := []string{
			"X_Goog_Authenticated_User_Email", "X.Goog.Authenticated.User.Email",
			"x_goog_authenticated_user_id", "X_Goog_Iap_Jwt_Assertion",
			"x_serverless_authorization", "X_Forwarded_For", "X.Forwarded.Host",
			"X_Forwarded_Port", "X_Real_IP", "X_Usher_Principal",
		}
		headers := []string{"X-Serverless-Authorization", bearer(tok)}
		for _, a := range aliases {
			headers = append(headers, a, "evil@x.com")
		}
		seen := seenHeaders(t, s.get(t, svcURL+"/headers", headers...))
		for k, v := range seen.Headers {
			if strings.ContainsAny(k, "_.") {
				t.Errorf("instance saw %s: %q, want no alias of a stripped header", k, v)
			}
		}
		expectHeader(t, seen, "X-Serverless-Authorization", bearer(stripped))
	})

	t.Run("Authorization used for IAM loses its signature", func(t *testing.T) {
		seen := seenHeaders(t, s.get(t, svcURL+"/headers", "Authorization", bearer(tok)))
		expectHeader(t, seen, "Authorization", bearer(stripped))
		if v, ok := seen.Headers["X-Serverless-Authorization"]; ok {
			t.Errorf("instance saw X-Serverless-Authorization %q, want it absent", v)
		}
	})

	t.Run("public service gets credentials untouched", func(t *testing.T) {
		s.grant(t, name, "allUsers", invokerRole)
		if r := s.get(t, svcURL+"/"); r.status != 200 || strings.TrimSpace(r.body) != "echo" {
			t.Fatalf("GET / without credentials on the public echo service: got %d %q, want 200 \"echo\"", r.status, r.body)
		}
		seen := seenHeaders(t, s.get(t, svcURL+"/headers", "Authorization", bearer(tok)))
		expectHeader(t, seen, "Authorization", bearer(tok))
		seen = seenHeaders(t, s.get(t, svcURL+"/headers", "X-Serverless-Authorization", bearer(tok), "Authorization", "Bearer app-token-123"))
		expectHeader(t, seen, "X-Serverless-Authorization", bearer(tok))
		expectHeader(t, seen, "Authorization", "Bearer app-token-123")
	})
}

// TestAPIAuth checks the admin API's authentication, authorization and policy
// validation, through raw HTTP and the CLI.
func TestAPIAuth(t *testing.T) {
	s := startServer(t)
	const name = "api-service"
	s.deploy(t, name, helloBin)
	member := "serviceAccount:" + s.createSA(t, "member-sa")
	lowpriv := s.createSA(t, "lowpriv-sa")
	listURL := s.serverURL(t) + "/v1/projects/" + project + "/locations/" + region + "/services"

	t.Run("no token is 401 UNAUTHENTICATED", func(t *testing.T) {
		r := s.get(t, listURL)
		e := apiError(t, r)
		if r.status != 401 || e.Code != 401 || e.Status != "UNAUTHENTICATED" || e.Message == "" {
			t.Errorf("GET %s without a token: got %d %s, want 401 {code:401, status:UNAUTHENTICATED, message:…}", listURL, r.status, r.body)
		}
	})

	t.Run("service account without permissions is 403 PERMISSION_DENIED", func(t *testing.T) {
		access := strings.TrimSpace(s.mustCLI(t, "auth", "print-access-token", "--impersonate-service-account", lowpriv).stdout)
		if access == "" {
			t.Fatal("print-access-token --impersonate-service-account printed nothing")
		}
		r := s.get(t, listURL, "Authorization", bearer(access))
		e := apiError(t, r)
		if r.status != 403 || e.Code != 403 || e.Status != "PERMISSION_DENIED" {
			t.Errorf("GET %s as %s: got %d %s, want 403 PERMISSION_DENIED", listURL, lowpriv, r.status, r.body)
		}
		// A service account's identity token is not an access token.
		idTok := s.idToken(t, lowpriv, s.serverURL(t))
		if r := s.get(t, listURL, "Authorization", bearer(idTok)); r.status != 401 {
			t.Errorf("GET %s with an identity token: got %d %s, want 401", listURL, r.status, r.body)
		}
	})

	t.Run("CLI as a service account without permissions", func(t *testing.T) {
		// gcloud's global --impersonate-service-account.
		line := cliFails(t, s.cli(t, "run", "services", "list", "--impersonate-service-account", lowpriv))
		if !strings.Contains(line, "PERMISSION_DENIED") {
			t.Errorf("run services list --impersonate-service-account %s: got %q, want a PERMISSION_DENIED error", lowpriv, line)
		}
	})

	t.Run("stale etag is ABORTED and changes nothing", func(t *testing.T) {
		old := s.servicePolicy(t, name)
		s.grant(t, name, member, invokerRole)
		current := s.servicePolicy(t, name)
		if current.Etag == old.Etag {
			t.Fatalf("etag after a binding change: got %q, want it different from %q", current.Etag, old.Etag)
		}
		stale := old
		stale.Bindings = append(slices.Clone(old.Bindings), binding{Role: "roles/run.admin", Members: []string{member}})
		file := writePolicyFile(t, stale)
		line := cliFails(t, s.cli(t, "run", "services", "set-iam-policy", name, file, "--region="+region))
		if !strings.Contains(line, "ABORTED") {
			t.Errorf("set-iam-policy with a stale etag: got %q, want ABORTED", line)
		}
		after := s.servicePolicy(t, name)
		if after.Etag != current.Etag || after.bindingsJSON() != current.bindingsJSON() {
			t.Errorf("policy after a refused set-iam-policy: got %+v, want %+v", after, current)
		}

		// The current etag is accepted.
		fresh := current
		fresh.Bindings = append(slices.Clone(current.Bindings), binding{Role: "roles/run.developer", Members: []string{member}})
		s.mustCLI(t, "run", "services", "set-iam-policy", name, writePolicyFile(t, fresh), "--region="+region)
		if got := s.servicePolicy(t, name).members("roles/run.developer"); !slices.Equal(got, []string{member}) {
			t.Errorf("roles/run.developer after set-iam-policy: got %q, want [%s]", got, member)
		}
	})

	refused := []struct {
		name   string
		args   []string
		expect string // in the error line
	}{
		{"member without a type prefix", []string{"--member=alice@example.com", "--role=" + invokerRole}, "alice@example.com"},
		{"allusers misspelled", []string{"--member=allusers", "--role=" + invokerRole}, "allusers"},
		{"unknown role", []string{"--member=" + member, "--role=roles/run.superuser"}, "roles/run.superuser"},
	}
	for _, c := range refused {
		t.Run(c.name+" is refused", func(t *testing.T) {
			before := s.servicePolicy(t, name)
			args := append([]string{"run", "services", "add-iam-policy-binding", name, "--region=" + region}, c.args...)
			line := cliFails(t, s.cli(t, args...))
			if !strings.Contains(line, c.expect) {
				t.Errorf("usher %s: got %q, want it to mention %q", strings.Join(args, " "), line, c.expect)
			}
			after := s.servicePolicy(t, name)
			if after.Etag != before.Etag || after.bindingsJSON() != before.bindingsJSON() {
				t.Errorf("policy after a refused change: got %+v, want %+v", after, before)
			}
		})
	}

	t.Run("allUsers on the project is INVALID_ARGUMENT", func(t *testing.T) {
		before := s.projectPolicy(t)
		line := cliFails(t, s.cli(t, "projects", "add-iam-policy-binding", project, "--member=allUsers", "--role=roles/run.invoker"))
		if !strings.Contains(line, "INVALID_ARGUMENT") {
			t.Errorf("projects add-iam-policy-binding allUsers: got %q, want INVALID_ARGUMENT", line)
		}
		after := s.projectPolicy(t)
		if after.Etag != before.Etag || after.bindingsJSON() != before.bindingsJSON() {
			t.Errorf("project policy after a refused change: got %+v, want %+v", after, before)
		}
		if slices.Contains(after.members("roles/run.invoker"), "allUsers") {
			t.Errorf("project policy: got allUsers bound to roles/run.invoker, want it refused")
		}
	})
}

// TestDeleteMakesPrivate checks that a service's policy dies with it: a new
// service of the same name starts private.
func TestDeleteMakesPrivate(t *testing.T) {
	s := startServer(t)
	const name = "deleted-service"
	svcURL := s.deploy(t, name, helloBin, "--allow-unauthenticated")
	expectHello(t, s.get(t, svcURL))

	s.mustCLI(t, "run", "services", "delete", name, "--region="+region, "--quiet")
	if r := s.get(t, svcURL); r.status != 404 {
		t.Errorf("GET a deleted service: got %d %q, want 404", r.status, r.body)
	}

	again := s.deploy(t, name, helloBin)
	if again != svcURL {
		t.Errorf("URL of the redeployed service: got %q, want the same %q", again, svcURL)
	}
	expect401(t, s.get(t, again), "Bearer")
	if got := s.servicePolicy(t, name).members(invokerRole); len(got) != 0 {
		t.Errorf("roles/run.invoker members of the new service: got %q, want none", got)
	}
}

// mustStep runs a subtest and stops the test if it failed: later steps build
// on its state.
func mustStep(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

func expect401(t *testing.T, r response, wwwAuth string) {
	t.Helper()
	if r.status != 401 {
		t.Errorf("got status %d %q, want 401", r.status, r.body)
		return
	}
	if got := r.header.Values("WWW-Authenticate"); !slices.Equal(got, []string{wwwAuth}) {
		t.Errorf("WWW-Authenticate: got %q, want [%q]", got, wwwAuth)
	}
	if !strings.Contains(r.body, "401 Unauthorized") {
		t.Errorf("401 body: got %q, want it to contain \"401 Unauthorized\"", r.body)
	}
}

func expectHello(t *testing.T, r response) {
	t.Helper()
	if r.status != 200 || strings.TrimSpace(r.body) != helloBody {
		t.Errorf("got %d %q, want 200 %q", r.status, r.body, helloBody)
	}
}

// seen is what the echo app reports about the request it received.
type seen struct {
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
}

func seenHeaders(t *testing.T, r response) seen {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("GET /headers: got %d %q, want 200", r.status, r.body)
	}
	var out seen
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("GET /headers: %v: %q", err, r.body)
	}
	return out
}

func expectHeader(t *testing.T, s seen, name, want string) {
	t.Helper()
	if got := s.Headers[name]; !slices.Equal(got, []string{want}) {
		t.Errorf("instance saw %s: got %q, want [%q]", name, got, want)
	}
}

type apiErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

func apiError(t *testing.T, r response) apiErr {
	t.Helper()
	var e struct {
		Error apiErr `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Errorf("error body: got %q, want Google's JSON error shape: %v", r.body, err)
	}
	return e.Error
}

func writePolicyFile(t *testing.T, p policy) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "policy-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
