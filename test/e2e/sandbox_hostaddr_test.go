package e2e

import (
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestSandboxGatewayAtHostAddress: with Usher listening on all addresses,
// an instance reaches the gateway at the host's own address (where a
// service URL's host name resolves), through the relay, with or without
// egress, and IAM still decides; any other port of the host stays closed.
func TestSandboxGatewayAtHostAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process sandbox needs root")
	}
	var hostIPs []string
	for _, ip := range hostIPv4s(t) {
		// Not the host ends of instances' veth pairs (10.201.0.0/16):
		// the host's own addresses, where a service URL would lead.
		if !strings.HasPrefix(ip, "10.201.") {
			hostIPs = append(hostIPs, ip)
		}
	}
	if len(hostIPs) == 0 {
		t.Skip("no non-loopback address")
	}
	for _, mode := range []struct {
		name, egress string
		nobody       bool
	}{{"Egress=none", "none", false}, {"Egress=all", "all", false}, {"NotRoot/Egress=all", "all", true}} {
		t.Run(mode.name, func(t *testing.T) {
			o := usherproc.Options{Bin: usherBin, Dir: t.TempDir(), Addr: "0.0.0.0:0", Args: []string{"--instance-egress=" + mode.egress}}
			if mode.nobody {
				// pasta's eth0 gets the host's address too.
				dir, err := os.MkdirTemp("", "usher-e2e-nobody-")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
				os.Chmod(dir, 0o755)
				o.Dir, o.User = dir, &syscall.Credential{Uid: 65534, Gid: 65534}
			}
			p := usherproc.Start(t, o)
			s := &server{Server: p, t: t, dir: p.Dir, dataDir: p.DataDir, home: p.Home, logPath: p.LogPath, config: p.ConfigPath, http: p.HTTP}
			a := s.deploy(t, "prober-a", proberBin, "--allow-unauthenticated")
			b := s.deploy(t, "prober-b", proberBin, "--allow-unauthenticated")
			private := s.deploy(t, "private", helloBin)
			_, port, _ := net.SplitHostPort(s.currentAddr())
			closed, err := net.Listen("tcp4", "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			closed.Close() // a port nothing listens on
			_, closedPort, _ := net.SplitHostPort(closed.Addr().String())
			other, err := net.Listen("tcp4", "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			_, otherPort, _ := net.SplitHostPort(other.Addr().String())
			for _, ip := range hostIPs {
				at := net.JoinHostPort(ip, port)
				via := func(service string) string {
					return "/fetch?" + url.Values{"url": {"http://" + at + "/id"}, "host": {strings.TrimPrefix(service, "http://")}}.Encode()
				}
				for _, tc := range []struct {
					name, path string
					wantCode   int
				}{
					{"Gateway/" + ip, via(b), 200},
					{"GatewayChecksIAM/" + ip, via(private), 401},
					{"OtherHostService/" + ip, "/dial?addr=" + net.JoinHostPort(ip, otherPort), 502},
					{"NothingListening/" + ip, "/dial?addr=" + net.JoinHostPort(ip, closedPort), 502},
				} {
					t.Run(tc.name, func(t *testing.T) {
						if got := s.get(t, a+tc.path); got.status != tc.wantCode || strings.Contains(got.body, "connected") {
							t.Errorf("GET %s from inside: %d %q, want %d", tc.path, got.status, got.body, tc.wantCode)
						}
					})
				}
			}
		})
	}
}
