package process

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
	"github.com/usher-run/usher/internal/testsupport/remotehost"
)

// sandboxRuntime returns a sandboxed runtime, or skips where the machine
// cannot sandbox (not root).
func sandboxRuntime(t *testing.T, sb Sandbox) *Runtime {
	t.Helper()
	rt := New(Config{Sandbox: &sb})
	if ok, err := rt.Sandboxed(); !ok {
		t.Skipf("no sandbox here: %v", err)
	}
	return rt
}

func TestSandboxConformance(t *testing.T) {
	app := buildTestApp(t)
	rt := sandboxRuntime(t, Sandbox{ReachEnv: []string{"GCE_METADATA_HOST", "TESTAPP_BEACON"}})
	runtimetest.Run(t, rt, func(t *testing.T, name string) string { return "file://" + app })
}

// TestSandboxDiesWithUsher: a SIGKILLed Usher takes its sandboxed instances
// along, although their init changed credentials (which clears Pdeathsig).
func TestSandboxDiesWithUsher(t *testing.T) {
	sandboxRuntime(t, Sandbox{})
	app := buildTestApp(t)
	b := runtimetest.NewBeacon(t)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(),
		helperEnv+"=1",
		"HELPER_SANDBOX=1",
		"HELPER_IMAGE=file://"+app,
		"HELPER_BEACON="+b.Env().Value,
	)
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "started") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	b.WaitHellos(t, 1)
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	b.WaitGone(t)
}

// TestSandboxEscapes plays a hostile instance: everything it must not reach
// is refused, what it needs still works; with egress off (loopback only) and
// on (a veth pair with NAT, reaching a "remote" machine: a network namespace
// of the test's own, routed through the host).
func TestSandboxEscapes(t *testing.T) {
	app := buildTestApp(t)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "usher.db")
	if err := os.WriteFile(secret, []byte("signing keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(secretDir, 0o755)
	// A file outside /tmp, hidden by path (like ~/.config/usher/config.json).
	f, err := os.CreateTemp("/var/tmp", "usher-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	homeSecret := f.Name()
	f.WriteString("credential")
	f.Close()
	os.Chmod(homeSecret, 0o644)
	t.Cleanup(func() { os.Remove(homeSecret) })

	// The gateway stand-in: reachable from inside at its own address.
	gw := httptestServer(t, "gateway says hi")
	// A host loopback service nobody relays.
	other := httptestServer(t, "private")
	// A service of the host on all its addresses.
	public := httptestServerOn(t, "0.0.0.0:0", "the host itself")
	_, publicPort, _ := net.SplitHostPort(public)

	for _, mode := range []string{"EgressNone", "EgressInternet", "EgressAll"} {
		egress, private := mode != "EgressNone", mode == "EgressAll"
		t.Run(mode, func(t *testing.T) {
			rt := sandboxRuntime(t, Sandbox{Hide: []string{secretDir, homeSecret}, Reach: []string{gw}, Egress: egress, EgressPrivate: private})
			t.Cleanup(func() { rt.Close() })
			var remote *remotehost.Host
			if egress {
				remote = remotehost.Start(t)
			}
			image := "file://" + app
			start := func() runtime.Instance {
				in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: image, Revision: "r1"})
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				t.Cleanup(func() { in.Stop(context.Background()) })
				return in
			}
			a, b := start(), start()

			t.Run("ImageAtItsPath", func(t *testing.T) {
				// gcloud's --command=/usr/bin/env --args=…,IMAGE names the image
				// by its host path, which is under the hidden /tmp.
				in, err := rt.Start(context.Background(), runtime.InstanceSpec{Image: image, Command: []string{"/usr/bin/env"}, Args: []string{"X=1", app}})
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				in.Stop(context.Background())
			})

			t.Run("PortClosedOnHost", func(t *testing.T) {
				_, port, _ := net.SplitHostPort(a.Addr())
				for _, addr := range []string{a.Addr(), "127.0.0.1:" + port} {
					if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
						c.Close()
						t.Errorf("dial %s from the host: connected, want refused", addr)
					}
				}
			})
			_, bport, _ := net.SplitHostPort(b.Addr())
			type probe struct {
				name, path string
				wantCode   int
				want       string // "" any body, "-" an empty one
			}
			probes := []probe{
				{"NotRoot", "/id", 200, "65534 65534\n"},
				{"DataDirHidden", "/read?path=" + secret, 403, ""},
				{"ConfigHidden", "/read?path=" + homeSecret, 200, "-"}, // /dev/null over it
				{"RootReadOnly", "/read?path=/etc/hostname", 200, ""},
				{"OtherInstance", "/dial?addr=127.0.0.1:" + bport, 502, ""},
				{"OtherInstanceByAddr", "/dial?addr=" + b.Addr(), 502, ""},
				{"HostLoopbackService", "/dial?addr=" + other, 502, ""},
				{"Gateway", "/fetch?url=http://" + gw + "/", 200, "gateway says hi"},
			}
			// The host on its other addresses (only with egress is there
			// a route to them).
			for i, ip := range hostAddrs(t) {
				probes = append(probes, probe{fmt.Sprintf("HostAddress%d", i), "/dial?addr=" + net.JoinHostPort(ip, publicPort), 502, ""})
			}
			if !egress {
				probes = append(probes, probe{"NoEgress", "/dial?addr=10.255.255.1:80", 502, ""})
			} else {
				// Through the host with NAT: the remote machine, at an
				// internet address, sees the host's address, not the
				// instance's.
				internet := remote.Alias(t, netip.MustParseAddr("203.0.113.77"))
				probes = append(probes, probe{"EgressWithNAT", "/fetch?url=http://" + internet + "/", 200, remote.Local.String()})
				// The same machine at its private address (a LAN
				// neighbour): only with EgressPrivate.
				if private {
					probes = append(probes, probe{"PrivateNetwork", "/fetch?url=http://" + remote.Addr + "/", 200, remote.Local.String()})
				} else {
					probes = append(probes, probe{"PrivateNetworkBlocked", "/dial?addr=" + remote.Addr, 502, ""})
				}
				// A cloud's metadata server (here the remote host, should
				// the rule fail) hands out the machine's credentials.
				metadataIP := remote.Alias(t, netip.MustParseAddr("169.254.169.254"))
				if c, err := net.DialTimeout("tcp", metadataIP, 5*time.Second); err != nil {
					t.Fatalf("the host cannot reach the stand-in at %s either: %v", metadataIP, err)
				} else {
					c.Close()
				}
				probes = append(probes, probe{"CloudMetadataServer", "/dial?addr=" + metadataIP, 502, ""})
				for i, ip := range instanceAddrs(t, b) {
					probes = append(probes, probe{fmt.Sprintf("OtherInstanceVeth%d", i), "/dial?addr=" + net.JoinHostPort(ip, bport), 502, ""})
				}
				// The host's end of a's own veth (its gateway) is the host.
				for i, ip := range instanceAddrs(t, a) {
					gwIP := netip.MustParseAddr(ip).Prev()
					probes = append(probes, probe{fmt.Sprintf("OwnGateway%d", i), "/dial?addr=" + net.JoinHostPort(gwIP.String(), publicPort), 502, ""})
				}
			}
			for _, tc := range probes {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel() // refused dials to dropped packets take seconds
					code, body, err := runtimetest.Get(a, tc.path)
					if err != nil {
						t.Fatal(err)
					}
					bodyOK := tc.want == "" || body == tc.want || (tc.want == "-" && body == "")
					if code != tc.wantCode || !bodyOK || strings.Contains(body, "credential") || strings.Contains(body, "signing keys") || strings.Contains(body, "the host itself") {
						t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.want)
					}
				})
			}
		})
	}
}

// hostAddrs lists the host's IPv4 addresses but loopback.
func hostAddrs(t *testing.T) []string {
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

// instanceAddrs asks the instance for its own addresses but loopback.
func instanceAddrs(t *testing.T, in runtime.Instance) []string {
	t.Helper()
	code, body, err := runtimetest.Get(in, "/addrs")
	if err != nil || code != 200 {
		t.Fatalf("GET /addrs: %d %q %v", code, body, err)
	}
	addrs := strings.Fields(body)
	if len(addrs) == 0 {
		t.Fatal("instance with egress has no address but loopback")
	}
	return addrs
}

// httptestServer serves body on a loopback port and returns its address.
func httptestServer(t *testing.T, body string) string {
	t.Helper()
	return httptestServerOn(t, "127.0.0.1:0", body)
}

// httptestServerOn serves body on addr and returns its address.
func httptestServerOn(t *testing.T, addr, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestEgressRulesPutBack: rules someone removed from the host's firewall
// (a firewall reload, `nft flush ruleset`) are put back, or instances would
// reach the host and the LAN.
func TestEgressRulesPutBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("egress rules need root")
	}
	rt := sandboxRuntime(t, Sandbox{Egress: true})
	t.Cleanup(func() { rt.Close() })
	if ok, err := rt.Egress(); !ok {
		t.Skipf("no egress here: %v", err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: egressTag()})
	if err := c.Flush(); err != nil {
		t.Fatalf("removing the table: %v", err)
	}
	deadline := time.Now().Add(5 * egressCheckInterval)
	for {
		if _, err := c.ListTableOfFamily(egressTag(), nftables.TableFamilyINet); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %s not put back within %v", egressTag(), 5*egressCheckInterval)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
