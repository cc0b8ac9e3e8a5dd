// Package dockertest builds the images Usher's tests run on the local Docker
// engine: FROM scratch images of the project's own static Go programs, since
// no registry is reachable. For tests only.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// BuildScratchImage builds pkg as a static Linux binary and makes it the
// ENTRYPOINT of a FROM scratch image tagged ref, with the engine's API.
func BuildScratchImage(ctx context.Context, c *client.Client, pkg, ref string) error {
	dir, err := os.MkdirTemp("", "usher-docker-test-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "app")
	cmd := exec.CommandContext(ctx, gotool, "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	app, err := os.ReadFile(bin)
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n")},
		{"app", 0o755, app},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Now()}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res, err := c.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1, // FROM scratch needs no BuildKit session
		Labels:      map[string]string{"usher.dev/test": "true"},
	})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
	}
	_, err = c.ImageInspect(ctx, ref)
	return err
}

// Engine returns a client of the local Docker engine, closed when t ends.
// Without an engine that answers, t is skipped, loudly naming what is then
// NOT TESTED (untested), or fails when USHER_TEST_REQUIRE_DOCKER=1 (CI on
// machines that have one).
func Engine(t testing.TB, untested string) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
	}
	if err != nil {
		if os.Getenv("USHER_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatalf("USHER_TEST_REQUIRE_DOCKER=1 but no Docker engine answers: %v", err)
		}
		t.Skipf("*** no Docker engine: %s is NOT TESTED (%v) ***", untested, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
