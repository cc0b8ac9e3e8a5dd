package e2e

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/remotehost"
	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestSandboxUnprivileged runs `usher serve` as nobody: its instances are
// sandboxed in a user namespace (no --unsandboxed-processes needed), with
// pasta's egress, and the escape attempts of TestSandboxEscapes fail the
// same way; Usher's data dir, although its user (the instance's, on the
// host) owns it, stays hidden, and so does its home.
func TestSandboxUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test becomes nobody, which takes root")
	}
	dir, err := os.MkdirTemp("", "usher-e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: dir, User: &syscall.Credential{Uid: 65534, Gid: 65534}, Args: []string{"--instance-egress=all"}})
	s := &server{Server: p, t: t, dir: p.Dir, dataDir: p.DataDir, home: p.Home, logPath: p.LogPath, config: p.ConfigPath, http: p.HTTP}
	if log := s.Log(); strings.Contains(log, "cannot be sandboxed") {
		t.Skipf("*** NOT TESTED: this kernel lets no unprivileged user make the sandbox's user namespace, so a Usher that is not root refuses file:// images here: %s ***", log)
	}
	if !strings.Contains(s.Log(), "in a user namespace") {
		t.Fatalf("usher serve as nobody does not say it sandboxes in a user namespace:\n%s", s.Log())
	}
	// The host's addresses before the instances start: those are the ones
	// they are kept from (an address the host gains later, such as another
	// Usher's instance link, is reachable through pasta: see README).
	before := map[string]bool{}
	for _, ip := range hostIPv4s(t) {
		before[ip] = true
	}
	a := s.deploy(t, "prober-a", proberBin, "--allow-unauthenticated")
	b := s.deploy(t, "prober-b", proberBin, "--allow-unauthenticated")
	private := s.deploy(t, "private", helloBin)
	envOf := func(url string) map[string]string {
		var env struct{ Env map[string]string }
		if err := json.Unmarshal([]byte(s.get(t, url+"/env").body), &env); err != nil {
			t.Fatal(err)
		}
		return env.Env
	}
	aPort, bPort, md := envOf(a)["PORT"], envOf(b)["PORT"], envOf(a)["GCE_METADATA_HOST"]
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+aPort, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("dial 127.0.0.1:%s (the instance's PORT) from the host: connected, want refused", aPort)
	}
	hostSvc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostSvc.Close()

	email := s.get(t, a+"/fetch?url="+url.QueryEscape("http://"+md+"/computeMetadata/v1/instance/service-accounts/default/email")).body
	s.grant(t, "private", "serviceAccount:"+email, "roles/run.invoker")
	token := s.get(t, a+"/fetch?url="+url.QueryEscape("http://"+md+"/computeMetadata/v1/instance/service-accounts/default/identity?audience="+url.QueryEscape(private))).body
	viaGateway := func(service, tok string) string {
		q := url.Values{"url": {"http://" + s.currentAddr() + "/"}, "host": {strings.TrimPrefix(service, "http://")}}
		if tok != "" {
			q.Set("bearer", tok)
		}
		return "/fetch?" + q.Encode()
	}
	// A service of the host on all its addresses: pasta would connect to
	// it, but the host's addresses are the namespace's own.
	hostWide, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostWide.Close()
	_, widePort, _ := net.SplitHostPort(hostWide.Addr().String())
	type probe struct {
		name, path string
		wantCode   int
		want       string // contained in the body
	}
	var hostProbes []probe
	// (Those it had when the instance started: see relayLocalAddrs.)
	for _, ip := range hostIPv4s(t) {
		// Addresses in 10.201.0.0/16 are the host ends of instance links
		// of root Ushers running beside this test (other test packages):
		// they come and go with those instances, so they are not the
		// host's addresses this instance started with.
		if !before[ip] || strings.HasPrefix(ip, "10.201.") {
			continue
		}
		hostProbes = append(hostProbes, probe{"Host/" + ip, "/dial?addr=" + net.JoinHostPort(ip, widePort), 502, ""})
	}
	remote := remotehost.Start(t)
	for _, tc := range append(hostProbes, []probe{
		{"NotRoot", "/id", 200, "65534 65534"},
		{"NoCapabilities", "/read?path=/proc/self/status", 200, "CapEff:\t0000000000000000"},
		{"DataDirConfig", "/read?path=" + filepath.Join(s.dataDir, "config.json"), 403, ""},
		{"DataDirStore", "/read?path=" + filepath.Join(s.dataDir, "usher.db"), 403, ""},
		{"Home", "/read?path=" + filepath.Join(s.home, ".config", "usher", "config.json"), 403, ""},
		{"OtherInstance", "/dial?addr=127.0.0.1:" + bPort, 502, ""},
		{"HostLoopbackService", "/dial?addr=" + hostSvc.Addr().String(), 502, ""},
		{"GatewayChecksIAM", viaGateway(private, ""), 401, ""},
		{"GatewayWithMetadataToken", viaGateway(private, token), 200, "Hello"},
		{"Egress", "/fetch?url=http://" + remote.Addr + "/", 200, remote.Local.String()},
	}...) {
		t.Run(tc.name, func(t *testing.T) {
			got := s.get(t, a+tc.path)
			if got.status != tc.wantCode || !strings.Contains(got.body, tc.want) || strings.Contains(got.body, "connected") {
				t.Errorf("GET %s from inside: %d %q, want %d containing %q", tc.path, got.status, got.body, tc.wantCode, tc.want)
			}
		})
	}
}

// TestSandboxUnprivilegedNoEgressByDefault: a Usher that is not root gives
// instances no egress unless asked (pasta cannot filter destinations such as
// a cloud VM's metadata server), and says so.
func TestSandboxUnprivilegedNoEgressByDefault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test becomes nobody, which takes root")
	}
	dir, err := os.MkdirTemp("", "usher-e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: dir, User: &syscall.Credential{Uid: 65534, Gid: 65534}})
	log := p.Log()
	if strings.Contains(log, "cannot be sandboxed") {
		t.Skipf("*** NOT TESTED: no unprivileged user namespaces here: %s ***", log)
	}
	if !strings.Contains(log, "in a user namespace") || !strings.Contains(log, "egress=none") {
		t.Fatalf("usher serve as nobody, no --instance-egress: want a sandbox in a user namespace with egress=none:\n%s", log)
	}
}
