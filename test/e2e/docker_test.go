package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime/docker/dockertest"
)

// TestDockerImage: a FROM scratch image of examples/hello, built on the local
// engine (no registry is reachable), deploys as a container, answers, and
// leaves no container behind once deleted.
func TestDockerImage(t *testing.T) {
	ctx := context.Background()
	c := dockertest.Engine(t, "the Docker runtime end to end")
	var b [4]byte
	rand.Read(b[:])
	ref := "usher-e2e/hello:" + hex.EncodeToString(b[:])
	if err := dockertest.BuildScratchImage(ctx, c, "github.com/usher-run/usher/examples/hello", ref); err != nil {
		t.Fatal(err)
	}
	defer c.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})

	s := startServer(t)
	s.mustCLI(t, "run", "deploy", "boxed", "--image="+ref, "--region="+region, "--allow-unauthenticated", "--memory=128Mi", "--cpu=0.5")
	url := s.describe(t, "boxed").Status.URL
	if got := s.get(t, url); got.status != 200 || got.body != "Hello World!\n" {
		t.Fatalf("container service: %d %q, want Hello World!", got.status, got.body)
	}
	if n := containers(t, c, "boxed"); n != 1 {
		t.Errorf("containers for the service = %d, want 1", n)
	}
	s.mustCLI(t, "run", "services", "delete", "boxed", "--region="+region, "--quiet")
	poll(t, 30*time.Second, "the service's container to be removed", func() (bool, string) {
		n := containers(t, c, "boxed")
		return n == 0, ""
	})

}

// containers counts the containers (running or not) labelled for service.
func containers(t *testing.T, c *client.Client, service string) int {
	t.Helper()
	list, err := c.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "usher.dev/service="+service)})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}
