package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSandboxEscapes deploys a hostile public service and tries, from
// inside its instance, everything the sandbox must refuse; what a service
// needs (the gateway, the metadata server) must keep working. Usher runs as
// root here (as in CI); elsewhere file:// instances are refused unless
// --unsandboxed-processes, so the test is skipped.
func TestSandboxEscapes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the process sandbox needs root")
	}
	s := startServer(t)
	a := s.deploy(t, "prober-a", proberBin, "--allow-unauthenticated")
	b := s.deploy(t, "prober-b", proberBin, "--allow-unauthenticated")
	port := func(url string) string {
		var env struct{ Env map[string]string }
		if err := json.Unmarshal([]byte(s.get(t, url+"/env").body), &env); err != nil {
			t.Fatal(err)
		}
		return env.Env["PORT"]
	}
	private := s.deploy(t, "private", helloBin)
	aPort, bPort := port(a), port(b)

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
	home, _ := os.UserHomeDir()
	metadataHost := s.get(t, a+"/env").body
	var env struct{ Env map[string]string }
	json.Unmarshal([]byte(metadataHost), &env)
	md := env.Env["GCE_METADATA_HOST"]

	for _, tc := range []struct {
		name, path string
		wantCode   int
		wantPrefix string // contained in the body
	}{
		{"NotRoot", "/id", 200, "65534 65534"},
		{"DataDirConfig", "/read?path=" + filepath.Join(s.dataDir, "config.json"), 403, ""},
		{"DataDirStore", "/read?path=" + filepath.Join(s.dataDir, "usher.db"), 403, ""},
		{"UserConfig", "/read?path=" + filepath.Join(home, ".config", "usher", "config.json"), 403, ""},
		{"OtherInstance", "/dial?addr=127.0.0.1:" + bPort, 502, ""},
		{"HostLoopbackService", "/dial?addr=" + hostSvc.Addr().String(), 502, ""},
		{"NoEgress", "/dial?addr=10.255.255.1:80", 502, ""},
		{"MetadataServer", "/fetch?url=http://" + md + "/computeMetadata/v1/instance/service-accounts/default/email", 200, "-compute@developer.gserviceaccount.com"},
		// At Usher's own address (no DNS inside), the service's host.
		{"GatewayToAnotherService", "/fetch?url=http://" + s.currentAddr() + "/id&host=" + strings.TrimPrefix(b, "http://"), 200, "65534"},
		{"GatewayChecksIAM", "/fetch?url=http://" + s.currentAddr() + "/id&host=" + strings.TrimPrefix(private, "http://"), 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.get(t, a+tc.path)
			if got.status != tc.wantCode || !strings.Contains(got.body, tc.wantPrefix) {
				t.Errorf("GET %s from inside: %d %q, want %d containing %q", tc.path, got.status, got.body, tc.wantCode, tc.wantPrefix)
			}
		})
	}
}
