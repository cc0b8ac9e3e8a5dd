//go:build unix && !linux

package process

import (
	"os/exec"
	"syscall"
)

// Without Pdeathsig instances outlive a killed Usher on these systems.
func setProcAttr(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
