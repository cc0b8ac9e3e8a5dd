package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestIngress: a service deployed with --ingress=internal answers a
// sandboxed instance of another service (through the gateway, as any
// caller) and 404s the host, even from a trusted proxy naming an internal
// address in X-Forwarded-For, before any authentication; with
// internal-and-cloud-load-balancing the trusted proxy gets through. The
// refusals are in the audit trail; --ingress=all opens the service again.
func TestIngress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("instances are told apart by the process sandbox, which needs root")
	}
	// The test itself (127.0.0.1) is the operator's trusted proxy; the
	// internal network is one nobody here is on.
	s := startServerWith(t, "--trusted-proxies=127.0.0.1", "--internal-cidrs=192.0.2.0/24")
	prober := s.deploy(t, "prober", proberBin, "--allow-unauthenticated")
	internal := s.deploy(t, "internal", helloBin, "--allow-unauthenticated", "--ingress=internal")
	lb := s.deploy(t, "lb", helloBin, "--allow-unauthenticated", "--ingress=internal-and-cloud-load-balancing")
	private := s.deploy(t, "private-internal", helloBin, "--ingress=internal")

	fromInstance := func(service, tok string) response {
		q := url.Values{"url": {"http://" + s.currentAddr() + "/"}, "host": {strings.TrimPrefix(service, "http://")}}
		if tok != "" {
			q.Set("bearer", tok)
		}
		return s.get(t, prober+"/fetch?"+q.Encode())
	}

	// The user's view: the instance of another service reaches it.
	if r := fromInstance(internal, ""); r.status != http.StatusOK || !strings.Contains(r.body, "Hello") {
		t.Errorf("internal service from a sandboxed instance: %d %q, want 200 Hello", r.status, r.body)
	}
	if r := fromInstance(lb, ""); r.status != http.StatusOK {
		t.Errorf("internal-and-cloud-load-balancing service from an instance: %d %q, want 200", r.status, r.body)
	}
	// Authentication still applies once ingress admits.
	if r := fromInstance(private, ""); r.status != http.StatusUnauthorized {
		t.Errorf("private internal service from an instance without a token: %d, want 401", r.status)
	}
	// The trusted proxy reaches the load-balancing service, not the internal one.
	if r := s.get(t, lb); r.status != http.StatusOK {
		t.Errorf("internal-and-cloud-load-balancing from a trusted proxy: %d %q, want 200", r.status, r.body)
	}

	// The attacker's view: from the host, with forged forwarding headers
	// naming the internal network or an instance's relay address, and with
	// a valid token: 404, as if the service did not exist.
	invoker := s.createSA(t, "caller")
	s.grant(t, "private-internal", "serviceAccount:"+invoker, "roles/run.invoker")
	tok := s.idToken(t, invoker, private)
	for _, tc := range []struct {
		name, url string
		headers   []string
	}{
		{"plain", internal, nil},
		{"X-Forwarded-For internal network", internal, []string{"X-Forwarded-For", "192.0.2.7"}},
		{"X-Forwarded-For relay address", internal, []string{"X-Forwarded-For", "127.77.0.2", "X-Real-Ip", "127.77.0.2", "Forwarded", "for=192.0.2.7"}},
		{"valid token", private, []string{"Authorization", "Bearer " + tok}},
		{"no token", private, nil},
	} {
		if r := s.get(t, tc.url, tc.headers...); r.status != http.StatusNotFound || r.header.Get("Www-Authenticate") != "" {
			t.Errorf("%s: from the host: %d (WWW-Authenticate %q), want 404 without a challenge", tc.name, r.status, r.header.Get("Www-Authenticate"))
		}
	}

	// describe shows the setting, as gcloud reads it.
	var desc struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(s.mustCLI(t, "run", "services", "describe", "internal", "--region="+region, "--format", "json").stdout), &desc); err != nil {
		t.Fatal(err)
	}
	if a := desc.Metadata.Annotations; a["run.googleapis.com/ingress"] != "internal" || a["run.googleapis.com/ingress-status"] != "internal" {
		t.Errorf("describe annotations %v, want ingress and ingress-status internal", a)
	}

	// The refusals are explained in the audit trail.
	denied := find(s.auditLog(t, "--service=internal"), func(r auditRecord) bool {
		return r.Status == http.StatusNotFound && strings.Contains(r.Reason, "ingress is internal")
	})
	if len(denied) == 0 {
		t.Errorf("no audit record of the ingress refusals of internal")
	}

	// A wrong value changes nothing.
	if r := s.cli(t, "run", "services", "update", "internal", "--region="+region, "--ingress=everyone"); r.code == 0 {
		t.Errorf("--ingress=everyone accepted: %s", r)
	}
	s.mustCLI(t, "run", "services", "update", "internal", "--region="+region, "--ingress=all")
	if r := s.get(t, internal); r.status != http.StatusOK {
		t.Errorf("after --ingress=all, from the host: %d, want 200", r.status)
	}
}

// TestNoDefaultURL: --no-default-url takes every run URL of the service
// away (404, as for no service; tags' too), describe shows none, and
// --default-url brings them back.
func TestNoDefaultURL(t *testing.T) {
	s := startServer(t)
	u := s.deploy(t, "hidden", helloBin, "--allow-unauthenticated")
	s.mustCLI(t, "run", "services", "update", "hidden", "--region="+region, "--tag=blue", "--update-env-vars=A=1")
	tagURL := strings.Replace(u, "://", "://blue---", 1)
	if r := s.get(t, tagURL); r.status != http.StatusOK {
		t.Fatalf("tag URL before: %d, want 200", r.status)
	}
	s.mustCLI(t, "run", "services", "update", "hidden", "--region="+region, "--no-default-url")
	for _, target := range []string{u, tagURL} {
		if r := s.get(t, target); r.status != http.StatusNotFound {
			t.Errorf("%s with --no-default-url: %d, want 404", target, r.status)
		}
	}
	out := s.mustCLI(t, "run", "services", "describe", "hidden", "--region="+region, "--format", "json").stdout
	if sv := s.describe(t, "hidden"); sv.Status.URL != "" || strings.Contains(out, "run.googleapis.com/urls") || strings.Contains(out, "blue---") {
		t.Errorf("describe with --no-default-url shows a URL:\n%s", out)
	}
	if !strings.Contains(out, `"run.googleapis.com/default-url-disabled": "true"`) {
		t.Errorf("describe does not show the setting:\n%s", out)
	}
	s.mustCLI(t, "run", "services", "update", "hidden", "--region="+region, "--default-url")
	if r := s.get(t, u); r.status != http.StatusOK {
		t.Errorf("after --default-url: %d, want 200", r.status)
	}
	if sv := s.describe(t, "hidden"); sv.Status.URL != u {
		t.Errorf("after --default-url: status.url %q, want %q", sv.Status.URL, u)
	}
}

// TestInMemoryVolume: a sandboxed instance finds its in-memory volume
// (usher run deploy --add-volume type=in-memory --add-volume-mount),
// writable and bounded by its size limit. The attacker's view: a volume
// mounted over Usher's own data directory (a host path the sandbox hides)
// shows an empty file system, never the data under it.
func TestInMemoryVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process sandbox needs root")
	}
	s := startServer(t)
	u := s.deploy(t, "vol", proberBin, "--allow-unauthenticated",
		"--add-volume=name=cache,type=in-memory,size-limit=1Mi", "--add-volume-mount=volume=cache,mount-path=/tmp/cache",
		"--add-volume=name=peek,type=in-memory", "--add-volume-mount=volume=peek,mount-path="+s.dataDir)
	if r := s.get(t, u+"/write?bytes=1000&path=/tmp/cache/f"); r.status != http.StatusOK {
		t.Errorf("write to the volume: %d %s", r.status, r.body)
	}
	if r := s.get(t, u+"/write?bytes=2097152&path=/tmp/cache/big"); r.status == http.StatusOK {
		t.Errorf("2 MiB written to a 1 MiB volume")
	}
	if r := s.get(t, u+"/read?path="+s.dataDir+"/usher.db"); r.status == http.StatusOK {
		t.Errorf("a volume over the data dir reads usher.db (%d bytes)", len(r.body))
	}
	if _, err := os.Stat(s.dataDir + "/usher.db"); err != nil {
		t.Errorf("usher.db on the host: %v", err)
	}
	// A mount path the sandbox cannot have is refused at deploy.
	r := s.cli(t, "run", "services", "update", "vol", "--region="+region,
		"--add-volume=name=x,type=in-memory", "--add-volume-mount=volume=x,mount-path=/no-such-dir-on-the-host")
	if r.code == 0 || !strings.Contains(r.stderr, "mountPath") {
		t.Errorf("mount at /no-such-dir-on-the-host: %s, want a refusal naming mountPath", r)
	}
	if r := s.cli(t, "run", "services", "update", "vol", "--region="+region, "--add-volume=name=x,type=nfs"); r.code == 0 {
		t.Errorf("--add-volume type=nfs accepted: %s", r)
	}
}
