package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tarGz(t testing.TB, entries ...tar.Header) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		body := strings.Repeat("x", int(h.Size))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestExtractRefuses(t *testing.T) {
	for _, tc := range []struct {
		what    string
		archive []byte
	}{
		{"not gzip", []byte("plain")},
		{"parent path", tarGz(t, tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})},
		{"absolute path", tarGz(t, tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})},
		{"nested parent path", tarGz(t, tar.Header{Name: "a/../../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})},
		{"symlink", tarGz(t, tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})},
		{"hard link", tarGz(t, tar.Header{Name: "link", Typeflag: tar.TypeLink, Linkname: "x"})},
		{"too big", tarGz(t, tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 2048, Mode: 0o644})},
		{"too many files", tarGz(t, tar.Header{Name: "a", Typeflag: tar.TypeDir}, tar.Header{Name: "b", Typeflag: tar.TypeDir}, tar.Header{Name: "c", Typeflag: tar.TypeDir})},
	} {
		t.Run(tc.what, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "src")
			os.Mkdir(dir, 0o755)
			err := Extract(bytes.NewReader(tc.archive), dir, 1024, 2)
			if !errors.Is(err, ErrInvalidSource) {
				t.Errorf("got %v, want ErrInvalidSource", err)
			}
			if _, err := os.Stat(filepath.Join(root, "evil")); err == nil {
				t.Errorf("a file was written outside the source directory")
			}
		})
	}
	dir := t.TempDir()
	ok := tarGz(t, tar.Header{Name: "./", Typeflag: tar.TypeDir}, tar.Header{Name: "cmd/main.go", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644})
	if err := Extract(bytes.NewReader(ok), dir, 1024, 10); err != nil {
		t.Fatalf("a plain tree: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cmd", "main.go")); err != nil || string(b) != "xxx" {
		t.Errorf("extracted file: got %q, %v, want xxx", b, err)
	}
}

// FuzzExtract feeds untrusted archives to Extract: it must never panic nor
// write outside its directory, whatever the entry names and types.
func FuzzExtract(f *testing.F) {
	f.Add(tarGz(f, tar.Header{Name: "main.go", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644}))
	f.Add(tarGz(f, tar.Header{Name: "../x", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(tarGz(f, tar.Header{Name: "d/", Typeflag: tar.TypeDir}, tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Size: 2}))
	f.Add(tarGz(f, tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: ".."}))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, archive []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "src")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		Extract(bytes.NewReader(archive), dir, 1<<20, 100)
		entries, _ := os.ReadDir(root)
		if len(entries) != 1 {
			t.Fatalf("Extract wrote outside its directory: %v", entries)
		}
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.Mode()&os.ModeSymlink != 0 {
				t.Fatalf("Extract made a symbolic link: %s", p)
			}
			return nil
		})
	})
}

func TestOpenBounds(t *testing.T) {
	b := New(Config{Dir: t.TempDir(), MaxArchiveBytes: 100, MaxConcurrent: 1})
	big := bytes.Repeat([]byte{0}, 101)
	if _, err := b.Open(bytes.NewReader(big)); !errors.Is(err, ErrInvalidSource) || !strings.Contains(err.Error(), "exceeds 100 bytes") {
		t.Errorf("an upload over the limit: got %v, want ErrInvalidSource saying it exceeds 100 bytes", err)
	}
	release, ok := b.TryAcquire()
	if !ok {
		t.Fatal("the first build slot: not free")
	}
	if _, ok := b.TryAcquire(); ok {
		t.Errorf("a second build with MaxConcurrent 1: got a slot, want none")
	}
	release()
	if r, ok := b.TryAcquire(); !ok {
		t.Errorf("after release: no slot")
	} else {
		r()
	}
	src := tarGz(t, tar.Header{Name: "README", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	if _, err := b.Open(bytes.NewReader(src)); !errors.Is(err, ErrInvalidSource) || !strings.Contains(err.Error(), "neither a Dockerfile nor a Go main package") {
		t.Errorf("a source of no known language: got %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(b.cfg.Dir, "src")); len(entries) != 0 {
		t.Errorf("refused sources left %d directories behind", len(entries))
	}
}

func TestCheckReplaces(t *testing.T) {
	for _, tc := range []struct {
		gomod string
		ok    bool
	}{
		{"module m\n", true},
		{"module m\nreplace a => ./vendor/a\n", true},
		{"module m\nreplace a v1.0.0 => b v1.2.0\n", true},
		{"module m\nreplace a => /etc\n", false},
		{"module m\nreplace (\n\ta => ../other\n)\n", false},
		{"module m\nreplace a => ./x/../../y\n", false},
		{"module m\nreplace a => \"/abs\"\n", false},
		// Escapes the go command unquotes: ../../victim and /any/path.
		{"module m\nreplace victim => \"\\x2e\\x2e/\\x2e\\x2e/victim\"\n", false},
		{"module m\nreplace victim => \"\\x2fany\\x2fpath\"\n", false},
		{"module m\nreplace victim => `../victim`\n", false},
		{"module m\nreplace victim => \"./ok\"\n", true},
		{"not a go.mod (", false},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte(tc.gomod), 0o644)
		if err := checkReplaces(dir); (err == nil) != tc.ok {
			t.Errorf("%q: got %v, want ok %v", tc.gomod, err, tc.ok)
		}
	}
}
