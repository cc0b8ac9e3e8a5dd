package metadata_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/metadata"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/process"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

// TestSandboxedProcessInstances runs real sandboxed instances (this test
// binary, see instanceMain) against a listener checked by
// SandboxedProcessInstances: they reach it through the sandbox's relay.
func TestSandboxedProcessInstances(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	be := backend(t, f)
	beAddr := strings.TrimPrefix(be.URL, "http://")
	rt := process.New(process.Config{Sandbox: &process.Sandbox{Reach: []string{beAddr}}})
	if ok, err := rt.Sandboxed(); !ok {
		t.Skipf("no sandbox here: %v", err)
	}
	id := frontend()
	identify := metadata.SandboxedProcessInstances(rt.InstanceAt)
	network := &metadata.Network{Identify: func(l, r netip.AddrPort) (string, error) {
		key, err := identify(l, r)
		t.Logf("peer %s: %q, %v", r, key, err) // why a connection was refused
		return key, err
	}}
	reg := f.registerOn(t, network, id)

	start := func(revision string) runtime.Instance {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		in, err := rt.Start(ctx, runtime.InstanceSpec{
			Image:    "file://" + exe,
			Service:  "frontend",
			Revision: revision,
			Key:      project + "/" + region + "/" + revision,
			Env:      []runtime.EnvVar{{Name: helperEnv, Value: "1"}},
			ExtraEnv: []runtime.EnvVar{{Name: "GCE_METADATA_HOST", Value: reg.Host()}},
		})
		if err != nil {
			t.Fatalf("start instance: %v", err)
		}
		t.Cleanup(func() { in.Stop(context.Background()) })
		return in
	}
	call := func(in runtime.Instance, path string) (int, string) {
		t.Helper()
		code, body, err := runtimetest.Get(in, path)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}

	in := start(id.Revision)
	if code, body := call(in, "/startup"); code != http.StatusOK || body != saEmail {
		t.Fatalf("email fetched at startup: %d %q, want 200 %q", code, body, saEmail)
	}
	if code, body := call(in, "/call?url="+url.QueryEscape(be.URL)); code != http.StatusOK || body != "200 hello "+saEmail {
		t.Fatalf("frontend → backend: %d %q", code, body)
	}

	other := start("frontend-00002-def")
	if _, body := call(other, "/raw?path="+url.QueryEscape(v1+"instance/service-accounts/default/email")); !strings.HasPrefix(body, "403 ") {
		t.Errorf("an unregistered revision's instance: %q, want 403", body)
	}

	// A host process dialing from a sandbox address that is no live
	// instance's (here: the test process, which plays Usher).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.77.255.7")}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://"+reg.Host()+v1+"project/project-id", nil)
	req.Header.Set("Metadata-Flavor", "Google")
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("unknown sandbox address: %d, want 403", res.StatusCode)
	}
}
