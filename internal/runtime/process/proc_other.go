//go:build !unix

package process

import (
	"os"
	"os/exec"

	"github.com/usher-run/usher/internal/runtime"
)

// On systems without process groups and signals, only the main process is
// managed, and Stop kills it at once (no graceful SIGTERM).

func setProcAttr(cmd *exec.Cmd) {}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

func termGroup(p *os.Process) { _ = p.Kill() }

func killGroup(p *os.Process) { _ = p.Kill() }

func exitError(ps *os.ProcessState) *runtime.ExitError {
	return &runtime.ExitError{Code: ps.ExitCode()}
}
