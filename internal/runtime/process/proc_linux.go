package process

import (
	"os/exec"
	goruntime "runtime"
	"sync"
	"syscall"
)

func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A session of its own, whose process group the main process
		// leads (its pid is the group id, as with Setpgid): setpgid(2)
		// moves a process only into groups of its own session, so no
		// process of another instance (nor of Usher's session) can join
		// this instance's group and pass for it (metadata.ProcessInstances
		// tells instances apart by group).
		Setsid: true,
		// Kill the main process if Usher dies, even by SIGKILL.
		Pdeathsig: syscall.SIGKILL,
	}
}

// Pdeathsig fires when the OS thread that forked the child exits, not the
// process, and the Go runtime does terminate threads (when a goroutine exits
// while locked to its thread), which would kill healthy instances
// (golang.org/issue/27505). So all instances are forked from one goroutine
// locked to its thread for good: that thread lives as long as Usher.
var forker struct {
	once sync.Once
	reqs chan forkReq
}

type forkReq struct {
	cmd *exec.Cmd
	res chan<- error
}

func startCmd(cmd *exec.Cmd) error {
	forker.once.Do(func() {
		forker.reqs = make(chan forkReq)
		go func() {
			goruntime.LockOSThread() // never unlocked: the thread never exits
			for r := range forker.reqs {
				r.res <- r.cmd.Start()
			}
		}()
	})
	res := make(chan error, 1)
	forker.reqs <- forkReq{cmd, res}
	return <-res
}
