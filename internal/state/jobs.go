package state

import "github.com/usher-run/usher/internal/apis"

// Jobs (issue 16): a job, its IAM policy, and its executions, each
// execution one record with its tasks, written by the admin core (create,
// cancel) and by the node running it (package jobs).
const (
	JobsPrefix        = "jobs/"
	JobPoliciesPrefix = "policies/jobs/"
	ExecutionsPrefix  = "executions/"
)

func JobKey(p, region, name string) string { return JobsPrefix + p + "/" + region + "/" + name }
func JobPolicyKey(p, region, name string) string {
	return JobPoliciesPrefix + p + "/" + region + "/" + name
}
func ExecutionKey(p, region, name string) string {
	return ExecutionsPrefix + p + "/" + region + "/" + name
}

// ExecutionRecord is a stored execution with its tasks.
type ExecutionRecord struct {
	Execution apis.Execution `json:"execution"`
	Tasks     []apis.Task    `json:"tasks"`
	// Node is the node that claimed the execution to run it ("" until one
	// does); only it writes the tasks.
	Node string `json:"node,omitempty"`
	// CancelRequested asks the running node to stop the tasks.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Done is set once the execution has finished (Completed is True or False).
	Done bool `json:"done,omitempty"`
}
