package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestFullDiskKeepsEveryRecord: with the data dir on a small file system
// that fills up, every IAM write Usher acknowledges has its audit record
// (the change and its record commit in one transaction), the writes it
// refuses change nothing, and Usher keeps answering. Needs root (a tmpfs).
func TestFullDiskKeepsEveryRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("*** not root: cannot mount a small tmpfs; the full-disk audit guarantee is NOT TESTED ***")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=32m,mode=0755"); err != nil {
		t.Skipf("*** mounting a tmpfs failed (%v): the full-disk audit guarantee is NOT TESTED ***", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) }) // after the server's own cleanup
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: dir})
	s := &server{Server: p, t: t, dir: p.Dir, dataDir: p.DataDir, home: p.Home, logPath: p.LogPath, config: p.ConfigPath, http: p.HTTP}
	s.deploy(t, "disk", helloBin)

	filler := filepath.Join(dir, "filler")
	fill := func() {
		f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		chunk := make([]byte, 64<<10)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling the disk: %v", err)
				}
				return
			}
		}
	}
	free := func(bytes int64) {
		st, err := os.Stat(filler)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filler, max(0, st.Size()-bytes)); err != nil {
			t.Fatal(err)
		}
	}

	var acknowledged, refused []string
	n := 0
	for round := 0; round < 6; round++ {
		fill()
		free(int64(round) * 16 << 10) // from no room at all to a little
		for range 16 {
			member := fmt.Sprintf("user:disk%d@example.com", n)
			n++
			r := s.cli(t, "run", "services", "add-iam-policy-binding", "disk", "--member="+member, "--role="+invokerRole, "--region="+region)
			if r.code == 0 {
				acknowledged = append(acknowledged, member)
			} else {
				refused = append(refused, member)
			}
		}
	}
	t.Logf("on a filling disk: %d writes acknowledged, %d refused", len(acknowledged), len(refused))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	policy := s.servicePolicy(t, "disk")
	inPolicy := map[string]bool{}
	for _, b := range policy.Bindings {
		for _, m := range b.Members {
			inPolicy[m] = true
		}
	}
	recorded := map[string]bool{}
	for _, rec := range s.auditLog(t, "--kind", "iam.setPolicy") {
		for _, d := range rec.Details.BindingDeltas {
			if d.Action == "ADD" {
				recorded[strings.ToLower(d.Member)] = true
			}
		}
	}
	for _, m := range acknowledged {
		if !inPolicy[m] {
			t.Errorf("%s: acknowledged but not in the policy", m)
		}
		if !recorded[m] {
			t.Errorf("%s: acknowledged without an audit record", m)
		}
	}
	for _, m := range refused {
		if inPolicy[m] || recorded[m] {
			t.Errorf("%s: refused, yet in the policy (%v) or the audit trail (%v)", m, inPolicy[m], recorded[m])
		}
	}
	if len(refused) == 0 {
		t.Error("no write was refused: the disk never filled, so this test shows little")
	}
	// Usher answers once there is room again.
	s.grant(t, "disk", "user:after@example.com", invokerRole)
}
