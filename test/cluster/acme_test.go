package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/pebble"
)

// TestACMESharedByNodes: two nodes on one etcd share automatic certificates
// (against Pebble, Let's Encrypt's test CA). A certificate one node
// obtained is the one the other serves, and a node whose name must be
// validated on another node's address (as behind a load balancer) gets its
// certificate: that node answers the challenge from the shared store.
func TestACMESharedByNodes(t *testing.T) {
	e := startEtcd(t)
	portA, httpA := freePort(t), freePort(t)
	ca := pebble.Start(t, atoi(httpA), atoi(portA)) // validates on node a only
	// Usher trusts Pebble's ACME endpoint; the CLI trusts what Pebble issues.
	bundle := filepath.Join(t.TempDir(), "trust.pem")
	var pems []byte
	for _, f := range []string{ca.MinicaFile, ca.RootFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	if err := os.WriteFile(bundle, pems, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", bundle)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pems)

	url := storeURL(e)
	acme := []string{"--acme-email", "ops@example.com", "--acme-ca", ca.Directory}
	a := startNode(t, "a", url, append(acme, "--addr", "127.0.0.1:"+portA, "--http-addr", "127.0.0.1:"+httpA)...)
	b := startNode(t, "b", url, append(acme, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:"+freePort(t))...)

	// serial is the certificate a node serves for name, once it has one.
	serial := func(n *node, name string) string {
		t.Helper()
		var got string
		poll(t, 90*time.Second, "a certificate for "+name+" from node "+n.name, func() (bool, string) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second}, Config: &tls.Config{ServerName: name, RootCAs: roots}}
			c, err := d.Dial("tcp", n.addr)
			if err != nil {
				return false, err.Error()
			}
			defer c.Close()
			got = c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
			return true, ""
		})
		return got
	}

	// The API host: node a obtains its certificate (the CLI's first call
	// needs it), node b serves the same one.
	a.mustCLI(t, "run", "deploy", "shared", "--image", "file://"+helloBin, "--region="+region, "--allow-unauthenticated")
	if sa, sb := serial(a, "localhost"), serial(b, "localhost"); sa != sb {
		t.Errorf("API host: node a serves certificate %s, node b %s; want one shared certificate", sa, sb)
	}

	// A service host, first asked of node b: the CA validates it on node
	// a's address, which answers b's challenge from the store.
	host := strings.Split(strings.TrimPrefix(a.serviceURL(t, "shared"), "https://"), ":")[0]
	sb := serial(b, host)
	if sa := serial(a, host); sa != sb {
		t.Errorf("service host: node b obtained certificate %s, node a serves %s; want one shared certificate", sb, sa)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
