//go:build unix && !linux

package process

import (
	"os/exec"
	"syscall"
)

// Without Pdeathsig instances outlive a killed Usher on these systems. Each
// instance leads a session of its own, as on Linux (proc_linux.go).
func setProcAttr(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
