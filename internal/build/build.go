// Package build turns a source directory, uploaded as a gzipped tar, into
// something Usher runs: a container image built by the local Docker
// engine from the directory's Dockerfile, or, without one, an executable
// built by the local Go toolchain from a Go main package, for the process
// runtime. Each build's output is kept under its own name (an image tag, a
// directory under Config.Dir), so every revision keeps running what it was
// deployed with and rollbacks work.
//
// Languages are tried in order (see languages): the first whose detect
// matches builds. Adding one, as buildpacks do, is adding a Language: how
// to recognise the source, whether its output runs on the host, and how to
// build it.
//
// This package never decides who may build: the admin core does, before
// Build runs anything (a Go build's output is a host executable, so it
// needs what a file:// image needs). The uploaded archive is untrusted:
// extract bounds its size and file count and refuses any entry that is not
// a plain file or directory inside the source tree.
package build

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Limits of an uploaded source archive.
const (
	DefaultMaxArchiveBytes  = 64 << 20  // compressed, as uploaded
	DefaultMaxExpandedBytes = 512 << 20 // the files it holds, in total
	DefaultMaxFiles         = 20000
	// DefaultMaxConcurrent builds run at once per server; more are refused
	// (a build takes CPU and disk the server's instances need).
	DefaultMaxConcurrent = 2
)

// Config says where builds keep their output and which tools they use.
type Config struct {
	// Dir holds built executables (DIR/PROJECT/REGION/KIND/NAME/BUILD/NAME)
	// and the sources being built; Usher's data dir/builds.
	Dir string
	// GoBin is the Go toolchain ("go" from PATH when empty).
	GoBin string
	// Docker connects to the engine for Dockerfile builds (nil: none).
	Docker func(ctx context.Context) (ImageBuilder, error)

	MaxArchiveBytes, MaxExpandedBytes int64
	MaxFiles, MaxConcurrent           int
}

// Builder builds sources.
type Builder struct {
	cfg   Config
	slots chan struct{}
}

// New returns a Builder for cfg.
func New(cfg Config) *Builder {
	if cfg.MaxArchiveBytes <= 0 {
		cfg.MaxArchiveBytes = DefaultMaxArchiveBytes
	}
	if cfg.MaxExpandedBytes <= 0 {
		cfg.MaxExpandedBytes = DefaultMaxExpandedBytes
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	return &Builder{cfg: cfg, slots: make(chan struct{}, cfg.MaxConcurrent)}
}

// TryAcquire takes one of the concurrent build slots, if one is free;
// release gives it back. Take it before Open: receiving a source uses disk.
func (b *Builder) TryAcquire() (release func(), ok bool) {
	select {
	case b.slots <- struct{}{}:
		return func() { <-b.slots }, true
	default:
		return nil, false
	}
}

// Target is what a build is for: a service or a job.
type Target struct {
	Project, Region string
	Kind            string // "services" or "jobs"
	Name            string
}

// Language is one way of building a source tree.
type Language struct {
	// Name is how the build output names it ("Dockerfile", "Go").
	Name string
	// Host tells that the output runs on Usher's host (the process runtime).
	Host   bool
	detect func(dir string) bool
	build  func(ctx context.Context, b *Builder, s *Source, t Target, out io.Writer) (image string, err error)
}

// languages, in the order they are tried.
var languages = []Language{dockerfileLanguage, goLanguage}

// Supported names the languages, for messages.
func Supported() string {
	return "a Dockerfile (built by the local Docker engine) or a Go main package (built by the local Go toolchain for the process runtime)"
}

// ErrInvalidSource is wrapped by every refusal of an uploaded source.
var ErrInvalidSource = errors.New("build: invalid source")

// Source is an uploaded source tree, extracted and recognised.
type Source struct {
	Language Language
	id       string
	dir      string // the extracted tree
	archive  string // the upload, as received (a Docker build context)
	work     string
}

// Close removes the extracted source.
func (s *Source) Close() error { return os.RemoveAll(s.work) }

// Open receives a gzipped tar of a source directory, extracts it and
// recognises its language. Nothing in it runs.
func (b *Builder) Open(r io.Reader) (*Source, error) {
	if b.cfg.Dir == "" {
		return nil, errors.New("build: no build directory configured")
	}
	if err := os.MkdirAll(filepath.Join(b.cfg.Dir, "src"), 0o700); err != nil {
		return nil, err
	}
	id := newBuildID(time.Now())
	work, err := os.MkdirTemp(filepath.Join(b.cfg.Dir, "src"), id+"-")
	if err != nil {
		return nil, err
	}
	s := &Source{id: id, work: work, dir: filepath.Join(work, "src"), archive: filepath.Join(work, "source.tar.gz")}
	if err := b.receive(r, s); err != nil {
		s.Close()
		return nil, err
	}
	for _, l := range languages {
		if l.detect(s.dir) {
			s.Language = l
			return s, nil
		}
	}
	s.Close()
	return nil, fmt.Errorf("%w: the directory has neither a Dockerfile nor a Go main package; Usher builds %s", ErrInvalidSource, Supported())
}

func (b *Builder) receive(r io.Reader, s *Source) error {
	f, err := os.OpenFile(s.archive, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, b.cfg.MaxArchiveBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: reading the upload: %v", ErrInvalidSource, err)
	}
	if n > b.cfg.MaxArchiveBytes {
		return fmt.Errorf("%w: the source archive exceeds %d bytes", ErrInvalidSource, b.cfg.MaxArchiveBytes)
	}
	a, err := os.Open(s.archive)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		return err
	}
	return Extract(a, s.dir, b.cfg.MaxExpandedBytes, b.cfg.MaxFiles)
}

// Build builds the source for t, writing the tools' output to out as it
// comes, and returns the image to deploy.
func (s *Source) Build(ctx context.Context, b *Builder, t Target, out io.Writer) (string, error) {
	return s.Language.build(ctx, b, s, t, out)
}

// Extract unpacks a gzipped tar into dir (which must exist): plain files and
// directories only, every name inside dir, at most maxBytes in files and
// maxFiles entries. Anything else is refused with ErrInvalidSource.
func Extract(r io.Reader, dir string, maxBytes int64, maxFiles int) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzipped tar: %v", ErrInvalidSource, err)
	}
	tr := tar.NewReader(zr)
	var total int64
	for files := 0; ; files++ {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: reading the archive: %v", ErrInvalidSource, err)
		}
		if files >= maxFiles {
			return fmt.Errorf("%w: more than %d files", ErrInvalidSource, maxFiles)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the root itself
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrInvalidSource, name, err)
			}
		case tar.TypeReg:
			if h.Size < 0 || total+h.Size > maxBytes {
				return fmt.Errorf("%w: the files exceed %d bytes in total", ErrInvalidSource, maxBytes)
			}
			total += h.Size
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrInvalidSource, name, err)
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrInvalidSource, name, err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrInvalidSource, name, err)
			}
		default:
			return fmt.Errorf("%w: %s is not a plain file or directory (links and devices are not accepted)", ErrInvalidSource, name)
		}
	}
}

// entryName cleans an archive entry's name: relative, slash-separated,
// inside the tree ("" for the root).
func entryName(raw string) (string, error) {
	if strings.ContainsRune(raw, 0) || strings.Contains(raw, `\`) {
		return "", fmt.Errorf("%w: entry name %q", ErrInvalidSource, raw)
	}
	name := path.Clean(strings.TrimPrefix(raw, "./"))
	if name == "." {
		return "", nil
	}
	if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("%w: entry %q lies outside the source directory", ErrInvalidSource, raw)
	}
	return name, nil
}

func newBuildID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}
