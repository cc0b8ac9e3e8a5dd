// Package pebble runs Pebble, Let's Encrypt's test CA, and its
// pebble-challtestsrv DNS (every name is 127.0.0.1) for tests of automatic
// certificates: both are built from the module cache (pinned in go.mod as
// tools), never mocked.
package pebble

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// CA is a running Pebble.
type CA struct {
	// Directory is the ACME directory URL (usher serve --acme-ca).
	Directory string
	// RootFile holds the root that signs the certificates Pebble issues.
	RootFile string
	// MinicaFile holds the CA of Pebble's own HTTPS endpoint: point
	// SSL_CERT_FILE of the ACME client at it.
	MinicaFile string
}

// Start runs Pebble for the test's lifetime. It validates HTTP-01
// challenges on 127.0.0.1:httpPort and TLS-ALPN-01 on 127.0.0.1:tlsPort.
func Start(t *testing.T, httpPort, tlsPort int) *CA {
	t.Helper()
	bins, err := usherproc.Build(t.TempDir(), "github.com/letsencrypt/pebble/v2/cmd/pebble", "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv")
	if err != nil {
		t.Fatal(err)
	}
	pebbleDir := goList(t, "github.com/letsencrypt/pebble/v2")
	ca := &CA{MinicaFile: filepath.Join(pebbleDir, "test/certs/pebble.minica.pem")}

	dnsPort, acmePort, mgmtPort := FreePort(t), FreePort(t), FreePort(t)
	startProcess(t, bins[1], nil, "-dnsserver", "127.0.0.1:"+dnsPort, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", "127.0.0.1:"+FreePort(t), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + acmePort,
		"managementListenAddress":        "127.0.0.1:" + mgmtPort,
		"certificate":                    filepath.Join(pebbleDir, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(pebbleDir, "test/certs/localhost/key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	confPath := filepath.Join(t.TempDir(), "pebble.json")
	b, _ := json.Marshal(conf)
	if err := os.WriteFile(confPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, bins[0], []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", confPath, "-dnsserver", "127.0.0.1:"+dnsPort)
	ca.Directory = "https://127.0.0.1:" + acmePort + "/dir"

	// The root that signs issued certificates comes from the management
	// API once Pebble is up.
	pemCA, err := os.ReadFile(ca.MinicaFile)
	if err != nil {
		t.Fatal(err)
	}
	minicaPool := x509.NewCertPool()
	minicaPool.AppendCertsFromPEM(pemCA)
	mgmt := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: minicaPool}}}
	var root []byte
	usherproc.Poll(t, 30*time.Second, "Pebble's root certificate", func() (bool, string) {
		resp, err := mgmt.Get("https://127.0.0.1:" + mgmtPort + "/roots/0")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		root, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200, resp.Status
	})
	ca.RootFile = filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(ca.RootFile, root, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// FreePort returns a loopback TCP port free at the moment.
func FreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// startProcess runs a helper process for the test's lifetime, its output in
// a file that is printed if the test fails.
func startProcess(t *testing.T, name string, env []string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", filepath.Base(name), b)
		}
	})
}

func goList(t *testing.T, module string) string {
	t.Helper()
	root, err := usherproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}
