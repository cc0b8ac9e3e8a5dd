package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damage ruins a stopped server's usher.db in one of the ways a disk or an
// operator does.
var damages = []struct {
	name    string
	damage  func(t *testing.T, db string)
	problem string
}{
	{"missing", func(t *testing.T, db string) {
		if err := os.Remove(db); err != nil {
			t.Fatal(err)
		}
	}, "is missing"},
	{"empty", func(t *testing.T, db string) {
		if err := os.Truncate(db, 0); err != nil {
			t.Fatal(err)
		}
	}, "is empty"},
	{"corrupt pages", func(t *testing.T, db string) {
		b, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		// Keep the two meta pages (so the file still looks like bbolt),
		// scribble over every page after them.
		for i := 2 * 4096; i < len(b); i++ {
			b[i] = byte(i*7 + 3)
		}
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}, "is corrupt"},
}

// A data dir that has held state never starts as a fresh install when its
// database is lost: usher serve refuses with one line naming the file and
// what to do, and leaves config.json alone; --reinitialize starts over.
func TestLostDatabaseRefusesToStart(t *testing.T) {
	for _, tt := range damages {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			s.mustCLI(t, "iam", "service-accounts", "create", "before-sa")
			s.stop()
			db := filepath.Join(s.dataDir, "usher.db")
			configBefore, err := os.ReadFile(s.config)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, db)

			r, err := s.Exec(time.Minute, usherBin, []string{"HOME=" + s.home}, "serve", "--data-dir", s.dataDir, "--addr", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			line := strings.TrimRight(r.Stderr, "\n")
			if r.Code == 0 || strings.Contains(line, "\n") || !strings.HasPrefix(line, "ERROR: ") {
				t.Fatalf("got %s\nwant a non-zero exit with one ERROR line", r)
			}
			for _, want := range []string{db, tt.problem, "--reinitialize", "backup"} {
				if !strings.Contains(line, want) {
					t.Errorf("got %q, want it to mention %q", line, want)
				}
			}
			if configAfter, _ := os.ReadFile(s.config); !bytes.Equal(configAfter, configBefore) {
				t.Errorf("config.json changed by the refused start:\ngot  %s\nwant %s", configAfter, configBefore)
			}

			s.serveArgs = []string{"--reinitialize"}
			s.restart(t, "")
			got := s.mustCLI(t, "iam", "service-accounts", "list", "--format", "json").stdout
			if strings.Contains(got, "before-sa@") {
				t.Errorf("after --reinitialize: got %s, want a fresh start", got)
			}
		})
	}
}

// usher backup takes a consistent snapshot from a running server; restored
// into the stopped server's data dir, it brings back exactly that state.
// Only the owner may take one.
func TestBackupAndRestore(t *testing.T) {
	s := startServer(t)
	s.createSA(t, "kept-sa")
	sa := s.createSA(t, "other-owner")
	out := filepath.Join(t.TempDir(), "snapshot.db")

	t.Run("only the owner", func(t *testing.T) {
		if r := s.get(t, s.serverURL(t)+"/usher/v1/backup"); r.status != http.StatusUnauthorized {
			t.Errorf("backup without a token: got %d, want 401", r.status)
		}
		s.mustCLI(t, "projects", "add-iam-policy-binding", project, "--member=serviceAccount:"+sa, "--role=roles/owner")
		s.mustCLI(t, "iam", "service-accounts", "add-iam-policy-binding", sa, "--member=user:owner@usher.localhost", "--role=roles/iam.serviceAccountTokenCreator")
		tok := strings.TrimSpace(s.mustCLI(t, "auth", "print-access-token", "--impersonate-service-account", sa).stdout)
		if r := s.get(t, s.serverURL(t)+"/usher/v1/backup", "Authorization", "Bearer "+tok); r.status != http.StatusForbidden {
			t.Errorf("backup as a project owner that is not the server's owner: got %d, want 403", r.status)
		}
	})

	r := s.mustCLI(t, "backup", "--out", out)
	if !strings.Contains(r.stdout, out) {
		t.Errorf("usher backup: got %q, want it to name %s", r.stdout, out)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file: got %v, %v; want mode 0600", fi, err)
	}
	s.createSA(t, "after-backup")
	s.stop()

	rr, err := s.Exec(time.Minute, usherBin, []string{"HOME=" + s.home}, "restore", "--from", out, "--data-dir", s.dataDir)
	if err != nil || rr.Code != 0 {
		t.Fatalf("usher restore: got %s, %v; want exit 0", rr, err)
	}
	s.restart(t, "")
	list := s.mustCLI(t, "iam", "service-accounts", "list", "--format", "json").stdout
	if !strings.Contains(list, "kept-sa@") || strings.Contains(list, "after-backup@") {
		t.Errorf("after restore: got %s, want kept and not after-backup", list)
	}
}
