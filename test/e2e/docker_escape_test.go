package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime/docker/dockertest"
	"github.com/usher-run/usher/internal/testsupport/remotehost"
)

// TestDockerEscapes is TestSandboxEscapes for containers: a hostile
// container (runtimetest's prober, FROM scratch) deployed through Usher
// cannot read Usher's data dir, reach another service's container or the
// host's loopback services, has no published port and no capability to
// act as root on the host, and reaches other hosts through Docker's NAT
// (a network namespace the test makes, routed through the host, sees the
// host's address). Service-to-service calls through the gateway with a
// metadata-server token are TestDockerServiceToService's.
func TestDockerEscapes(t *testing.T) {
	ctx := context.Background()
	c := dockertest.Engine(t, "isolation of containers")
	ref := "usher-e2e/prober:" + hex8()
	if err := dockertest.BuildScratchImage(ctx, c, "github.com/usher-run/usher/internal/runtime/runtimetest/testapp", ref); err != nil {
		t.Fatal(err)
	}
	defer c.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	for _, egress := range []string{"none", "all"} {
		t.Run("Egress="+egress, func(t *testing.T) { testDockerEscapes(t, c, ref, egress) })
	}
}

func testDockerEscapes(t *testing.T, c *client.Client, ref, egress string) {
	ctx := context.Background()
	s := startServerWith(t, "--instance-egress="+egress)
	deployContainer := func(name string) string {
		t.Helper()
		s.mustCLI(t, "run", "deploy", name, "--image="+ref, "--region="+region, "--allow-unauthenticated")
		return s.describe(t, name).Status.URL
	}
	a, b := deployContainer("prober-a"), deployContainer("prober-b")

	// No port of the container is published on the host.
	list, err := c.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", "usher.dev/service=prober-a")})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("containers of prober-a: %v, %v", list, err)
	}
	for _, p := range list.Items[0].Ports {
		if p.PublicPort != 0 {
			t.Errorf("container port %d published on the host at %s:%d", p.PrivatePort, p.IP, p.PublicPort)
		}
	}
	hostSvc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostSvc.Close()
	remote := remotehost.Start(t)

	probes := []struct {
		name, path string
		wantCode   int
		want       string // contained in the body
	}{
		{"DataDirConfig", "/read?path=" + filepath.Join(s.dataDir, "config.json"), 403, ""},
		{"DataDirStore", "/read?path=" + filepath.Join(s.dataDir, "usher.db"), 403, ""},
		{"UserConfig", "/read?path=" + filepath.Join(s.home, ".config", "usher", "config.json"), 403, ""},
		{"HostLoopbackService", "/dial?addr=" + hostSvc.Addr().String(), 502, ""},
	}
	if egress == "all" {
		probes = append(probes, struct {
			name, path string
			wantCode   int
			want       string
		}{"Egress", "/fetch?url=http://" + remote.Addr + "/", 200, remote.Local.String()})
	} else {
		probes = append(probes, struct {
			name, path string
			wantCode   int
			want       string
		}{"NoEgress", "/dial?addr=" + remote.Addr, 502, ""})
	}
	var aEnv struct{ Env map[string]string }
	json.Unmarshal([]byte(s.get(t, a+"/env").body), &aEnv)
	if md := aEnv.Env["GCE_METADATA_HOST"]; md != "" {
		// The host, where the metadata server listens, stays reachable.
		probes = append(probes, struct {
			name, path string
			wantCode   int
			want       string
		}{"MetadataServer", "/fetch?url=" + url.QueryEscape("http://"+md+"/computeMetadata/v1/instance/service-accounts/default/email"), 200, "-compute@developer.gserviceaccount.com"})
	}
	for _, ip := range strings.Fields(s.get(t, b+"/addrs").body) {
		probes = append(probes, struct {
			name, path string
			wantCode   int
			want       string
		}{"OtherContainer/" + ip, "/dial?addr=" + net.JoinHostPort(ip, "8080"), 502, ""})
	}
	if egress == "all" {
		testCrossRuntime(t, s, a, b)
	}
	for _, tc := range probes {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := s.get(t, a+tc.path)
			if got.status != tc.wantCode || !strings.Contains(got.body, tc.want) || strings.Contains(got.body, "connected") {
				t.Errorf("GET %s from inside: %d %q, want %d containing %q", tc.path, got.status, got.body, tc.wantCode, tc.want)
			}
		})
	}
	// Root in the image (as on Cloud Run) is not root on the host: no
	// CAP_SYS_ADMIN (mounts, namespaces), no CAP_NET_RAW (forged sources).
	t.Run("NotHostRoot", func(t *testing.T) {
		status := s.get(t, a+"/read?path=/proc/self/status").body
		var capEff uint64
		for _, line := range strings.Split(status, "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				capEff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		const capNetRaw, capSysAdmin = 13, 21
		if capEff&(1<<capSysAdmin) != 0 || capEff&(1<<capNetRaw) != 0 {
			t.Errorf("container's effective capabilities %x include CAP_SYS_ADMIN or CAP_NET_RAW", capEff)
		}
	})
}

// testCrossRuntime: a sandboxed process instance (egress on) and a
// container (a, b) cannot reach each other either.
func testCrossRuntime(t *testing.T, s *server, a, b string) {
	proc := s.deploy(t, "prober-proc", proberBin, "--allow-unauthenticated")
	var procEnv struct{ Env map[string]string }
	json.Unmarshal([]byte(s.get(t, proc+"/env").body), &procEnv)
	type crossProbe struct{ name, from, path string }
	var cross []crossProbe
	for _, ip := range strings.Fields(s.get(t, proc+"/addrs").body) {
		cross = append(cross, crossProbe{"ContainerToProcess/" + ip, a, "/dial?addr=" + net.JoinHostPort(ip, procEnv.Env["PORT"])})
	}
	for _, ip := range strings.Fields(s.get(t, b+"/addrs").body) {
		cross = append(cross, crossProbe{"ProcessToContainer/" + ip, proc, "/dial?addr=" + net.JoinHostPort(ip, "8080")})
	}
	if len(cross) < 2 {
		t.Fatalf("addresses of the process instance and the container: %v", cross)
	}
	for _, tc := range cross {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := s.get(t, tc.from+tc.path); got.status != 502 {
				t.Errorf("GET %s: %d %q, want 502", tc.path, got.status, got.body)
			}
		})
	}
}
