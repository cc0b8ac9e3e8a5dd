package build

import (
	"context"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
)

// goLanguage builds a Go main package (the directory's own .go files, with
// or without a go.mod) into one static executable for the process runtime:
// CGO_ENABLED=0 (no C toolchain runs), GOTOOLCHAIN=local (no other
// toolchain is downloaded), GOWORK=off and no replace directive naming a
// directory outside the source (the build runs as Usher's user, and could
// otherwise compile, or go:embed, files of the host), -trimpath. Modules
// are fetched as the server's Go environment says (GOPROXY).
var goLanguage = Language{Name: "Go", Host: true, detect: isGoMain, build: buildGo}

// isGoMain reports whether dir's own .go files (tests aside) are package main.
func isGoMain(dir string) bool {
	files := goFiles(dir)
	if len(files) == 0 {
		return false
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, filepath.Join(dir, f), nil, parser.PackageClauseOnly)
		if err != nil || af.Name.Name != "main" {
			return false
		}
	}
	return true
}

func goFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func buildGo(ctx context.Context, b *Builder, s *Source, t Target, out io.Writer) (string, error) {
	goBin := b.cfg.GoBin
	if goBin == "" {
		goBin = "go"
	}
	goPath, err := exec.LookPath(goBin)
	if err != nil {
		return "", fmt.Errorf("no Go toolchain on Usher's host (%s): install Go, or add a Dockerfile to build with the Docker engine", goBin)
	}
	outDir := filepath.Join(b.cfg.Dir, t.Project, t.Region, t.Kind, t.Name, s.id)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	if err := checkReplaces(s.dir); err != nil {
		os.RemoveAll(outDir)
		return "", err
	}
	exe := filepath.Join(outDir, t.Name)
	args := []string{"build", "-trimpath", "-o", exe}
	if _, err := os.Stat(filepath.Join(s.dir, "go.mod")); err == nil {
		args = append(args, ".")
	} else {
		args = append(args, goFiles(s.dir)...)
	}
	fmt.Fprintf(out, "Building a Go main package: %s %s\n", goBin, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, goPath, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(outDir)
		return "", fmt.Errorf("go build failed: %v", err)
	}
	if err := os.Chmod(exe, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "Built %s\n", exe)
	return "file://" + exe, nil
}

// checkReplaces refuses a go.mod whose replace directives point at a
// directory outside the source tree (absolute, or climbing out with "..").
// The paths are read as the go command reads them (x/mod's parser, which
// unquotes escapes such as "\x2e\x2e/"), never from the raw text.
func checkReplaces(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil // no go.mod: the package's own files only
	}
	f, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		return fmt.Errorf("go.mod: %w", err)
	}
	for _, r := range f.Replace {
		if r.New.Version != "" {
			continue // a module version, fetched like any dependency
		}
		if p := r.New.Path; !filepath.IsLocal(filepath.FromSlash(p)) {
			return fmt.Errorf("go.mod line %d replaces a module with %s, a directory outside the uploaded source: only paths inside it (./…) or module versions are built", r.Syntax.Start.Line, p)
		}
	}
	return nil
}
