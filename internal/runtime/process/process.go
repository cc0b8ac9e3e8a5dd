// Package process is Usher's embedded default runtime: the image
// file:///ABS/PATH runs that host executable as an instance, following the
// Cloud Run container contract as far as a plain process can.
//
// Each instance gets a free loopback port in $PORT, the environment built by
// runtime.ContractEnv (never Usher's own environment), a fresh working
// directory under Config.WorkDir (removed when it exits), and its own process
// group. It is ready when 127.0.0.1:$PORT accepts a TCP connection. Stopping
// it sends SIGTERM to the group, then SIGKILL after the grace period; when the
// main process exits by itself, whatever is left of its group is killed too,
// as when a container stops.
//
// What it must never do: pass Usher's environment, file descriptors or
// working directory to an instance, or leave an instance's processes running
// after Start failed or Stop returned.
//
// With Config.Sandbox (what `usher serve` uses on Linux: as root, or in a
// user namespace otherwise) every instance is isolated as Sandbox describes: its port exists
// only in its own network namespace, Addr is then a key for DialContext,
// and the host's files, other instances and the host's loopback are out of
// reach. The rest of this comment is about unsandboxed instances.
//
// Caveats. Without a sandbox, instances run as Usher's user with full
// access to the host. On Linux instances are started with Pdeathsig SIGKILL
// (from a dedicated, never-exiting OS thread, since the signal is tied to the
// thread that forked), so the main process of an instance dies with Usher even
// if Usher is SIGKILLed; on other systems it does not. Pdeathsig reaches only
// the main process: children it started survive a killed Usher, as do
// processes that leave the instance's process group, and per-instance working
// directories are left behind. The port is picked by listening on
// 127.0.0.1:0 and closing, so another host process could take it in between;
// the probe would then see that process instead.
package process

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/runtime"
)

// Config configures the process runtime.
type Config struct {
	// WorkDir is the root for per-instance working directories;
	// default os.TempDir().
	WorkDir string

	// Sandbox, if set, isolates every instance (see Sandbox). Where the
	// machine cannot (ErrNoSandbox), Start refuses every instance: the
	// runtime never falls back to running them unisolated.
	Sandbox *Sandbox

	// WarnUnsandboxed makes every unsandboxed instance say in its logs
	// that it is not isolated (the operator chose to run it so).
	WarnUnsandboxed bool
}

// Runtime runs file:///ABS/PATH executables as instances.
type Runtime struct {
	cfg Config

	sbErr  error   // why cfg.Sandbox cannot be had
	egress *egress // with Sandbox.Egress; released by Close
	// userNS: Usher is not root, instances get a user namespace, and
	// egress (Sandbox.Egress) is pasta's, found at this path.
	userNS    bool
	pasta     string
	egressErr error // why instances have no egress although asked for
	// Where instances' cgroups go; nil (and cgErr says why) when the
	// machine has none for Usher: then no limits are enforced.
	cgroups *cgroupSet
	cgErr   error

	freePort func() (int, error) // a loopback port free now; tests replace it

	mu    sync.Mutex
	ports map[int]bool // ports of live instances
	// Unsandboxed instances by their main process's pid (their process
	// group), and the launches that have not recorded theirs yet.
	byGroup  map[int]*instance
	launches runtime.Launches
	// Sandboxed instances by the loopback source address their relayed
	// connections come from (also the host part of their Addr).
	bySrc   map[netip.Addr]*instance
	nextSrc netip.Addr
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a process runtime.
func New(cfg Config) *Runtime {
	if cfg.WorkDir == "" {
		cfg.WorkDir = os.TempDir()
	}
	r := &Runtime{cfg: cfg, freePort: kernelFreePort, ports: map[int]bool{}, byGroup: map[int]*instance{}, bySrc: map[netip.Addr]*instance{}, nextSrc: sourceNet.Addr()}
	if sb := cfg.Sandbox; sb != nil {
		c := *sb
		if c.UID == 0 && c.GID == 0 {
			c.UID, c.GID = 65534, 65534
		}
		if c.Pids <= 0 {
			c.Pids = DefaultPids
		}
		if len(c.ReachEnv) == 0 {
			c.ReachEnv = []string{"GCE_METADATA_HOST"}
		}
		c.Hide = absPaths(c.Hide)
		r.cfg.Sandbox = &c
		r.sbErr = sandboxAvailable()
		if r.sbErr == nil && c.UID == 0 {
			r.sbErr = fmt.Errorf("%w: instances may not run as root (uid 0)", ErrNoSandbox)
		}
		if r.sbErr == nil {
			r.cgroups, r.cgErr = findCgroups()
		}
		r.userNS = r.sbErr == nil && os.Geteuid() != 0
		if r.userNS && c.Egress {
			// Less egress is less reach, not less isolation: without
			// pasta, instances run with none, and Egress says why.
			var err error
			if r.pasta, err = exec.LookPath("pasta"); err != nil {
				c.Egress = false
				r.egressErr = fmt.Errorf("instance egress without root needs pasta (Debian package passt): %w", err)
			}
		}
		if r.sbErr == nil && c.Egress && !r.userNS {
			e, err := acquireEgress()
			if err != nil {
				r.sbErr = fmt.Errorf("%w: instance egress: %v (--instance-egress=none runs instances without it)", ErrNoSandbox, err)
			}
			r.egress = e
		}
	}
	return r
}

// Limits says why sandboxed instances get no resource limits (no cgroups
// for Usher here), or nil when they do.
func (r *Runtime) Limits() error {
	if r.cfg.Sandbox == nil || r.sbErr != nil {
		return errors.New("instances are not sandboxed")
	}
	return r.cgErr
}

// Egress reports whether sandboxed instances reach other hosts, and why
// not when Sandbox.Egress asked for it.
func (r *Runtime) Egress() (bool, error) {
	if r.cfg.Sandbox == nil || r.sbErr != nil {
		return false, r.sbErr
	}
	return r.cfg.Sandbox.Egress, r.egressErr
}

// Close releases what the runtime set up on the host for all its instances
// (the egress rules, when no other runtime of this process uses them). It
// does not stop instances.
func (r *Runtime) Close() error {
	r.mu.Lock()
	e := r.egress
	r.egress = nil
	r.mu.Unlock()
	if e != nil {
		e.release()
	}
	return nil
}

// Sandboxed reports whether instances are isolated; err says why they cannot
// be when a sandbox was asked for (then Start refuses every instance).
func (r *Runtime) Sandboxed() (bool, error) {
	return r.cfg.Sandbox != nil && r.sbErr == nil, r.sbErr
}

// InstanceAt tells the key (runtime.InstanceSpec.Key) of the live
// sandboxed instance whose relayed connections come from ip.
func (r *Runtime) InstanceAt(ip netip.Addr) (key string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.bySrc[ip.Unmap()]
	if !ok {
		return "", false
	}
	return in.key, true
}

// WaitInstanceOfGroup tells the key (runtime.InstanceSpec.Key) of the live
// unsandboxed instance whose main process is pgid (it leads its own process
// group). An instance may call out from its first instruction, a moment
// before Usher has recorded it: when no instance has pgid, it waits for
// every launch in progress at the time of the call, then looks again. It
// returns false when ctx ends first.
func (r *Runtime) WaitInstanceOfGroup(ctx context.Context, pgid int) (key string, ok bool) {
	return runtime.Lookup(ctx, &r.launches, func() (string, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if in := r.byGroup[pgid]; in != nil {
			return in.key, true
		}
		return "", false
	})
}

// DialContext connects to an instance's Addr: inside its network namespace
// for a sandboxed instance, directly otherwise. An address in the sandbox
// range that names no live instance is refused, never dialed on the host.
func (r *Runtime) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil && sourceNet.Contains(ap.Addr().Unmap()) {
		r.mu.Lock()
		in := r.bySrc[ap.Addr().Unmap()]
		r.mu.Unlock()
		if in == nil || in.addr != addr {
			return nil, fmt.Errorf("dial %s: no such sandboxed instance", addr)
		}
		return in.dial(ctx)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// allocSrc reserves a source address for a sandboxed instance.
func (r *Runtime) allocSrcLocked(in *instance) (netip.Addr, error) {
	for range 1 << 16 {
		a := r.nextSrc.Next()
		if !sourceNet.Contains(a) || a.As4()[3] == 255 {
			a = sourceNet.Addr().Next()
		}
		r.nextSrc = a
		if _, used := r.bySrc[a]; !used {
			r.bySrc[a] = in
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("no free sandbox address")
}

const (
	probeInterval     = 50 * time.Millisecond
	fastProbeInterval = 5 * time.Millisecond // for the first fastProbes
	fastProbes        = 40
	lineMax           = 64 << 10 // longer lines are split
	drainTimeout      = 2 * time.Second
)

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, spec runtime.InstanceSpec) (runtime.Instance, error) {
	spec = spec.WithDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := runtime.ValidateEnv(spec.Env); err != nil {
		return nil, err
	}
	if r.cfg.Sandbox != nil && r.sbErr != nil {
		return nil, fmt.Errorf("refusing to run %s unisolated: %w", spec.Image, r.sbErr)
	}
	exe, err := imagePath(spec.Image)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		id, err := newID()
		if err != nil {
			return nil, err
		}
		port, err := r.pickPort()
		if err != nil {
			return nil, err
		}
		in, err := r.launch(spec, exe, id, port)
		if err != nil {
			r.releasePort(port)
			return nil, err
		}
		go func() {
			<-in.done
			r.releasePort(port)
		}()
		if spec.RunToCompletion {
			return in, nil
		}
		err = in.probe(ctx, spec.StartupTimeout)
		if r.cfg.Sandbox != nil {
			// The instance has its own network namespace: nobody else
			// can hold its port.
			if err != nil {
				return nil, err
			}
			return in, nil
		}
		// Unsandboxed, the port is free when picked but another program
		// on the machine can take it before the instance binds it. Then
		// the instance dies failing to bind, or, worse, the probe reached
		// the other program: either way a fresh port is tried.
		lost := false
		switch {
		case err == nil && !ListensOnPort(in.cmd.Process.Pid, uint16(port)):
			in.kill()
			lost, err = true, fmt.Errorf("instance %s: port %d answered by another program", in.id, port)
		case err != nil && in.exited() && (portTaken(port) || saysPortInUse(in.lastOutput())):
			// The other program may have let the port go again by now
			// (a passing free-port check): the instance's last words
			// tell.
			lost = true
		}
		if !lost && err != nil {
			return nil, err
		}
		if !lost {
			return in, nil
		}
		if attempt == maxPortAttempts {
			return nil, err
		}
	}
}

// maxPortAttempts bounds Start's retries after losing its port to another
// program.
const maxPortAttempts = 3

// saysPortInUse reports whether a program's output says it could not bind
// its port, as Go, C, Python, Java and Node word it.
func saysPortInUse(output string) bool {
	o := strings.ToLower(output)
	return strings.Contains(o, "address already in use") || strings.Contains(o, "eaddrinuse")
}

// portTaken reports whether something else listens on the loopback port.
func portTaken(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// imagePath checks that image is file:// plus the absolute path of an
// existing executable and returns the path. The path is taken literally (no
// percent-decoding).
func imagePath(image string) (string, error) {
	p, ok := strings.CutPrefix(image, "file://")
	if !ok || !filepath.IsAbs(p) {
		return "", fmt.Errorf("image %q: process runtime runs file:///ABS/PATH executables", image)
	}
	p = filepath.Clean(p)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("image %q: %s is not an executable file", image, p)
	}
	return p, nil
}

// lookPath resolves a --command name the way a shell in the instance would:
// names with a slash are used as they are (relative ones against the working
// directory), others are searched in the instance's PATH.
func lookPath(name, pathEnv string) (string, error) {
	if name == "" {
		return "", errors.New("command: empty program name")
	}
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q: not found in PATH %q", name, pathEnv)
}

func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// pickPort returns a free loopback port not used by another live instance.
func (r *Runtime) pickPort() (int, error) {
	for range 10 {
		port, err := r.freePort()
		if err != nil {
			return 0, fmt.Errorf("pick port: %w", err)
		}
		r.mu.Lock()
		if !r.ports[port] {
			r.ports[port] = true
			r.mu.Unlock()
			return port, nil
		}
		r.mu.Unlock()
	}
	return 0, errors.New("pick port: no free port found")
}

// kernelFreePort has the kernel choose a loopback port free at the moment.
func kernelFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *Runtime) releasePort(port int) {
	r.mu.Lock()
	delete(r.ports, port)
	r.mu.Unlock()
}

// instance is a running process.
type instance struct {
	id    string
	addr  string
	grace time.Duration
	cmd   *exec.Cmd
	dir   string

	key string // runtime.InstanceSpec.Key

	// Sandboxed instances only.
	port     int
	src      netip.Addr      // relayed connections' source; Addr's host
	ns       *netns          // its network namespace
	relays   []net.Listener  // inside ns
	status   *os.File        // the init's report of the program's end
	release  func()          // gives src back
	lifeline *os.File        // the init exits when this closes
	link     *egressLink     // its veth pair, with egress
	cgroup   *instanceCgroup // its limits, where cgroups can be had
	ctl      *initControl    // its init's control socket, in a user namespace
	pasta    *exec.Cmd       // its egress, in a user namespace

	done    chan struct{}
	err     error // set before done is closed
	stopped atomic.Bool

	stopOnce sync.Once

	tail runtime.OutputTail // last output lines, for startup errors
}

func (r *Runtime) launch(spec runtime.InstanceSpec, exe, id string, port int) (*instance, error) {
	env := runtime.ContractEnv(spec, port)
	argv := append([]string{exe}, spec.Args...)
	path := exe
	if len(spec.Command) > 0 {
		pathEnv := ""
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				pathEnv = v
			}
		}
		p, err := lookPath(spec.Command[0], pathEnv)
		if err != nil {
			return nil, err
		}
		path = p
		argv = append(append([]string{}, spec.Command...), spec.Args...)
	}

	if r.cfg.Sandbox != nil {
		return r.launchSandboxed(spec, env, path, argv, id, port)
	}
	if len(spec.Volumes) > 0 {
		// No mount namespace to put them in: never start without them.
		return nil, fmt.Errorf("instance %s: in-memory volumes need the process sandbox (or a container image); this runtime runs processes unsandboxed", id)
	}
	if r.cfg.WarnUnsandboxed && spec.Logs != nil {
		fmt.Fprintf(spec.Logs, "usher: instance %s is NOT sandboxed (--unsandboxed-processes): it runs as Usher's user with access to the host\n", id)
	}
	if err := os.MkdirAll(r.cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	dir, err := os.MkdirTemp(r.cfg.WorkDir, "usher-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	out, err := newOutputs(spec)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	run := dir
	if spec.WorkingDir != "" {
		run = spec.WorkingDir // the host's: nothing else is in reach
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    env,
		Dir:    run,
		Stdout: out.stdout, // *os.Files: passed as they are, no copying goroutine
		Stderr: out.stderr,
	}
	setProcAttr(cmd)
	defer r.launches.Begin()() // see WaitInstanceOfGroup
	err = startCmd(cmd)
	out.closeWriters()
	if err != nil {
		out.closeReaders()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("instance %s: start %s: %w", id, path, err)
	}

	in := &instance{
		id:    id,
		key:   spec.Key,
		addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		grace: spec.StopGrace,
		cmd:   cmd,
		dir:   dir,
		done:  make(chan struct{}),
	}
	pid := cmd.Process.Pid
	r.mu.Lock()
	r.byGroup[pid] = in
	r.mu.Unlock()
	go func() {
		<-in.done
		r.mu.Lock()
		if r.byGroup[pid] == in { // the pid may be a newer instance's by now
			delete(r.byGroup, pid)
		}
		r.mu.Unlock()
	}()
	go in.wait(out, in.copyOutputs(out, spec))
	return in, nil
}

// launchSandboxed starts an instance in a sandbox (see Sandbox).
func (r *Runtime) launchSandboxed(spec runtime.InstanceSpec, env []string, path string, argv []string, id string, port int) (*instance, error) {
	imageExe, _ := imagePath(spec.Image)
	sb := r.cfg.Sandbox
	reach := append([]string{}, sb.Reach...)
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if slices.Contains(sb.ReachEnv, name) && val != "" {
			reach = append(reach, val)
		}
	}
	for _, a := range reach {
		if _, p, err := net.SplitHostPort(a); err != nil || p == strconv.Itoa(port) {
			return nil, fmt.Errorf("instance %s: cannot relay %q (port %d is the instance's)", id, a, port)
		}
	}
	lim, err := sandboxLimits(spec, sb.Pids)
	if err != nil {
		return nil, err
	}
	program, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", id, err)
	}
	defer program.Close()
	in := &instance{id: id, key: spec.Key, grace: spec.StopGrace, done: make(chan struct{}), port: port}
	r.mu.Lock()
	src, err := r.allocSrcLocked(in)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	in.src = src
	in.addr = net.JoinHostPort(src.String(), strconv.Itoa(port))
	in.release = func() {
		r.mu.Lock()
		delete(r.bySrc, src)
		r.mu.Unlock()
	}
	fail := func(err error) (*instance, error) {
		in.release()
		return nil, fmt.Errorf("instance %s: %w", id, err)
	}
	out, err := newOutputs(spec)
	if err != nil {
		return fail(err)
	}
	cmd := &exec.Cmd{Stdout: out.stdout, Stderr: out.stderr}
	var uns *userNS
	if r.userNS {
		uns = &userNS{UID: sb.UID, GID: sb.GID}
	}
	cfgW, statusR, ctl, err := sandboxCmd(cmd, program, uns)
	if err != nil {
		out.closeReaders()
		out.closeWriters()
		return fail(err)
	}
	err = startCmd(cmd)
	out.closeWriters()
	closeAfterStart(cmd)
	if err != nil {
		out.closeReaders()
		cfgW.Close()
		statusR.Close()
		if ctl != nil {
			ctl.Close()
		}
		return fail(fmt.Errorf("start sandbox: %w", err))
	}
	in.cmd = cmd
	in.status = statusR
	if ctl != nil {
		in.ctl = &initControl{c: ctl}
	}
	config := initConfig{Args: argv, Env: env, UID: sb.UID, GID: sb.GID, Hide: sb.Hide, Image: imageExe, Dir: spec.WorkingDir, Volumes: spec.Volumes}
	setup := func() error {
		if r.cgroups != nil {
			// Before the init starts the program: all it runs is counted.
			if in.cgroup, err = r.cgroups.create(id, lim); err != nil {
				return err
			}
			if err := in.cgroup.add(cmd.Process.Pid); err != nil {
				return err
			}
		}
		if in.ctl != nil {
			// A user namespace: the init makes the sockets (see
			// initConfig), pasta the egress.
			if sb.Egress {
				if in.pasta, err = startPasta(r.pasta, cmd.Process.Pid); err != nil {
					return err
				}
			}
			config.UserNS, config.Relay, config.Local, config.Port, config.WaitRoute = true, reach, relayLocalAddrs(reach), port, sb.Egress
			if err := json.NewEncoder(cfgW).Encode(config); err != nil {
				return err
			}
			if in.relays, err = in.ctl.relays(len(reach)); err != nil {
				return err
			}
			for i, ln := range in.relays {
				go serveRelay(ln, hostTarget(reach[i]), src)
			}
			return nil
		}
		ns, err := openNetns(cmd.Process.Pid)
		if err != nil {
			return err
		}
		in.ns = ns
		if in.relays, err = ns.relay(reach, relayLocalAddrs(reach), src); err != nil {
			return err
		}
		if r.egress != nil {
			if in.link, err = r.egress.attach(ns, id, r.cfg.Sandbox.EgressPrivate); err != nil {
				return err
			}
		}
		return json.NewEncoder(cfgW).Encode(config)
	}
	serr := setup()
	in.lifeline = cfgW // closed when the instance is gone: see sandboxInit
	go in.wait(out, in.copyOutputs(out, spec))
	if serr != nil {
		in.kill()
		return nil, fmt.Errorf("instance %s: sandbox: %w", id, serr)
	}
	return in, nil
}

// sandboxLimits are the cgroup limits of an instance of spec.
func sandboxLimits(spec runtime.InstanceSpec, pids int64) (limits, error) {
	lim := limits{pids: pids}
	mem := spec.Memory
	if mem == "" {
		mem = DefaultMemory
	}
	b, err := runtime.ParseMemory(mem)
	if err != nil {
		return lim, err
	}
	if b < minMemory {
		return lim, fmt.Errorf("memory limit %q: a sandboxed instance needs at least 6Mi", spec.Memory)
	}
	lim.memory = b
	if spec.CPU != "" {
		if lim.milliCPUs, err = runtime.ParseCPU(spec.CPU); err != nil {
			return lim, err
		}
	}
	return lim, nil
}

var _ runtime.InstanceDialer = (*instance)(nil)

// DialInstance implements runtime.InstanceDialer.
func (in *instance) DialInstance(ctx context.Context) (net.Conn, error) { return in.dial(ctx) }

// dial connects to the instance's port.
func (in *instance) dial(ctx context.Context) (net.Conn, error) {
	if in.ctl != nil {
		return in.ctl.dial(ctx)
	}
	if in.ns != nil {
		return in.ns.dial(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port)))
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", in.addr)
}

// outputs are the pipes of an instance's stdout and stderr: one pipe for
// both unless the spec keeps stderr apart (ErrLogs).
type outputs struct {
	stdout, stderr *os.File // the instance's ends
	readers        []*os.File
}

func newOutputs(spec runtime.InstanceSpec) (*outputs, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	o := &outputs{stdout: w, stderr: w, readers: []*os.File{r}}
	if spec.ErrLogs != nil {
		er, ew, err := os.Pipe()
		if err != nil {
			r.Close()
			w.Close()
			return nil, fmt.Errorf("error output pipe: %w", err)
		}
		o.stderr = ew
		o.readers = append(o.readers, er)
	}
	return o, nil
}

// closeWriters closes the instance's ends, once it holds them.
func (o *outputs) closeWriters() {
	o.stdout.Close()
	if o.stderr != o.stdout {
		o.stderr.Close()
	}
}

func (o *outputs) closeReaders() {
	for _, r := range o.readers {
		r.Close()
	}
}

// copyOutputs copies each pipe to its writer, one goroutine each; the
// channel closes once both are drained.
func (in *instance) copyOutputs(o *outputs, spec runtime.InstanceSpec) <-chan struct{} {
	writers := []io.Writer{spec.Logs, spec.ErrLogs}
	copied := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range o.readers {
		w := writers[i]
		if w == nil {
			w = io.Discard
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.copyLines(r, w)
		}()
	}
	go func() {
		wg.Wait()
		close(copied)
	}()
	return copied
}

// wait reaps the process, kills what is left of its group, drains the output
// and then closes done.
func (in *instance) wait(out *outputs, copied <-chan struct{}) {
	werr := in.cmd.Wait()
	// As when a container stops: nothing of the instance outlives its main
	// process. This also closes the output pipe held by its children.
	killGroup(in.cmd.Process)
	t := time.NewTimer(drainTimeout)
	select {
	case <-copied:
	case <-t.C: // someone escaped the group and still holds the pipe
	}
	t.Stop()
	out.closeReaders()
	<-copied
	if in.dir != "" {
		os.RemoveAll(in.dir)
	}
	for _, ln := range in.relays {
		ln.Close()
	}
	if in.link != nil {
		in.link.remove()
	}
	if in.ctl != nil {
		in.ctl.Close()
	}
	if in.pasta != nil {
		in.pasta.Process.Kill()
		in.pasta.Wait()
	}
	if in.ns != nil {
		in.ns.Close()
	}
	if in.cgroup != nil {
		in.cgroup.remove()
	}
	if in.release != nil {
		in.release()
	}
	if in.lifeline != nil {
		in.lifeline.Close()
	}

	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee) || werr == nil:
		x := exitError(in.cmd.ProcessState)
		if in.status != nil {
			x = sandboxExitError(in.status, in.cmd.ProcessState)
			in.status.Close()
		}
		x.Stopped = in.stopped.Load()
		in.err = fmt.Errorf("instance %s exited: %w", in.id, x)
	default:
		in.err = fmt.Errorf("instance %s: wait: %w", in.id, werr)
	}
	close(in.done)
}

// copyLines copies r to w one whole line per Write, remembering the last
// lines for error messages. It drains r even when w fails.
func (in *instance) copyLines(r io.Reader, w io.Writer) {
	br := bufio.NewReaderSize(r, lineMax)
	var wfailed bool
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line[:len(line):len(line)], '\n')
			}
			if !wfailed {
				if _, werr := w.Write(line); werr != nil {
					wfailed = true
				}
			}
			in.remember(line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (in *instance) remember(line []byte) { in.tail.Remember(line) }

func (in *instance) lastOutput() string { return in.tail.String() }

// probe waits until the instance accepts TCP connections. On failure the
// instance is killed and gone when probe returns.
func (in *instance) probe(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Most programs listen within tens of milliseconds: probing often at
	// first keeps the cold start close to the program's own startup.
	tick := time.NewTimer(fastProbeInterval)
	defer tick.Stop()
	for probes := 1; ; probes++ {
		dctx, cancel := context.WithTimeout(ctx, probeInterval)
		c, err := in.dial(dctx)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-in.done:
			var x *runtime.ExitError
			errors.As(in.err, &x)
			if x != nil {
				return fmt.Errorf("instance %s exited during startup: %w%s", in.id, x, in.lastOutput())
			}
			return fmt.Errorf("%w during startup%s", in.err, in.lastOutput())
		case <-deadline.C:
			in.kill()
			return fmt.Errorf("instance %s did not listen on port %s within %v: %w%s",
				in.id, portOf(in.addr), timeout, runtime.ErrStartupTimeout, in.lastOutput())
		case <-ctx.Done():
			in.kill()
			return fmt.Errorf("instance %s: startup aborted: %w%s", in.id, ctx.Err(), in.lastOutput())
		case <-tick.C:
			if probes < fastProbes {
				tick.Reset(fastProbeInterval)
			} else {
				tick.Reset(probeInterval)
			}
		}
	}
}

// exited reports whether the instance's program has ended.
func (in *instance) exited() bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// kill SIGKILLs the group and waits for the exit.
func (in *instance) kill() {
	select {
	case <-in.done:
	default:
		killGroup(in.cmd.Process)
	}
	<-in.done
}

func (in *instance) ID() string            { return in.id }
func (in *instance) Addr() string          { return in.addr }
func (in *instance) Done() <-chan struct{} { return in.done }

func (in *instance) Err() error {
	select {
	case <-in.done:
		return in.err
	default:
		return nil
	}
}

// Stop implements runtime.Instance.
func (in *instance) Stop(ctx context.Context) error {
	select {
	case <-in.done:
		return nil
	default:
	}
	in.stopOnce.Do(func() {
		in.stopped.Store(true)
		termGroup(in.cmd.Process)
		go func() {
			t := time.NewTimer(in.grace)
			defer t.Stop()
			select {
			case <-in.done:
			case <-t.C:
				killGroup(in.cmd.Process)
			}
		}()
	})
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		in.kill()
		return ctx.Err()
	}
}

// Usage implements runtime.UsageReporter for instances in a cgroup of their
// own (sandboxed, where the machine gives Usher cgroups); an unsandboxed
// instance shares Usher's and reports nothing.
func (in *instance) Usage() (runtime.Usage, error) {
	if in.cgroup == nil {
		return runtime.Usage{}, errors.New("instance has no cgroup of its own")
	}
	return in.cgroup.usage()
}
