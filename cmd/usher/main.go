// Command usher is a self-hosted Cloud Run: see internal/cli for its commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/usher-run/usher/internal/cli"
	"github.com/usher-run/usher/internal/runtime/process"
)

func main() {
	// A sandboxed instance's init is this executable run again.
	process.SandboxInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
