package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/usher-run/usher/internal/client"
)

// Deploying from source: the CLI packs the directory (a gzipped tar of its
// plain files and directories; .git and a .gcloudignore's or
// .dockerignore's patterns are left out), the server builds it and streams
// the build's output, which the CLI copies to stderr, and the deploy then
// names the image the build made.

// buildFromSource builds dir for target ("services/NAME" or "jobs/NAME")
// and returns the image to deploy.
func buildFromSource(ctx context.Context, g *globals, c *client.Client, project, region, target, dir string) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("--source: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("--source=%s is not a directory", dir)
	}
	ignore := ignorePatterns(dir)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(packSource(dir, ignore, pw)) }()
	defer pr.Close()
	fmt.Fprintf(g.stderr, "Building using the source in [%s]\n", dir)
	image, err := c.BuildSource(ctx, project, region, target, pr, g.stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(g.stderr, "Built image [%s]\n", image)
	return image, nil
}

// ignorePatterns reads .gcloudignore, else .dockerignore: one glob a line
// (matched against slash paths and their base names), # comments.
func ignorePatterns(dir string) []string {
	for _, f := range []string{".gcloudignore", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		var out []string
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "!") {
				out = append(out, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/"))
			}
		}
		return out
	}
	return nil
}

func ignored(rel string, patterns []string) bool {
	if rel == ".git" || strings.HasPrefix(rel, ".git/") {
		return true
	}
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, rel); ok {
			return true
		}
		if ok, _ := filepath.Match(p, filepath.Base(rel)); ok {
			return true
		}
	}
	return false
}

// packSource writes dir as a gzipped tar of its plain files and
// directories; symbolic links and special files are refused (the server
// accepts neither).
func packSource(dir string, ignore []string, w io.Writer) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(rel, ignore) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755})
		case info.Mode().IsRegular():
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: int64(info.Mode().Perm()), Size: info.Size()}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, info.Size())
			return err
		}
		return fmt.Errorf("--source: %s is not a plain file or directory (links are not uploaded); list it in .gcloudignore", rel)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
