package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/build"
)

// newBuilder builds sources under DATA_DIR/builds, with the Go toolchain on
// PATH and the Docker engine the environment names (DOCKER_HOST), reached
// only when a Dockerfile is built.
func newBuilder(dataDir string) *build.Builder {
	return build.New(build.Config{
		Dir: filepath.Join(dataDir, "builds"),
		Docker: func(ctx context.Context) (build.ImageBuilder, error) {
			c, err := client.New(client.FromEnv)
			if err != nil {
				return nil, err
			}
			if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
				c.Close()
				return nil, fmt.Errorf("no engine at %s: %w", c.DaemonHost(), err)
			}
			return c, nil
		},
	})
}
