package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/pebble"
	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// Automatic certificates end to end against Pebble, Let's Encrypt's test CA
// (built from the module cache; its DNS from pebble-challtestsrv points
// every name at 127.0.0.1): the API host and a service host get certificates
// on their first handshake, through HTTP-01 on --http-addr or TLS-ALPN-01;
// a name that is not Usher's gets none, and the CA is never asked for it.
func TestACMEWithPebble(t *testing.T) {
	usherPort, httpPort := freePort(t), freePort(t)
	ca := pebble.Start(t, atoi(t, httpPort), atoi(t, usherPort))
	t.Setenv("SSL_CERT_FILE", ca.MinicaFile) // usher serve trusts Pebble's ACME endpoint
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), Addr: "127.0.0.1:" + usherPort, CAFile: ca.RootFile,
		Args: []string{"--acme-email", "ops@example.com", "--acme-ca", ca.Directory, "--http-addr", "127.0.0.1:" + httpPort}})
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

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
