package metadata_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/metadata"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/process"
)

// TestProcessInstances runs real instances on the process runtime (this test
// binary, see instanceMain) against a listener checked by ProcessInstances.
func TestProcessInstances(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	rt := process.New(process.Config{WorkDir: t.TempDir()})

	var poolSays atomic.Pointer[string] // the revision the "pool" records for any instance
	id := frontend()
	id.CheckPeer = metadata.ProcessInstances(id.Revision, func(pgid int) (string, bool) {
		if rev := poolSays.Load(); rev != nil {
			return *rev, true
		}
		return "", false
	})
	reg := f.register(t, id)
	be := backend(t, f)

	start := func(revision, host string) runtime.Instance {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		in, err := rt.Start(ctx, runtime.InstanceSpec{
			Image:    "file://" + exe,
			Service:  "frontend",
			Revision: revision,
			Env:      []runtime.EnvVar{{Name: helperEnv, Value: "1"}, {Name: "HOME", Value: t.TempDir()}},
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
		res, err := http.Get("http://" + in.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	in := start(id.Revision, reg.Host())
	// Asked while the instance was starting, before the runtime returned it.
	if code, body := call(in, "/startup"); code != http.StatusOK || body != saEmail {
		t.Fatalf("email fetched at startup: %d %q", code, body)
	}
	const aud = "https://backend-123.us-central1.run.localhost:8080"
	code, tok := call(in, "/token?aud="+url.QueryEscape(aud))
	if code != http.StatusOK {
		t.Fatalf("idtoken in the instance: %d %q", code, tok)
	}
	f.verify(t, tok, saEmail, aud)
	if code, body := call(in, "/call?url="+url.QueryEscape(be.URL)); code != http.StatusOK || body != "200 hello "+saEmail {
		t.Fatalf("frontend → backend: %d %q", code, body)
	}
	if code, body := call(in, "/raw?path="+url.QueryEscape(v1+"project/project-id")); body != "200 "+project {
		t.Fatalf("raw request from the instance: %d %q", code, body)
	}

	// This test process is no instance.
	if r := get(t, reg.Host(), v1+"project/project-id", flavor); r.status != http.StatusForbidden {
		t.Fatalf("the test process got %d %q, want 403", r.status, r.body)
	}

	// An instance of another revision pointed at this listener is refused,
	// at startup and later.
	other := start("frontend-00002-def", reg.Host())
	if code, body := call(other, "/startup"); code != http.StatusBadGateway || !strings.Contains(body, "403") {
		t.Errorf("another revision's instance at startup: %d %q, want a 403 error", code, body)
	}
	if code, body := call(other, "/token?aud=x"); code == http.StatusOK {
		t.Errorf("another revision's instance got a token: %q", body)
	}
	if _, body := call(other, "/raw?path="+url.QueryEscape(v1+"instance/service-accounts/default/email")); !strings.HasPrefix(body, "403 ") {
		t.Errorf("another revision's instance: %q, want 403", body)
	}

	// Two listeners of the same revision (say a previous registration and
	// the current one) each answer only the instances started for them.
	id2 := frontend()
	id2.ServiceAccount = "backend@local-project.iam.gserviceaccount.com"
	id2.CheckPeer = metadata.ProcessInstances(id.Revision, nil)
	reg2 := f.register(t, id2)
	in2 := start(id.Revision, reg2.Host())
	if code, body := call(in2, "/startup"); code != http.StatusOK || body != id2.ServiceAccount {
		t.Fatalf("instance of reg2 at startup: %d %q", code, body)
	}
	emailPath := url.QueryEscape(v1 + "instance/service-accounts/default/email")
	for _, tc := range []struct {
		in   runtime.Instance
		host string
		want string
	}{
		{in, reg.Host(), "200 " + saEmail},
		{in, reg2.Host(), "403 "},
		{in2, reg2.Host(), "200 " + id2.ServiceAccount},
		{in2, reg.Host(), "403 "},
	} {
		if _, body := call(tc.in, "/raw?path="+emailPath+"&host="+tc.host); !strings.HasPrefix(body, tc.want) || (strings.HasPrefix(tc.want, "200") && body != tc.want) {
			t.Errorf("instance %s asking %s: %q, want %q", tc.in.ID(), tc.host, body, tc.want)
		}
	}

	// When the pool knows an instance, its record wins over the instance's
	// environment.
	wrong := "frontend-00009-zzz"
	poolSays.Store(&wrong)
	if _, body := call(in, "/raw?path="+url.QueryEscape(v1+"project/project-id")); !strings.HasPrefix(body, "403 ") {
		t.Errorf("instance the pool records for another revision: %q, want 403", body)
	}
	right := id.Revision
	poolSays.Store(&right)
	if _, body := call(in, "/raw?path="+url.QueryEscape(v1+"project/project-id")); body != "200 "+project {
		t.Errorf("instance the pool records for this revision: %q", body)
	}
}
