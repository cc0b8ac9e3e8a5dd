package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime"
)

const (
	probeInterval = 50 * time.Millisecond
	proxyCheck    = 150 * time.Millisecond // see probeOnce
	lineMax       = 64 << 10               // longer lines are split
	drainTimeout  = 2 * time.Second        // output still coming after the exit
	engineTimeout = 30 * time.Second       // bounds engine calls made on our own
	killWait      = time.Minute            // bounds the wait for the exit after SIGKILL
)

// instance is one container.
type instance struct {
	r        *Runtime
	id       string // Usher's instance ID
	cid      string // the container's ID
	addr     string
	grace    time.Duration
	memory   string // the memory limit, for out-of-memory errors
	service  string
	revision string
	key      string // runtime.InstanceSpec.Key
	pid      int    // the container's main process, as the host sees it (0: unknown)
	attached client.HijackedResponse

	pumped chan struct{} // closed when the output is drained
	done   chan struct{}
	err    error // set before done is closed
	rmErr  error // set before done is closed: the container could not be removed

	stopped  atomic.Bool
	stopOnce sync.Once

	exited bool // the container was seen to exit; guarded by r.mu

	tail runtime.OutputTail // last output lines, for startup errors

	// filesDir holds the instance's secret files on the host ("": none);
	// removed with the container.
	filesDir string
}

// launch creates, attaches to and starts the container of an instance. On
// error nothing is left on the engine.
func (r *Runtime) launch(ctx context.Context, spec runtime.InstanceSpec, id string, res container.Resources) (*instance, error) {
	filesDir, filesDirs, err := r.writeVolumeFiles(spec.Volumes, id) // secretfiles.go
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", id, err)
	}
	launched := false
	defer func() {
		if !launched {
			removeVolumeFiles(filesDir)
		}
	}()
	cfg, hc := r.containerConfigs(spec, id, res, filesDirs)
	name := containerName(spec.Revision, id)
	created, err := r.c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       name,
		Config:     cfg,
		HostConfig: hc,
	})
	if err != nil {
		// The engine may have created it before ctx ended.
		r.remove(name)
		return nil, fmt.Errorf("instance %s: create container from image %q: %w", id, spec.Image, err)
	}
	cid := created.ID

	att, err := r.c.ContainerAttach(ctx, cid, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		r.remove(cid)
		return nil, fmt.Errorf("instance %s: attach to container: %w", id, err)
	}
	in := &instance{
		r:        r,
		id:       id,
		cid:      cid,
		grace:    spec.StopGrace,
		memory:   spec.Memory,
		service:  spec.Service,
		revision: spec.Revision,
		key:      spec.Key,
		attached: att.HijackedResponse,
		pumped:   make(chan struct{}),
		done:     make(chan struct{}),
		filesDir: filesDir,
	}
	logs := spec.Logs
	if logs == nil {
		logs = io.Discard
	}
	go in.pump(att.Reader, logs, spec.ErrLogs)

	// From here until its address is registered (or the launch failed), the
	// container may call the host from an address InstanceAt does not know:
	// WaitInstanceAt waits for this.
	settled := r.launching()
	defer settled()
	if _, err := r.c.ContainerStart(ctx, cid, client.ContainerStartOptions{}); err != nil {
		err = fmt.Errorf("instance %s: start container from image %q: %w", id, spec.Image, err)
		// A missing executable leaves the container "exited" with 126/127.
		if st := r.state(cid); st != nil && st.ExitCode != 0 {
			err = fmt.Errorf("%w (%w)", err, &runtime.ExitError{Code: st.ExitCode})
		}
		in.attached.Close()
		<-in.pumped
		r.remove(cid)
		return nil, err
	}
	launched = true // wait removes the files with the container
	go in.wait()

	insp, err := r.c.ContainerInspect(ctx, cid, client.ContainerInspectOptions{})
	if err != nil {
		settled()
		return nil, in.abort(fmt.Errorf("instance %s: inspect container: %w", id, err))
	}
	in.addr = r.addrOf(insp.Container)
	if st := insp.Container.State; st != nil {
		in.pid = st.Pid
	}
	if in.addr == "" && insp.Container.State != nil && insp.Container.State.Running {
		settled()
		return nil, in.abort(fmt.Errorf("instance %s: container has no address on network %q", id, r.network))
	}
	if ap, err := netip.ParseAddrPort(in.addr); err == nil && r.direct {
		// Not if wait already saw the container exit: its address may be
		// another container's by now.
		r.register(ap.Addr(), in)
	}
	return in, nil
}

// addrOf is where Usher reaches the container's port, or "" if unknown (the
// container is not running).
func (r *Runtime) addrOf(c container.InspectResponse) string {
	ns := c.NetworkSettings
	if ns == nil {
		return ""
	}
	if r.direct {
		ep := ns.Networks[r.network]
		if ep == nil || !ep.IPAddress.IsValid() {
			return ""
		}
		return netip.AddrPortFrom(ep.IPAddress, ContainerPort).String()
	}
	for _, b := range ns.Ports[containerPort] {
		if b.HostPort != "" && (!b.HostIP.IsValid() || b.HostIP == r.publishIP || b.HostIP.IsUnspecified()) {
			return net.JoinHostPort(r.dialIP.String(), b.HostPort)
		}
	}
	return ""
}

// state returns the container's state, or nil.
func (r *Runtime) state(cid string) *container.State {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	insp, err := r.c.ContainerInspect(ctx, cid, client.ContainerInspectOptions{})
	if err != nil {
		return nil
	}
	return insp.Container.State
}

// remove force-removes a container by ID or name, on its own context: it
// runs after failures, when the caller's context may have ended.
func (r *Runtime) remove(ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	_, err := r.c.ContainerRemove(ctx, ref, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if cerrdefs.IsConflict(err) { // already being removed (by Cleanup)
		err = r.waitRemoved(ctx, ref)
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// signal sends sig to the container's main process; errors (typically: it
// is not running any more) are left to wait to sort out.
func (in *instance) signal(sig string) {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	in.r.c.ContainerKill(ctx, in.cid, client.ContainerKillOptions{Signal: sig})
}

// wait waits for the container to exit, drains its output, removes it and
// then closes done.
func (in *instance) wait() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := in.r.c.ContainerWait(ctx, in.cid, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var (
		status int64
		werr   error
	)
	select {
	case res := <-w.Result:
		status = res.StatusCode
		if res.Error != nil && res.Error.Message != "" {
			werr = errors.New(res.Error.Message)
		}
	case err := <-w.Error:
		// The engine went away or forgot the container: make sure it is
		// not left running.
		werr = err
		in.signal("SIGKILL")
	}
	// The engine releases the container's address as it exits: forget it
	// now, not once the output is drained and the container removed.
	in.r.unregister(in)

	t := time.NewTimer(drainTimeout)
	select {
	case <-in.pumped:
	case <-t.C: // the attach stream did not end with the container
	}
	t.Stop()
	in.attached.Close()
	<-in.pumped

	var oom bool
	if werr == nil {
		if st := in.r.state(in.cid); st != nil {
			oom = st.OOMKilled
		}
	}
	removeVolumeFiles(in.filesDir)
	if err := in.r.remove(in.cid); err != nil {
		in.rmErr = fmt.Errorf("instance %s: container %s exited but could not be removed: %w", in.id, shortID(in.cid), err)
	}

	x := &runtime.ExitError{Code: int(status), Stopped: in.stopped.Load()}
	// The engine reports death by signal N as status 128+N; only trust that
	// reading when Usher sent signals or the kernel killed for memory.
	if (x.Stopped || oom) && status > 128 && status < 128+65 {
		x.Code, x.Signal = -1, syscall.Signal(status-128).String()
	}
	switch {
	case werr != nil:
		in.err = fmt.Errorf("instance %s: waiting for container %s: %w", in.id, shortID(in.cid), werr)
	case oom:
		in.err = fmt.Errorf("instance %s ran out of memory (limit %s) and was killed: %w", in.id, orNone(in.memory), x)
	default:
		in.err = fmt.Errorf("instance %s exited: %w", in.id, x)
	}
	close(in.done)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// pump demultiplexes the container's stdout and stderr and copies them to w
// (stderr to errW when set) one whole line per Write, remembering the last lines for error messages.
// It drains r even when w fails.
func (in *instance) pump(r io.Reader, w, errW io.Writer) {
	defer close(in.pumped)
	s := &sink{w: w, in: in}
	es := s
	if errW != nil {
		es = &sink{w: errW, in: in}
	}
	out, errOut := &lineSplitter{s: s}, &lineSplitter{s: es}
	stdcopy.StdCopy(out, errOut, r)
	out.flush()
	errOut.flush()
}

// sink is where a stream's lines go (one sink for both unless stderr is
// kept apart), from the single pump goroutine.
type sink struct {
	w      io.Writer
	failed bool
	in     *instance
}

func (s *sink) line(p []byte) {
	if !s.failed {
		if _, err := s.w.Write(p); err != nil {
			s.failed = true
		}
	}
	s.in.remember(p)
}

// lineSplitter buffers one stream until whole lines are available.
type lineSplitter struct {
	s   *sink
	buf []byte
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	rest := l.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i >= 0 && i < lineMax {
			l.emit(rest[:i+1])
			rest = rest[i+1:]
		} else if len(rest) >= lineMax {
			l.emit(append(rest[:lineMax:lineMax], '\n'))
			rest = rest[lineMax:]
		} else {
			break
		}
	}
	l.buf = append(l.buf[:0], rest...) // memmove: rest is within l.buf
	return len(p), nil
}

func (l *lineSplitter) emit(line []byte) {
	l.s.line(append([]byte(nil), line...))
}

func (l *lineSplitter) flush() {
	if len(l.buf) > 0 {
		l.emit(append(l.buf, '\n'))
		l.buf = nil
	}
}

func (in *instance) remember(line []byte) { in.tail.Remember(line) }

func (in *instance) lastOutput() string { return in.tail.String() }

// probe waits until the instance accepts TCP connections. On failure the
// container is killed and removed when probe returns.
func (in *instance) probe(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	// Through a published port, one connection the engine's proxy held open
	// is not proof on a loaded host (the proxy may be slow to learn the
	// container refused it): two in a row are.
	need, ok := 1, 0
	if !in.r.direct {
		need = 2
	}
	for {
		if in.addr != "" && in.probeOnce(ctx) {
			if ok++; ok >= need {
				return nil
			}
		} else {
			ok = 0
		}
		select {
		case <-in.done:
			var x *runtime.ExitError
			if errors.As(in.err, &x) {
				return fmt.Errorf("instance %s exited during startup: %w%s", in.id, x, in.lastOutput())
			}
			return fmt.Errorf("%w during startup%s", in.err, in.lastOutput())
		case <-deadline.C:
			return in.abort(fmt.Errorf("instance %s did not listen on port %d within %v: %w%s",
				in.id, ContainerPort, timeout, runtime.ErrStartupTimeout, in.lastOutput()))
		case <-ctx.Done():
			return in.abort(fmt.Errorf("instance %s: startup aborted: %w%s", in.id, ctx.Err(), in.lastOutput()))
		case <-tick.C:
		}
	}
}

// probeOnce tells whether the instance accepts a TCP connection. Through a
// published port, the engine's proxy accepts connections even when nothing
// listens in the container, and closes them at once: a connection that stays
// open for a moment (or that the app speaks on) is one the app accepted.
func (in *instance) probeOnce(ctx context.Context) bool {
	dctx, cancel := context.WithTimeout(ctx, probeInterval)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", in.addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if in.r.direct {
		return true
	}
	c.SetReadDeadline(time.Now().Add(proxyCheck))
	var b [1]byte
	if _, err = c.Read(b[:]); err == nil {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// abort kills the instance, waits until its container is gone and returns
// err.
func (in *instance) abort(err error) error {
	in.kill()
	return err
}

// kill SIGKILLs the container and waits for the exit (and removal).
func (in *instance) kill() {
	select {
	case <-in.done:
		return
	default:
	}
	in.signal("SIGKILL")
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-in.done:
	case <-t.C: // the engine does not answer; Cleanup will deal with it
	}
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

// Stop implements runtime.Instance. Besides ctx.Err(), it returns an error
// if it stopped the container but could not remove it.
func (in *instance) Stop(ctx context.Context) error {
	select {
	case <-in.done:
		return nil
	default:
	}
	in.stopOnce.Do(func() {
		in.stopped.Store(true)
		go func() {
			in.signal("SIGTERM")
			t := time.NewTimer(in.grace)
			defer t.Stop()
			select {
			case <-in.done:
			case <-t.C:
				in.signal("SIGKILL")
			}
		}()
	})
	select {
	case <-in.done:
		return in.rmErr
	case <-ctx.Done():
		in.kill()
		return ctx.Err()
	}
}

// Usage implements runtime.UsageReporter: the container's cgroup, found
// through its main process (a local engine only; Docker Desktop's or a
// remote engine's processes are not on this host).
func (in *instance) Usage() (runtime.Usage, error) {
	if in.pid <= 0 {
		return runtime.Usage{}, errors.New("container process unknown")
	}
	dirs, err := runtime.CgroupDirsOf(in.pid)
	if err != nil {
		return runtime.Usage{}, err
	}
	select {
	case <-in.done:
		return runtime.Usage{}, errors.New("container exited") // its pid may be another's now
	default:
	}
	return runtime.CgroupUsage(dirs...)
}
