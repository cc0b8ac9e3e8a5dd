// Package runtime defines how Usher starts and stops the instances of a
// service revision, and the Cloud Run container contract every runtime must
// honour.
//
// A Runtime turns an InstanceSpec into a running Instance that listens for
// HTTP on the port named by $PORT. The embedded default is the process runtime
// (package process), which runs file:///ABS/PATH executables; other runtimes
// (for example Docker) implement the same interface and must pass the
// conformance suite in package runtimetest.
//
// What a runtime must never do:
//
//   - leak Usher's own environment into an instance: the environment of an
//     instance is exactly ContractEnv, a minimal base plus what the spec asks
//     for, never os.Environ (it carries Usher's secrets);
//   - let a user override the variables Cloud Run reserves (see ValidateEnv);
//   - return from Start before the instance accepts TCP connections, or leave
//     a process running after Start failed or Stop returned;
//   - write to InstanceSpec.Logs anything but whole lines, or after Done.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by InstanceSpec.WithDefaults.
const (
	DefaultStartupTimeout = 60 * time.Second
	DefaultStopGrace      = 10 * time.Second
)

// BasePath is the PATH an instance gets unless the user sets its own.
const BasePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RevisionKey names a revision uniquely across projects and regions:
// InstanceSpec.Key.
func RevisionKey(project, region, name string) string {
	return project + "/" + region + "/" + name
}

// ExecutionKey names a job's execution uniquely across projects and
// regions, apart from every revision: InstanceSpec.Key of its tasks.
// Revisions and executions are named in separate namespaces (a service
// "web" may have a revision "web-abcde", a job "web" an execution of that
// name), and the metadata server answers a key's instances as the identity
// registered under it: a shared key would answer one's instances with the
// other's account. Revision names are DNS labels, so no RevisionKey has
// this one's extra "/".
func ExecutionKey(project, region, name string) string {
	return project + "/" + region + "/executions/" + name
}

// InstanceSpec describes one instance of a service revision.
type InstanceSpec struct {
	Image   string   // "file:///abs/path" for the process runtime
	Command []string // overrides the image's entrypoint (Cloud Run --command)
	Args    []string // arguments (Cloud Run --args)
	// WorkingDir, if set, is the absolute directory the program starts in:
	// in the container, in the process sandbox's file system, or on the
	// host for unsandboxed processes (else the image's, /tmp in the
	// sandbox, a fresh directory for unsandboxed processes).
	WorkingDir string
	// Volumes are in-memory file systems (tmpfs) the program finds mounted,
	// each instance its own, empty at start.
	Volumes []Volume
	Env     []EnvVar // user env, in order; see ValidateEnv

	// Service, Revision and Configuration become K_SERVICE, K_REVISION and
	// K_CONFIGURATION.
	Service, Revision, Configuration string

	// Key names the revision uniquely across projects and regions (the
	// pool's key, PROJECT/REGION/REVISION, made by RevisionKey; for a
	// job's task, its execution's, made by ExecutionKey). The runtime keeps it with the
	// instance and reports it when asked which instance a connection comes
	// from (the metadata server's identity). Not shown to the instance.
	Key string

	// ExtraEnv is set by Usher itself (e.g. GCE_METADATA_HOST) after the user
	// env; it wins over user env.
	ExtraEnv []EnvVar

	StartupTimeout time.Duration // default 60s: time to start listening on PORT
	StopGrace      time.Duration // default 10s: SIGTERM → SIGKILL

	// CPU and Memory are the revision's resource limits, in the notation of
	// Cloud Run's resources.limits (Kubernetes quantities): CPU like "1",
	// "2", "0.5" or "500m" (see ParseCPU), Memory like "512Mi", "1Gi" or
	// "256M" (see ParseMemory). Empty means the runtime's default. Runtimes
	// that enforce limits (Docker, the process sandbox where the machine
	// has cgroups) must reject invalid values in Start; unsandboxed
	// processes cannot be limited and ignore them.
	CPU, Memory string

	// RunToCompletion marks a task of a job rather than an instance of a
	// service: Start returns once the process (or container) is launched,
	// without waiting for it to listen on PORT; the caller waits on Done.
	RunToCompletion bool

	// Logs receives the instance's stdout (and its stderr when ErrLogs is
	// nil), one whole line (ending in "\n") per Write call, from a single
	// goroutine. It may be nil (discard). A slow writer slows the instance
	// down.
	Logs io.Writer
	// ErrLogs, if set, receives the instance's stderr the same way (from a
	// goroutine of its own), so the two streams stay apart.
	ErrLogs io.Writer
}

// WithDefaults returns s with zero or negative durations replaced by the
// defaults.
func (s InstanceSpec) WithDefaults() InstanceSpec {
	if s.StartupTimeout <= 0 {
		s.StartupTimeout = DefaultStartupTimeout
	}
	if s.StopGrace <= 0 {
		s.StopGrace = DefaultStopGrace
	}
	return s
}

// Volume is an in-memory volume: a tmpfs at Path (absolute, clean; checked
// by package apis), at most SizeBytes large (0: the runtime's default,
// half the memory of the machine or container). What it holds counts as
// the instance's memory where limits apply.
//
// With Files set (a secret volume), it holds those files and nothing
// else, and the instance can only read it. Runtimes never write Files to
// a persistent disk: they live in memory (a tmpfs) and go with the
// instance.
type Volume struct {
	Path      string
	SizeBytes int64
	Files     []VolumeFile
}

// VolumeFile is one file of a read-only volume: Name is a plain file name
// (no "/"; checked by package apis).
type VolumeFile struct {
	Name string
	Data []byte
	Mode uint32 // permission bits
}

// EnvVar is one environment variable.
type EnvVar struct{ Name, Value string }

// Runtime starts instances.
type Runtime interface {
	// Start launches an instance and returns once it accepts TCP connections
	// on its PORT (the startup probe; at once for spec.RunToCompletion), or an error if it exits first, or the
	// timeout/ctx ends (then it is killed, and gone when Start returns).
	//
	// Start validates spec.Env with ValidateEnv. A startup failure wraps an
	// *ExitError if the instance exited, ErrStartupTimeout on timeout, or
	// ctx.Err() if ctx ended; its message includes the last lines of output.
	// ctx only bounds startup, not the life of the instance.
	Start(ctx context.Context, spec InstanceSpec) (Instance, error)
}

// Instance is a running (or exited) instance.
type Instance interface {
	ID() string            // short unique id
	Addr() string          // host:port to proxy to, e.g. 127.0.0.1:41234
	Done() <-chan struct{} // closed when the instance has exited (for any reason)

	// Err says why the instance exited; valid after Done, and then never nil.
	// It wraps an *ExitError when the exit status is known; after Stop,
	// errors.Is(err, ErrStopped) holds.
	Err() error

	// Stop sends SIGTERM, then SIGKILL after StopGrace, and waits for the
	// exit. If ctx ends first it sends SIGKILL at once, waits for the exit and
	// returns ctx.Err(). It is idempotent and safe for concurrent use;
	// stopping an instance that already exited returns nil.
	Stop(ctx context.Context) error
}

// InstanceDialer is implemented by instances that are not reached by
// dialing Addr from the host, such as sandboxed process instances whose port
// exists only in their own network namespace: Addr is then a unique key, and
// DialInstance connects to the instance's port.
type InstanceDialer interface {
	DialInstance(ctx context.Context) (net.Conn, error)
}

var (
	// ErrReservedEnv is wrapped by ValidateEnv errors for variables the
	// container contract reserves.
	ErrReservedEnv = errors.New("reserved by the Cloud Run container contract (Usher sets it)")

	// ErrStartupTimeout is wrapped by Start errors when the instance did not
	// listen on PORT within StartupTimeout.
	ErrStartupTimeout = errors.New("startup timeout")

	// ErrStopped matches (errors.Is) the Err of an instance that exited
	// because of Stop.
	ErrStopped = errors.New("instance stopped")
)

// ExitError describes how an instance's main process ended.
type ExitError struct {
	Code    int    // exit code, or -1 if killed by a signal
	Signal  string // signal name (e.g. "killed") if killed by a signal
	Stopped bool   // the exit was requested by Stop
}

func (e *ExitError) Error() string {
	var s string
	if e.Signal != "" {
		s = "signal: " + e.Signal
	} else {
		s = "exit status " + strconv.Itoa(e.Code)
	}
	if e.Stopped {
		s += " (stopped)"
	}
	return s
}

// Is makes errors.Is(e, ErrStopped) true for stopped instances.
func (e *ExitError) Is(target error) bool { return target == ErrStopped && e.Stopped }

// reserved are the variables Cloud Run sets and users may not.
var reserved = map[string]bool{
	"PORT":            true,
	"K_SERVICE":       true,
	"K_REVISION":      true,
	"K_CONFIGURATION": true,
}

// ValidateEnv checks user env: names must be non-empty, match
// [-._a-zA-Z][-._a-zA-Z0-9]* (the Knative rule) and appear once; values must
// not contain NUL; and PORT, K_SERVICE, K_REVISION and K_CONFIGURATION are
// refused with an error wrapping ErrReservedEnv. All problems are reported.
func ValidateEnv(env []EnvVar) error {
	var errs []error
	seen := make(map[string]bool, len(env))
	for i, e := range env {
		switch {
		case e.Name == "":
			errs = append(errs, fmt.Errorf("env var #%d: name is empty", i+1))
			continue
		case !validName(e.Name):
			errs = append(errs, fmt.Errorf("env var %q: invalid name: must start with a letter, '_', '-' or '.' and contain only letters, digits, '_', '-' and '.'", e.Name))
			continue
		case reserved[e.Name]:
			errs = append(errs, fmt.Errorf("env var %s: %w", e.Name, ErrReservedEnv))
		case seen[e.Name]:
			errs = append(errs, fmt.Errorf("env var %s: set more than once", e.Name))
		}
		seen[e.Name] = true
		if strings.IndexByte(e.Value, 0) >= 0 {
			errs = append(errs, fmt.Errorf("env var %s: value contains a NUL byte", e.Name))
		}
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-', c == '.':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// ContractEnv builds the environment of an instance listening on port, as
// "NAME=VALUE" strings: a minimal base (PATH, HOME=/tmp), then spec.Env, then
// PORT, K_SERVICE, K_REVISION and K_CONFIGURATION, then spec.ExtraEnv. A later
// setting of a name replaces an earlier one (keeping its position), so users
// may override PATH and HOME and ExtraEnv wins over everything. It never reads
// the environment of the calling process.
func ContractEnv(spec InstanceSpec, port int) []string {
	var names []string
	vals := map[string]string{}
	set := func(name, value string) {
		if _, ok := vals[name]; !ok {
			names = append(names, name)
		}
		vals[name] = value
	}
	set("PATH", BasePath)
	set("HOME", "/tmp")
	for _, e := range spec.Env {
		set(e.Name, e.Value)
	}
	set("PORT", strconv.Itoa(port))
	set("K_SERVICE", spec.Service)
	set("K_REVISION", spec.Revision)
	set("K_CONFIGURATION", spec.Configuration)
	for _, e := range spec.ExtraEnv {
		set(e.Name, e.Value)
	}
	env := make([]string, len(names))
	for i, n := range names {
		env[i] = n + "=" + vals[n]
	}
	return env
}

// ParseCPU parses a CPU limit, as Cloud Run's resources.limits.cpu: a
// positive decimal number of CPUs ("1", "2", "0.5") or of thousandths of a
// CPU with the suffix "m" ("500m"). It returns thousandths of a CPU
// (millicpus); finer precision than 1m is refused.
func ParseCPU(s string) (int64, error) {
	num, mult := s, int64(1000)
	if n, ok := strings.CutSuffix(s, "m"); ok {
		num, mult = n, 1
	}
	v, err := parseQuantity(num, mult)
	if err != nil {
		return 0, fmt.Errorf("cpu limit %q: %w; want a number of CPUs like 1, 2 or 0.5, or millicpus like 500m", s, err)
	}
	return v, nil
}

// memorySuffixes are the Kubernetes quantity suffixes, binary and decimal.
var memorySuffixes = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
	{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
}

// ParseMemory parses a memory limit, as Cloud Run's resources.limits.memory:
// a positive decimal number of bytes with an optional suffix, binary (Ki, Mi,
// Gi, Ti, Pi, Ei) or decimal (k, M, G, T, P, E): "512Mi", "1Gi", "1.5Gi",
// "256M", "1048576". It returns bytes; fractions of a byte are refused.
func ParseMemory(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, m := range memorySuffixes {
		if n, ok := strings.CutSuffix(s, m.suffix); ok {
			num, mult = n, m.mult
			break
		}
	}
	v, err := parseQuantity(num, mult)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q: %w; want bytes with an optional suffix, like 512Mi, 1Gi or 256M", s, err)
	}
	return v, nil
}

// parseQuantity returns num*mult for a plain positive decimal num (digits and
// at most one '.'), which must be a whole number that fits an int64.
func parseQuantity(num string, mult int64) (int64, error) {
	if num == "" || strings.Trim(num, "0123456789.") != "" || strings.Count(num, ".") > 1 || num == "." {
		return 0, errors.New("not a positive decimal number")
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errors.New("not a positive decimal number")
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	switch {
	case r.Sign() <= 0:
		return 0, errors.New("must be greater than zero")
	case !r.IsInt():
		return 0, errors.New("too precise")
	case !r.Num().IsInt64():
		return 0, errors.New("too large")
	}
	return r.Num().Int64(), nil
}
