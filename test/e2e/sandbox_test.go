package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/remotehost"
)

// TestSandboxEscapes deploys a hostile public service and tries, from
// inside its instance, everything the sandbox must refuse; what a service
// needs (the gateway, the metadata server and, with egress, other hosts)
// must keep working. Both egress settings: none (loopback relays only) and
// all (the default: a veth pair with NAT), where "another host" is a
// network namespace the test makes, routed through the host. Usher runs as
// root here (as in CI); elsewhere file:// instances are refused unless
// --unsandboxed-processes, so the test is skipped.
func TestSandboxEscapes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process sandbox needs root")
	}
	for _, egress := range []string{"none", "internet", "all"} {
		t.Run("Egress="+egress, func(t *testing.T) { testSandboxEscapes(t, egress) })
	}
}

func testSandboxEscapes(t *testing.T, egress string) {
	s := startServerWith(t, "--instance-egress="+egress)
	a := s.deploy(t, "prober-a", proberBin, "--allow-unauthenticated")
	b := s.deploy(t, "prober-b", proberBin, "--allow-unauthenticated")
	envOf := func(url string) map[string]string {
		var env struct{ Env map[string]string }
		if err := json.Unmarshal([]byte(s.get(t, url+"/env").body), &env); err != nil {
			t.Fatal(err)
		}
		return env.Env
	}
	private := s.deploy(t, "private", helloBin)
	aPort, bPort := envOf(a)["PORT"], envOf(b)["PORT"]
	md := envOf(a)["GCE_METADATA_HOST"]

	// The instance's port does not exist on the host.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+aPort, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("dial 127.0.0.1:%s (the instance's PORT) from the host: connected, want refused", aPort)
	}
	hostSvc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostSvc.Close()
	// A service of the host on all its addresses.
	hostWide, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostWide.Close()
	_, widePort, _ := net.SplitHostPort(hostWide.Addr().String())
	home, _ := os.UserHomeDir()

	// Service to service: prober-a's account may invoke the private
	// service; the instance asks the metadata server for a token.
	email := s.get(t, a+"/fetch?url="+url.QueryEscape("http://"+md+"/computeMetadata/v1/instance/service-accounts/default/email")).body
	if !strings.HasSuffix(email, "-compute@developer.gserviceaccount.com") {
		t.Fatalf("metadata server's email from inside: %q", email)
	}
	s.grant(t, "private", "serviceAccount:"+email, "roles/run.invoker")
	tokenURL := "http://" + md + "/computeMetadata/v1/instance/service-accounts/default/identity?audience=" + url.QueryEscape(private)
	token := s.get(t, a+"/fetch?url="+url.QueryEscape(tokenURL)).body
	if strings.Count(token, ".") != 2 {
		t.Fatalf("identity token from inside: %q", token)
	}
	viaGateway := func(service, tok string) string {
		q := url.Values{"url": {"http://" + s.currentAddr() + "/"}, "host": {strings.TrimPrefix(service, "http://")}}
		if tok != "" {
			q.Set("bearer", tok)
		}
		return "/fetch?" + q.Encode()
	}

	type probe struct {
		name, path string
		wantCode   int
		want       string // contained in the body
	}
	probes := []probe{
		{"NotRoot", "/id", 200, "65534 65534"},
		{"NoCapabilities", "/read?path=/proc/self/status", 200, "CapEff:\t0000000000000000"},
		{"DataDirConfig", "/read?path=" + filepath.Join(s.dataDir, "config.json"), 403, ""},
		{"DataDirStore", "/read?path=" + filepath.Join(s.dataDir, "usher.db"), 403, ""},
		{"UserConfig", "/read?path=" + filepath.Join(home, ".config", "usher", "config.json"), 403, ""},
		{"OtherInstance", "/dial?addr=127.0.0.1:" + bPort, 502, ""},
		{"HostLoopbackService", "/dial?addr=" + hostSvc.Addr().String(), 502, ""},
		// At Usher's own address (no DNS inside), the service's host.
		{"GatewayToAnotherService", "/fetch?url=http://" + s.currentAddr() + "/id&host=" + strings.TrimPrefix(b, "http://"), 200, "65534"},
		{"GatewayChecksIAM", viaGateway(private, ""), 401, ""},
		{"GatewayWithMetadataToken", viaGateway(private, token), 200, "Hello"},
	}
	for _, ip := range hostIPv4s(t) {
		probes = append(probes, probe{"Host/" + ip, "/dial?addr=" + net.JoinHostPort(ip, widePort), 502, ""})
	}
	if egress == "none" {
		probes = append(probes, probe{"NoEgress", "/dial?addr=10.255.255.1:80", 502, ""})
	} else {
		remote := remotehost.Start(t)
		// The remote host, at an internet address, sees the host's
		// address: NAT.
		internet := remote.Alias(t, netip.MustParseAddr("203.0.113.78"))
		probes = append(probes, probe{"EgressWithNAT", "/fetch?url=http://" + internet + "/", 200, remote.Local.String()})
		// At its private address (a LAN neighbour) only with all.
		if egress == "all" {
			probes = append(probes, probe{"PrivateNetwork", "/fetch?url=http://" + remote.Addr + "/", 200, remote.Local.String()})
		} else {
			probes = append(probes, probe{"PrivateNetworkBlocked", "/dial?addr=" + remote.Addr, 502, ""})
		}
		for _, ip := range strings.Fields(s.get(t, b+"/addrs").body) {
			probes = append(probes, probe{"OtherInstanceVeth/" + ip, "/dial?addr=" + net.JoinHostPort(ip, bPort), 502, ""})
		}
	}
	for _, tc := range probes {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // dropped packets take seconds to be refused
			got := s.get(t, a+tc.path)
			if got.status != tc.wantCode || !strings.Contains(got.body, tc.want) || strings.Contains(got.body, "connected") {
				t.Errorf("GET %s from inside: %d %q, want %d containing %q", tc.path, got.status, got.body, tc.wantCode, tc.want)
			}
		})
	}
}

// hostIPv4s lists the host's IPv4 addresses but loopback.
func hostIPv4s(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}
