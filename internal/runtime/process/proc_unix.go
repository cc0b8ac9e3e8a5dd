//go:build unix

package process

import (
	"os"
	"syscall"

	"github.com/usher-run/usher/internal/runtime"
)

// termGroup sends SIGTERM to the instance's process group and to its main
// process (in case it left the group).
func termGroup(p *os.Process) { signalGroup(p, syscall.SIGTERM) }

// killGroup sends SIGKILL to the instance's process group and main process.
func killGroup(p *os.Process) { signalGroup(p, syscall.SIGKILL) }

func signalGroup(p *os.Process, sig syscall.Signal) {
	// The group id is the main process's pid (Setsid). Errors mean there is
	// nobody left to signal.
	_ = syscall.Kill(-p.Pid, sig)
	_ = p.Signal(sig)
}

func exitError(ps *os.ProcessState) *runtime.ExitError {
	x := &runtime.ExitError{Code: ps.ExitCode()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		x.Code = -1
		x.Signal = ws.Signal().String()
	}
	return x
}
