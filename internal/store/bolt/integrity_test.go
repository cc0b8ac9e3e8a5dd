package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/usher-run/usher/internal/store"
)

func filled(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "usher.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if _, err := s.Put(context.Background(), fmt.Sprintf("k/%04d", i), bytes.Repeat([]byte{'v'}, 200), store.AnyRevision); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInspect(t *testing.T) {
	path := filled(t)
	keys, err := Inspect(path)
	if err != nil || keys != 300 {
		t.Fatalf("Inspect(sound file) = %d, %v; want 300, nil", keys, err)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	f.Close()
	if _, err := Inspect(path); !errors.Is(err, ErrInUse) {
		t.Errorf("Inspect(open file) error = %v, want ErrInUse", err)
	}
	s.Close()
	if keys, err := Inspect(backup); err != nil || keys != 300 {
		t.Errorf("Inspect(backup) = %d, %v; want 300, nil", keys, err)
	}
}

// A file whose data pages are garbage is reported, never a panic: neither
// when inspected nor when a store opened on it is read.
func TestCorruptPagesAreErrors(t *testing.T) {
	patterns := []struct {
		name string
		fill func(i int) byte
	}{
		{"zeros", func(int) byte { return 0 }},
		{"ones", func(int) byte { return 0xff }},
		{"sequence", func(i int) byte { return byte(i*7 + 3) }},
	}
	for _, p := range patterns {
		t.Run(p.name, func(t *testing.T) {
			path := filled(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := 2 * 4096; i < len(b); i++ {
				b[i] = p.fill(i)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Inspect(path); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Inspect(corrupt) error = %v, want ErrCorrupt", err)
			}
			s, err := Open(path)
			if err != nil {
				return // refused at open: also fine
			}
			defer s.Close()
			if _, _, err := s.List(context.Background(), "k/"); err == nil {
				t.Errorf("List on corrupt pages: got no error")
			}
		})
	}
}
