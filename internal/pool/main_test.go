package pool

import (
	"os"
	"testing"

	"github.com/usher-run/usher/internal/runtime/process"
)

func TestMain(m *testing.M) {
	process.SandboxInit() // the sandboxed benchmark's instances' init is this binary
	os.Exit(m.Run())
}
