package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// selfSigned writes a self-signed certificate for the API host and every
// service host of region us-central1, and returns the cert and key files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "usher test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		DNSNames:              []string{"localhost", "*." + region + ".run.localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// With --tls-cert/--tls-key the one listener speaks HTTPS, HTTP/2 by ALPN,
// and every URL Usher renders (config, issuer, service URLs) is https://;
// invoker IAM works the same over it. --http-addr redirects to HTTPS.
func TestHTTPS(t *testing.T) {
	cert, key := selfSigned(t)
	httpAddr := "127.0.0.1:" + freePort(t)
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), CAFile: cert,
		Args: []string{"--tls-cert", cert, "--tls-key", key, "--http-addr", httpAddr}})
	s := &server{Server: p, t: t, dir: p.Dir, dataDir: p.DataDir, home: p.Home, logPath: p.LogPath, config: p.ConfigPath, http: p.HTTP}
	port := s.port(t)

	if got, want := s.serverURL(t), "https://localhost:"+port; got != want {
		t.Errorf("config.json server: got %s, want %s", got, want)
	}
	u := s.deploy(t, "secure", echoBin)
	if want := "https://"; !strings.HasPrefix(u, want) || !strings.HasSuffix(u, ":"+port) {
		t.Errorf("status.url: got %s, want https://…:%s", u, port)
	}

	get := func(t *testing.T, headers ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", u+"/", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := s.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	t.Run("private by default, over HTTP/2", func(t *testing.T) {
		resp, _ := get(t)
		if resp.StatusCode != 401 || resp.ProtoMajor != 2 {
			t.Errorf("GET without a token: got %d over %s, want 401 over HTTP/2", resp.StatusCode, resp.Proto)
		}
	})
	t.Run("identity token for the https URL", func(t *testing.T) {
		tok := strings.TrimSpace(s.mustCLI(t, "auth", "print-identity-token", "--audiences", u).stdout)
		if iss := claims(t, tok)["iss"]; iss != "https://localhost:"+port {
			t.Errorf("iss: got %v, want https://localhost:%s", iss, port)
		}
		resp, body := get(t, "Authorization", bearer(tok))
		if resp.StatusCode != 200 || body != "echo\n" {
			t.Errorf("GET with a token: got %d %q, want 200 \"echo\\n\"", resp.StatusCode, body)
		}
	})
	t.Run("--http-addr redirects", func(t *testing.T) {
		c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/some/path?q=1", nil)
		req.Host = "secure-123.us-central1.run.localhost"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://secure-123.us-central1.run.localhost:" + port + "/some/path?q=1"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("plain HTTP: got %d Location %q, want 308 %s", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})
}
