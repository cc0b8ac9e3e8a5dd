package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

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

// Automatic certificates end to end against Pebble, Let's Encrypt's test CA
// (built from the module cache; its DNS from pebble-challtestsrv points
// every name at 127.0.0.1): the API host and a service host get certificates
// on their first handshake, through HTTP-01 on --http-addr or TLS-ALPN-01;
// a name that is not Usher's gets none, and the CA is never asked for it.
func TestACMEWithPebble(t *testing.T) {
	binDir := t.TempDir()
	bins, err := usherproc.Build(binDir, "github.com/letsencrypt/pebble/v2/cmd/pebble", "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv")
	if err != nil {
		t.Fatal(err)
	}
	pebbleDir := strings.TrimSpace(goList(t, "github.com/letsencrypt/pebble/v2"))
	minica := filepath.Join(pebbleDir, "test/certs/pebble.minica.pem")

	dnsPort, acmePort, mgmtPort := freePort(t), freePort(t), freePort(t)
	usherPort, httpPort := freePort(t), freePort(t)
	startProcess(t, bins[1], nil, "-dnsserver", "127.0.0.1:"+dnsPort, "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", "127.0.0.1:"+freePort(t), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + acmePort,
		"managementListenAddress":        "127.0.0.1:" + mgmtPort,
		"certificate":                    filepath.Join(pebbleDir, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(pebbleDir, "test/certs/localhost/key.pem"),
		"httpPort":                       atoi(t, httpPort),
		"tlsPort":                        atoi(t, usherPort),
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

	// Pebble's root, which signs the certificates it issues, comes from its
	// management API once it is up.
	pemCA, err := os.ReadFile(minica)
	if err != nil {
		t.Fatal(err)
	}
	minicaPool := x509.NewCertPool()
	minicaPool.AppendCertsFromPEM(pemCA)
	mgmt := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: minicaPool}}}
	var root []byte
	poll(t, 30*time.Second, "Pebble's root certificate", func() (bool, string) {
		resp, err := mgmt.Get("https://127.0.0.1:" + mgmtPort + "/roots/0")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		root, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200, resp.Status
	})
	rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(rootFile, root, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SSL_CERT_FILE", minica) // usher serve trusts Pebble's ACME endpoint
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), Addr: "127.0.0.1:" + usherPort, CAFile: rootFile,
		Args: []string{"--acme-email", "ops@example.com", "--acme-ca", "https://127.0.0.1:" + acmePort + "/dir", "--http-addr", "127.0.0.1:" + httpPort}})
	s := &server{Server: p, t: t, dir: p.Dir, dataDir: p.DataDir, home: p.Home, logPath: p.LogPath, config: p.ConfigPath, http: p.HTTP}
	// Start's /healthz over HTTPS already needed the API host's certificate.

	u := s.deploy(t, "acme-public", echoBin, "--allow-unauthenticated")
	t.Run("service host gets a certificate from the CA", func(t *testing.T) {
		resp, err := s.HTTP.Get(u + "/")
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: got %d, want 200", u, resp.StatusCode)
		}
		leaf := resp.TLS.PeerCertificates[0]
		host := strings.Split(strings.TrimPrefix(u, "https://"), ":")[0]
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("certificate for %s: %v", host, err)
		}
		if !strings.Contains(leaf.Issuer.String(), "Pebble") {
			t.Errorf("certificate issuer: got %s, want Pebble", leaf.Issuer)
		}
	})
	t.Run("a name that is not Usher's gets no certificate", func(t *testing.T) {
		for _, name := range []string{"evil.example.com", "nosuch-1.us-central1.run.localhost"} {
			d := &net.Dialer{Timeout: 30 * time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			c, err := (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}}).DialContext(ctx, "tcp", s.Addr())
			cancel()
			if err == nil {
				c.Close()
				t.Errorf("TLS handshake for %s: got a certificate, want none", name)
			}
		}
		if strings.Contains(s.Log(), "evil.example.com") && strings.Contains(s.Log(), "obtain") {
			t.Errorf("usher asked the CA about evil.example.com")
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
	return string(out)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
