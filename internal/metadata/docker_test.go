package metadata_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/metadata"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/docker"
	"github.com/usher-run/usher/internal/runtime/docker/dockertest"
)

func TestDockerInstancesIdentify(t *testing.T) {
	gw := netip.MustParseAddrPort("172.17.0.1:41000")
	keys := map[netip.Addr]string{
		netip.MustParseAddr("172.17.0.2"): "p/r/frontend-00001-abc",
		netip.MustParseAddr("172.17.0.3"): "p/r/frontend-00002-def",
	}
	lookup := func(ip netip.Addr) (string, bool) {
		key, ok := keys[ip]
		return key, ok
	}
	identify := metadata.DockerInstances(lookup)
	for _, tc := range []struct {
		remote string
		key    string // "": refused
	}{
		{"172.17.0.2:50000", "p/r/frontend-00001-abc"},
		{"[::ffff:172.17.0.2]:50000", "p/r/frontend-00001-abc"},
		{"172.17.0.3:50000", "p/r/frontend-00002-def"},
		{"172.17.0.4:50000", ""},  // no instance
		{"172.17.0.1:50000", ""},  // the host
		{"127.0.0.1:50000", ""},   // the host
		{"192.0.2.10:50000", ""},  // elsewhere
		{"[fd00::2]:50000", ""},   // elsewhere
		{"0.0.0.0:50000", ""},     // nonsense
		{"172.17.0.22:50000", ""}, // no instance
	} {
		key, err := identify(gw, netip.MustParseAddrPort(tc.remote))
		if key != tc.key || (err == nil) != (tc.key != "") {
			t.Errorf("identify(%s) = %q, %v; want %q", tc.remote, key, err, tc.key)
		}
	}
	if key, err := metadata.DockerInstances(nil)(gw, netip.MustParseAddrPort("172.17.0.2:1")); err == nil {
		t.Errorf("DockerInstances with no lookup identified a peer as %q", key)
	}
}

// TestListenHost: a network's listener binds Network.ListenHost when set,
// whatever Config.ListenHost says.
func TestListenHost(t *testing.T) {
	f := newFixture(t)
	md := metadata.New(metadata.Config{Minter: f.iss, ListenHost: "not-an-ip"})
	defer md.Close()
	id := frontend()
	allow := func(local, remote netip.AddrPort) (string, error) { return id.Key, nil }
	if _, err := md.Register(&metadata.Network{Identify: allow}, id); err == nil {
		t.Fatal("Register on Config.ListenHost not-an-ip succeeded")
	}
	reg, err := md.Register(&metadata.Network{ListenHost: "127.0.0.1", Identify: allow}, id)
	if err != nil {
		t.Fatalf("Register with ListenHost: %v", err)
	}
	defer reg.Close()
	if !strings.HasPrefix(reg.Host(), "127.0.0.1:") {
		t.Fatalf("Host() = %q", reg.Host())
	}
	if r := get(t, reg.Host(), v1+"project/project-id", flavor); r.status != http.StatusOK || r.body != project {
		t.Fatalf("%d %q", r.status, r.body)
	}
	if _, err := md.Register(&metadata.Network{ListenHost: "localhost", Identify: allow}, id); err == nil {
		t.Error("Register with ListenHost localhost (not an IP) succeeded")
	}
}

// TestDockerInstances runs real containers (a FROM scratch image of
// testdata/containerapp, using Google's libraries) on the Docker runtime
// against one listener on the Docker network's gateway, shared by two
// revisions, that tells their containers apart with DockerInstances.
func TestDockerInstances(t *testing.T) {
	ctx := context.Background()
	c := dockertest.Engine(t, "the metadata server for containers")

	newRuntime := func() *docker.Runtime {
		t.Helper()
		rt, err := docker.New(ctx, docker.Config{Owner: "usher-metadata-test-" + randHex()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			rt.Cleanup(context.Background())
			rt.Close()
		})
		return rt
	}
	rt := newRuntime()
	if !rt.DirectAddressing() || rt.HostGateway() == "" {
		t.Skipf("*** this engine's containers are not addressed by IP (Docker Desktop, rootless, remote): containers get no metadata server, NOT TESTED ***")
	}
	gw := rt.HostGateway()
	// Another Usher on the same engine: its containers are not rt's.
	stranger := newRuntime()

	ref := "usher-test/metadata-containerapp:" + randHex()
	if err := dockertest.BuildScratchImage(ctx, c, "github.com/usher-run/usher/internal/metadata/testdata/containerapp", ref); err != nil {
		t.Fatal(err)
	}
	defer c.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})

	f := newFixture(t)
	lookup := func(ip netip.Addr) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, ok := rt.WaitInstanceAt(ctx, ip)
		return p.Key, ok
	}
	network := &metadata.Network{ListenHost: gw, Identify: metadata.DockerInstances(lookup)}
	id := frontend()
	reg := f.registerOn(t, network, id)
	if !strings.HasPrefix(reg.Host(), gw+":") {
		t.Fatalf("Host() = %q, want %s:PORT", reg.Host(), gw)
	}
	id2 := frontend()
	id2.ServiceAccount = "other@local-project.iam.gserviceaccount.com"
	id2.Revision = "frontend-00002-def"
	id2.Key = project + "/" + region + "/" + id2.Revision
	reg2 := f.registerOn(t, network, id2)
	if reg2.Host() != reg.Host() {
		t.Fatalf("two revisions on two listeners: %s, %s", reg.Host(), reg2.Host())
	}
	keyOf := map[string]string{id.Revision: id.Key, id2.Revision: id2.Key}

	start := func(rt *docker.Runtime, revision, host string) runtime.Instance {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		in, err := rt.Start(ctx, runtime.InstanceSpec{
			Image:    ref,
			Service:  "frontend",
			Revision: revision,
			Key:      keyOf[revision],
			ExtraEnv: []runtime.EnvVar{{Name: "GCE_METADATA_HOST", Value: host}},
		})
		if err != nil {
			t.Fatalf("start instance: %v", err)
		}
		t.Cleanup(func() { in.Stop(context.Background()) })
		return in
	}
	call := func(in runtime.Instance, path string) (int, string) {
		t.Helper()
		res, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + in.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	raw := func(path string) string { return "/raw?path=" + url.QueryEscape(path) }

	in := start(rt, id.Revision, reg.Host())
	// Asked from the container's first instruction, before the runtime
	// returned the instance.
	if code, body := call(in, "/startup"); code != http.StatusOK || body != saEmail {
		t.Fatalf("email fetched at startup: %d %q", code, body)
	}
	const aud = "https://backend-123.us-central1.run.localhost:8080"
	code, tok := call(in, "/token?aud="+url.QueryEscape(aud))
	if code != http.StatusOK {
		t.Fatalf("idtoken in the container: %d %q", code, tok)
	}
	f.verify(t, tok, saEmail, aud)
	if _, body := call(in, raw(v1+"project/project-id")); body != "200 "+project {
		t.Errorf("raw request from the container: %q", body)
	}
	if _, body := call(in, raw(v1+"project/project-id")+"&flavor=0"); !strings.HasPrefix(body, "403 ") {
		t.Errorf("request without Metadata-Flavor from the container: %q, want 403", body)
	}
	// No raw sockets in the container: it cannot forge its address.
	if _, body := call(in, "/netraw"); body != eperm {
		t.Errorf("raw socket in the container: %q, want %q", body, eperm)
	}

	// The host (this test process, calling from the gateway address) is no
	// instance.
	if r := get(t, reg.Host(), v1+"project/project-id", flavor); r.status != http.StatusForbidden {
		t.Errorf("the host asking %s: %d %q, want 403", reg.Host(), r.status, r.body)
	}

	// Each revision's containers are answered as their own revision on the
	// shared listener, and only as it.
	in2 := start(rt, id2.Revision, reg2.Host())
	if code, body := call(in2, "/startup"); code != http.StatusOK || body != id2.ServiceAccount {
		t.Fatalf("revision 2's container at startup: %d %q", code, body)
	}
	emailPath := raw(v1 + "instance/service-accounts/default/email")
	for _, tc := range []struct {
		in   runtime.Instance
		path string
		want string
	}{
		{in, emailPath, "200 " + saEmail},
		{in2, emailPath, "200 " + id2.ServiceAccount},
		{in, raw(v1 + "instance/service-accounts/" + id2.ServiceAccount + "/email"), "404 "},
		{in2, raw(v1 + "instance/service-accounts/" + saEmail + "/email"), "404 "},
	} {
		_, body := call(tc.in, tc.path)
		if !strings.HasPrefix(body, tc.want) || (strings.HasPrefix(tc.want, "200") && body != tc.want) {
			t.Errorf("instance %s asking %s: %q, want %q", tc.in.ID(), tc.path, body, tc.want)
		}
	}
	if code, tok := call(in2, "/token?aud="+url.QueryEscape(aud)); code != http.StatusOK {
		t.Errorf("idtoken in revision 2's container: %d %q", code, tok)
	} else {
		f.verify(t, tok, id2.ServiceAccount, aud)
	}

	// A container of the same revision name, with the same labels and
	// environment, that this runtime did not start: refused, at startup
	// and later.
	foreign := start(stranger, id.Revision, reg.Host())
	if code, body := call(foreign, "/startup"); code != http.StatusBadGateway || !strings.Contains(body, "403") {
		t.Errorf("a container rt did not start, at startup: %d %q, want a 403 error", code, body)
	}
	if _, body := call(foreign, emailPath); !strings.HasPrefix(body, "403 ") {
		t.Errorf("a container rt did not start: %q, want 403", body)
	}

	// Once an instance is stopped, its address is nobody's.
	addr := netip.MustParseAddrPort(in.Addr()).Addr()
	ctx2, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := in.Stop(ctx2); err != nil {
		t.Fatal(err)
	}
	if key, err := network.Identify(netip.MustParseAddrPort(reg.Host()), netip.AddrPortFrom(addr, 40000)); err == nil {
		t.Errorf("the address of a stopped instance is still identified, as %q", key)
	}
}

// eperm is what opening a raw socket gives without NET_RAW.
const eperm = "operation not permitted"

func randHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
