package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime/docker"
	"github.com/usher-run/usher/internal/runtime/docker/dockertest"
)

// TestDockerServiceToService is TestServiceToService with the frontend as a
// container: a FROM scratch image of testdata/frontend (Google's idtoken
// library, unchanged) gets an identity token for the backend from the
// metadata server Usher gives its revision on the Docker network's gateway,
// as its service account, and the backend's IAM decides: 403 without a
// binding, 200 with roles/run.invoker. Another service's container gets
// tokens for its own account only.
//
// Usher listens on 127.0.0.1 here, which containers cannot reach, so the
// frontend's USHER_ADDR is a byte-for-byte TCP relay the test runs on the
// gateway address to Usher's listener; the relay also reads the requests
// passing through, so the test sees the very token the container sent.
func TestDockerServiceToService(t *testing.T) {
	ctx := context.Background()
	c := dockertest.Engine(t, "the metadata server for containers end to end")
	probe, err := docker.New(ctx, docker.Config{Owner: "usher-e2e-probe-" + hex8()})
	if err != nil {
		t.Fatal(err)
	}
	direct, gw := probe.DirectAddressing(), probe.HostGateway()
	probe.Close()
	if !direct || gw == "" {
		t.Skipf("*** this engine's containers are not addressed by IP (Docker Desktop, rootless, remote): containers get no metadata server, NOT TESTED ***")
	}

	ref := "usher-e2e/frontend:" + hex8()
	if err := dockertest.BuildScratchImage(ctx, c, "github.com/usher-run/usher/test/e2e/testdata/frontend", ref); err != nil {
		t.Fatal(err)
	}
	defer c.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})

	s := startServer(t)
	relay := startRelay(t, gw, s.currentAddr)
	backend := s.deploy(t, "backend", helloBin)
	deployContainer := func(name, sa string) string {
		t.Helper()
		s.mustCLI(t, "run", "deploy", name, "--image="+ref, "--region="+region, "--allow-unauthenticated",
			"--service-account="+sa, "--set-env-vars=BACKEND_URL="+backend+",USHER_ADDR="+relay.addr())
		return s.describe(t, name).Status.URL
	}
	// sentToken checks the token of the request the relay passed on as its
	// nth: for account email, valid for the backend, from Usher's issuer.
	sentToken := func(n int, email string) {
		t.Helper()
		auth := relay.authorization(t, n)
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			t.Fatalf("the frontend sent Authorization %q, want a bearer token", auth)
		}
		cl := claims(t, tok)
		if cl["email"] != email || cl["aud"] != backend || cl["iss"] != s.serverURL(t) {
			t.Errorf("token claims: email %v, aud %v, iss %v; want %s, %s, %s", cl["email"], cl["aud"], cl["iss"], email, backend, s.serverURL(t))
		}
	}

	sa := s.createSA(t, "frontend-sa")
	front := deployContainer("frontend", sa)
	if n := containers(t, c, "frontend"); n != 1 {
		t.Fatalf("containers for the frontend = %d, want 1 (is it a container?)", n)
	}
	host := s.get(t, front+"/metadata-host").body
	if !strings.HasPrefix(host, gw+":") {
		t.Fatalf("GCE_METADATA_HOST = %q, want %s:PORT", host, gw)
	}

	if got := s.get(t, front+"/call"); got.status != 200 || !strings.HasPrefix(got.body, "403 ") {
		t.Fatalf("frontend calling a backend it may not invoke: %d %q, want 200 \"403 …\"", got.status, got.body)
	}
	sentToken(1, sa)
	s.grant(t, "backend", "serviceAccount:"+sa, "roles/run.invoker")
	if got := s.get(t, front+"/call"); got.status != 200 || got.body != "200 Hello World!" {
		t.Fatalf("frontend calling its backend: %d %q, want 200 \"200 Hello World!\"", got.status, got.body)
	}
	sentToken(2, sa)

	// The metadata server refuses the container's request without
	// Metadata-Flavor: Google, and any caller that is not one of the
	// revision's containers: here the host (the test process).
	if got := s.get(t, front+"/metadata-without-flavor"); got.body != "403" {
		t.Errorf("container asking without Metadata-Flavor: %q, want 403", got.body)
	}
	req, _ := http.NewRequest("GET", "http://"+host+"/computeMetadata/v1/instance/service-accounts/default/email", nil)
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("the host asking the containers' metadata server: %d, want 403", resp.StatusCode)
	}

	// Another service's container, same image, its own account: the node's
	// one metadata listener for containers answers it as its own account,
	// whose tokens the backend refuses.
	other := s.createSA(t, "other-sa")
	intruder := deployContainer("intruder", other)
	if h := s.get(t, intruder+"/metadata-host").body; h != host {
		t.Errorf("intruder's GCE_METADATA_HOST = %q; want the node's one listener for containers, %q", h, host)
	}
	if got := s.get(t, intruder+"/call"); got.status != 200 || !strings.HasPrefix(got.body, "403 ") {
		t.Errorf("intruder calling the backend: %d %q, want 200 \"403 …\"", got.status, got.body)
	}
	sentToken(3, other)
}

func hex8() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// relay copies TCP connections to target unchanged, and remembers the
// Authorization header of every HTTP request it passes on.
type relay struct {
	ln   net.Listener
	mu   sync.Mutex
	auth []string
}

func startRelay(t *testing.T, ip string, target func() string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("relay on %s: %v", ip, err)
	}
	r := &relay{ln: ln}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target())
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, true)
			conns.Store(up, true)
			wg.Add(2)
			go func() { // upstream → client
				defer wg.Done()
				io.Copy(c, up)
				c.Close()
			}()
			go func() { // client → upstream, read on the way
				defer wg.Done()
				pr, pw := io.Pipe()
				go r.watch(pr)
				io.Copy(up, io.TeeReader(c, pw))
				pw.Close()
				up.Close()
			}()
		}
	}()
	return r
}

// watch reads the requests of one connection.
func (r *relay) watch(pr *io.PipeReader) {
	defer io.Copy(io.Discard, pr) // never block the relay
	br := bufio.NewReader(pr)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// authorization is the Authorization header of the nth request (from 1) the
// relay passed on; it fails the test if there are more or, after a moment,
// fewer.
func (r *relay) authorization(t *testing.T, n int) string {
	t.Helper()
	var auth []string
	poll(t, 5*time.Second, "the relay to see the request", func() (bool, string) {
		r.mu.Lock()
		auth = append([]string(nil), r.auth...)
		r.mu.Unlock()
		return len(auth) >= n, strings.Join(auth, ", ")
	})
	if len(auth) != n {
		t.Fatalf("the relay passed on %d requests, want %d", len(auth), n)
	}
	return auth[n-1]
}
