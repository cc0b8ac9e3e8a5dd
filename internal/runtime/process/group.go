package process

// ProcessGrouper is implemented by the instances of this runtime. Callers
// that hold a runtime.Instance may test for it:
//
//	if g, ok := inst.(process.ProcessGrouper); ok { pgid := g.ProcessGroup() }
type ProcessGrouper interface {
	// ProcessGroup returns the instance's process group id: the pid of its
	// main process, which leads a group of its own (on systems without
	// process groups, just that pid). Processes the instance starts stay in
	// it unless they leave on purpose.
	ProcessGroup() int
}

var _ ProcessGrouper = (*instance)(nil)

// ProcessGroup implements ProcessGrouper.
func (in *instance) ProcessGroup() int { return in.cmd.Process.Pid }
