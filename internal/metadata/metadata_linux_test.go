package metadata_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/metadata"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/process"
)

// TestProcessInstances runs real instances on the unsandboxed process
// runtime (this test binary, see instanceMain) against one listener shared
// by two revisions, which tells their instances apart with
// ProcessInstances and the runtime's record of them.
func TestProcessInstances(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	rt := process.New(process.Config{WorkDir: t.TempDir()})
	network := &metadata.Network{Identify: metadata.ProcessInstances(func(pgid int) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return rt.WaitInstanceOfGroup(ctx, pgid)
	})}
	id := frontend()
	reg := f.registerOn(t, network, id)
	id2 := frontend()
	id2.ServiceAccount = "backend@local-project.iam.gserviceaccount.com"
	id2.Revision = "frontend-00002-def"
	id2.Key = project + "/" + region + "/" + id2.Revision
	reg2 := f.registerOn(t, network, id2)
	if reg.Host() != reg2.Host() {
		t.Fatalf("two revisions on two listeners: %s, %s", reg.Host(), reg2.Host())
	}
	be := backend(t, f)

	// start runs an instance recorded under key, with K_REVISION revision.
	start := func(key, revision string) runtime.Instance {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		in, err := rt.Start(ctx, runtime.InstanceSpec{
			Image:    "file://" + exe,
			Service:  "frontend",
			Revision: revision,
			Key:      key,
			Env:      []runtime.EnvVar{{Name: helperEnv, Value: "1"}, {Name: "HOME", Value: t.TempDir()}},
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
		res, err := http.Get("http://" + in.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	emailPath := "/raw?path=" + url.QueryEscape(v1+"instance/service-accounts/default/email")

	in := start(id.Key, id.Revision)
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

	// The other revision's instance is answered as its own account, even
	// with the first revision's name in its environment: only the runtime's
	// record counts.
	in2 := start(id2.Key, id.Revision)
	if code, body := call(in2, "/startup"); code != http.StatusOK || body != id2.ServiceAccount {
		t.Fatalf("revision 2's instance at startup: %d %q", code, body)
	}
	if _, body := call(in2, emailPath); body != "200 "+id2.ServiceAccount {
		t.Errorf("revision 2's instance: %q", body)
	}
	if _, body := call(in, emailPath); body != "200 "+saEmail {
		t.Errorf("revision 1's instance: %q", body)
	}

	// An instance whose revision has no registration (retired, or never
	// registered) is refused, at startup and later.
	orphan := start(project+"/"+region+"/frontend-00009-zzz", id.Revision)
	if code, body := call(orphan, "/startup"); code != http.StatusBadGateway || !strings.Contains(body, "403") {
		t.Errorf("an unregistered revision's instance at startup: %d %q, want a 403 error", code, body)
	}
	if code, body := call(orphan, "/token?aud=x"); code == http.StatusOK {
		t.Errorf("an unregistered revision's instance got a token: %q", body)
	}
	// Closing a registration ends its instances' answers at once.
	reg2.Close()
	if _, body := call(in2, emailPath); !strings.HasPrefix(body, "403 ") {
		t.Errorf("instance of a closed registration: %q, want 403", body)
	}
	if _, body := call(in, emailPath); body != "200 "+saEmail {
		t.Errorf("revision 1's instance after revision 2's registration closed: %q", body)
	}
}

// TestInstanceCannotJoinAnothersGroup: a process of one unsandboxed
// instance that moves into another instance's process group (setpgid(2)
// allows any group of the caller's session) must not be answered as that
// other instance's revision. Instances each lead a session of their own,
// so the move is refused; were it allowed, ProcessInstances would take the
// group for the other instance.
func TestInstanceCannotJoinAnothersGroup(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	rt := process.New(process.Config{WorkDir: t.TempDir()})
	network := &metadata.Network{Identify: metadata.ProcessInstances(func(pgid int) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return rt.WaitInstanceOfGroup(ctx, pgid)
	})}
	attacker := frontend()
	attacker.ServiceAccount = "attacker@other-project.iam.gserviceaccount.com"
	attacker.Revision = "attacker-00001-abc"
	attacker.Key = project + "/" + region + "/" + attacker.Revision
	victim := frontend()
	regA := f.registerOn(t, network, attacker)
	f.registerOn(t, network, victim)
	start := func(id metadata.Identity) runtime.Instance {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		in, err := rt.Start(ctx, runtime.InstanceSpec{
			Image:    "file://" + exe,
			Service:  id.Service,
			Revision: id.Revision,
			Key:      id.Key,
			Env:      []runtime.EnvVar{{Name: helperEnv, Value: "1"}, {Name: "HOME", Value: t.TempDir()}},
			ExtraEnv: []runtime.EnvVar{{Name: "GCE_METADATA_HOST", Value: regA.Host()}},
		})
		if err != nil {
			t.Fatalf("start instance: %v", err)
		}
		t.Cleanup(func() { in.Stop(context.Background()) })
		return in
	}
	a := start(attacker)
	v := start(victim)
	pgid := v.(process.ProcessGrouper).ProcessGroup()
	res, err := http.Get("http://" + a.Addr() + "/join?pgid=" + strconv.Itoa(pgid) + "&path=" + url.QueryEscape(v1+"instance/service-accounts/default/email"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if strings.Contains(string(b), victim.ServiceAccount) {
		t.Fatalf("a process of the attacker's instance that joined the victim's group was answered as the victim: %q", b)
	}
	t.Logf("attacker's child: %q", b)
}
