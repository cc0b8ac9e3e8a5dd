package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/usher-run/usher/internal/runtime"
)

// How the sandbox is built. Usher starts its own executable
// (/proc/self/exe) as the instance's init, with argv[0] initName, in new
// mount, PID, IPC, UTS and network namespaces (clone flags: nothing runs
// before they exist). While the init waits for its configuration on fd 3,
// Usher enters the new network namespace from a goroutine locked to a
// thread that dies with it, brings lo up and opens the relay listeners
// there; then it writes the configuration. The init makes the mounts,
// drops to the instance's user, starts the program (passed as an open file
// on fd 5, since its path may be hidden in the sandbox) and reports its
// wait status on fd 4 when it ends.

const initName = "usher-sandbox-init"

// initConfig is what Usher tells the init on fd 3.
type initConfig struct {
	Args     []string
	Env      []string
	UID, GID int
	Hide     []string
	Image    string // the image's path on the host, mapped in at the same path
	// Dir is the program's working directory in the sandbox ("": /tmp).
	Dir string
	// Volumes are tmpfs mounts made for the instance.
	Volumes []runtime.Volume

	// In a user namespace (Usher not root), Usher cannot enter the
	// instance's network namespace (that takes CAP_SYS_ADMIN in its own),
	// so the init makes the sockets there and hands them over on fd 6:
	// first the listeners of Relay (lo brought up), then, for each request
	// Usher sends, a connection to 127.0.0.1:Port.
	UserNS    bool
	Relay     []string
	Local     []netip.Addr // see relayLocalAddrs
	Port      int
	WaitRoute bool // egress by pasta: wait for its default route
	Probe     bool // only say that the namespaces can be made
}

// SandboxInit runs the sandbox's init when this process is one, and never
// returns then; otherwise it returns at once. Programs that use a sandboxed
// Runtime call it first thing in main (and tests in TestMain), since the
// init is a re-execution of the program itself.
func SandboxInit() {
	if len(os.Args) == 0 || os.Args[0] != initName {
		return
	}
	code, err := sandboxInit()
	if err != nil {
		fmt.Fprintf(os.Stderr, "usher sandbox: %v\n", err)
	}
	os.Exit(code)
}

func sandboxInit() (int, error) {
	for fd := 3; fd <= 6; fd++ {
		syscall.CloseOnExec(fd) // none of them reaches the program
	}
	cfgFile, statusFile, exe := os.NewFile(3, "config"), os.NewFile(4, "status"), os.NewFile(5, "exe")
	var cfg initConfig
	if err := json.NewDecoder(cfgFile).Decode(&cfg); err != nil {
		return 125, fmt.Errorf("config: %w", err)
	}
	if cfg.Probe {
		return 0, nil
	}
	// Usher holds the other end for the instance's life: when it ends,
	// however Usher died, so does the sandbox. (Pdeathsig alone is not
	// enough: changing credentials below clears it.)
	go func() {
		io.Copy(io.Discard, cfgFile)
		os.Exit(137)
	}()
	// Opened in this mount namespace before /tmp is covered: a bind
	// mount's source must be a mount of the caller's namespace.
	var imageFD *os.File
	if cfg.Image != "" {
		if fd, err := unix.Open(cfg.Image, unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
			imageFD = os.NewFile(uintptr(fd), "image")
		}
	}
	if err := sandboxMounts(cfg.Hide); err != nil {
		return 125, err
	}
	if imageFD != nil {
		mapImage(cfg.Image, imageFD)
		imageFD.Close()
	}
	_ = unix.Sethostname([]byte("localhost"))
	if cfg.UID == 0 {
		return 125, errors.New("refusing to run an instance as root")
	}
	for _, v := range cfg.Volumes {
		if err := mountVolume(v, cfg.UID, cfg.GID); err != nil {
			return 125, err
		}
	}
	dir := "/tmp"
	if cfg.Dir != "" {
		if err := makeWorkingDir(cfg.Dir, cfg.UID, cfg.GID); err != nil {
			return 125, err
		}
		dir = cfg.Dir
	}
	var ctl *net.UnixConn
	if cfg.UserNS {
		var err error
		if ctl, err = initNetwork(cfg); err != nil {
			return 125, err
		}
		// The ambient capabilities Usher gave the init (for the mounts
		// and lo) must not reach the program: without them, exec as a
		// uid other than 0 leaves it none. They belong to this thread,
		// the one that forks the program.
		goruntime.LockOSThread()
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
			return 125, fmt.Errorf("clear ambient capabilities: %w", err)
		}
	} else if err := syscall.Setgroups(nil); err != nil {
		return 125, fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(cfg.GID); err != nil {
		return 125, fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(cfg.UID); err != nil {
		return 125, fmt.Errorf("setuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 125, fmt.Errorf("no_new_privs: %w", err)
	}
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	// Signals for the instance reach it from Usher through the process
	// group; the init only outlives it.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/3", // the program, as the child sees it
		Args:       cfg.Args,
		Env:        cfg.Env,
		Dir:        dir,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{exe},
	}
	if err := cmd.Start(); err != nil {
		return 126, fmt.Errorf("start %s: %w", cfg.Args[0], err)
	}
	exe.Close()
	if ctl != nil {
		go serveDials(ctl, cfg.Port)
	}
	_ = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	fmt.Fprintf(statusFile, "%d", uint32(ws))
	statusFile.Close()
	// Returning kills whatever the program left in the PID namespace.
	return cmd.ProcessState.ExitCode() & 0xff, nil
}

// initNetwork, in a user namespace: brings lo up, listens on the relay
// addresses and hands the listeners to Usher on fd 6; with pasta, waits
// for its default route so the program starts with egress.
func initNetwork(cfg initConfig) (*net.UnixConn, error) {
	f := os.NewFile(6, "control")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctl := c.(*net.UnixConn)
	if err := loUp(); err != nil {
		return nil, err
	}
	if err := addLocal(cfg.Local); err != nil {
		return nil, err
	}
	var fds []int
	for _, a := range cfg.Relay {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("relay %s: %w", a, err)
		}
		lf, err := ln.(*net.TCPListener).File()
		if err != nil {
			return nil, fmt.Errorf("relay %s: %w", a, err)
		}
		ln.Close()
		defer lf.Close() // Usher has its own copy once sent
		fds = append(fds, int(lf.Fd()))
	}
	if _, _, err := ctl.WriteMsgUnix([]byte("ok"), unix.UnixRights(fds...), nil); err != nil {
		return nil, fmt.Errorf("hand over relays: %w", err)
	}
	if cfg.WaitRoute {
		for i := 0; i < 500 && !hasDefaultRoute(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return ctl, nil
}

// hasDefaultRoute tells whether the namespace has an IPv4 default route.
func hasDefaultRoute() bool {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "00000000" {
			return true
		}
	}
	return false
}

// serveDials answers each request on ctl with a connection to the
// instance's port (or the error, as text), until Usher closes it.
func serveDials(ctl *net.UnixConn, port int) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	buf := make([]byte, 16)
	for {
		if _, err := ctl.Read(buf); err != nil {
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			ctl.Write([]byte("error: " + err.Error()))
			continue
		}
		cf, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			ctl.Write([]byte("error: " + err.Error()))
			continue
		}
		ctl.WriteMsgUnix([]byte("ok"), unix.UnixRights(int(cf.Fd())), nil)
		cf.Close()
	}
}

// sandboxMounts turns the copy of the host's mounts the init got into the
// instance's file system. Every failure is fatal: an instance never starts
// with less isolation than documented.
func sandboxMounts(hide []string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID,
	}); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, dir := range []string{"/tmp", "/dev/shm"} {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("mount %s: %w", dir, err)
		}
	}
	for _, p := range hide {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // not there, or under a directory already covered
		case err != nil:
			return fmt.Errorf("hide %s: %w", p, err)
		case fi.IsDir():
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0,size=4k")
		default:
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("hide %s: %w", p, err)
		}
	}
	return nil
}

// mapImage makes the image's executable visible, read-only, at its host
// path when the sandbox's /tmp hides it (arguments may name it). Under a
// hidden directory it stays invisible: the program runs from fd 5 anyway.
func mapImage(path string, src *os.File) {
	if path == "" || !filepath.IsAbs(path) {
		return
	}
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.MkdirAll(filepath.Dir(path), 0o755) != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o555)
	if err != nil {
		return
	}
	f.Close()
	if unix.Mount("/proc/self/fd/"+strconv.Itoa(int(src.Fd())), path, "", unix.MS_BIND, "") != nil {
		return
	}
	_ = unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID, "")
}

// sandboxAvailable says why this machine cannot sandbox instances, or nil.
// As root the namespaces are made directly; otherwise in a user namespace,
// which a test start of the init proves the kernel allows.
func sandboxAvailable() error {
	for _, ns := range []string{"net", "mnt", "pid", "ipc", "uts", "user"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return fmt.Errorf("%w: no %s namespaces: %v", ErrNoSandbox, ns, err)
		}
	}
	if os.Geteuid() == 0 {
		return nil
	}
	if err := probeUserNS(); err != nil {
		return fmt.Errorf("%w: Usher is not root and cannot make a user namespace: %v", ErrNoSandbox, err)
	}
	return nil
}

// probeUserNS starts the init in the namespaces of a sandbox (user
// namespace included) and has it exit at once.
func probeUserNS() error {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := &exec.Cmd{}
	cfgW, statusR, ctl, err := sandboxCmd(cmd, devnull, &userNS{UID: 65534, GID: 65534})
	if err != nil {
		return err
	}
	defer statusR.Close()
	defer ctl.Close()
	err = startCmd(cmd)
	closeAfterStart(cmd)
	if err != nil {
		cfgW.Close()
		return err
	}
	json.NewEncoder(cfgW).Encode(initConfig{Probe: true})
	cfgW.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("test start: %w", err)
	}
	return nil
}

// userNS is what the init's user namespace maps: UID and GID inside (the
// instance's) to Usher's own ids outside.
type userNS struct{ UID, GID int }

// sandboxCmd prepares the init of a sandboxed instance running program
// (already opened) with argv and env. With uns (Usher is not root), the
// init also gets a user namespace, capabilities in it for the mounts and
// lo (ambient, so they survive its exec as a uid other than 0; it clears
// them before starting the program), and a control socket on fd 6, whose
// other end is returned (see initConfig).
func sandboxCmd(cmd *exec.Cmd, program *os.File, uns *userNS) (cfgW, statusR *os.File, ctl *net.UnixConn, err error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, nil, nil, err
	}
	cmd.Path = "/proc/self/exe"
	cmd.Args = []string{initName}
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{cfgR, statusW, program}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
	}
	if uns == nil {
		return cfgW, statusR, nil, nil
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		for _, f := range []*os.File{cfgR, cfgW, statusR, statusW} {
			f.Close()
		}
		return nil, nil, nil, fmt.Errorf("control socket: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "control")
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(fds[1])
		for _, f := range []*os.File{cfgR, cfgW, statusR, statusW} {
			f.Close()
		}
		return nil, nil, nil, fmt.Errorf("control socket: %w", err)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(fds[1]), "control"))
	a := cmd.SysProcAttr
	a.Cloneflags |= syscall.CLONE_NEWUSER
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: uns.UID, HostID: os.Geteuid(), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: uns.GID, HostID: os.Getegid(), Size: 1}}
	a.GidMappingsEnableSetgroups = false
	a.Credential = &syscall.Credential{Uid: uint32(uns.UID), Gid: uint32(uns.GID), NoSetGroups: true}
	a.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_NET_BIND_SERVICE}
	return cfgW, statusR, c.(*net.UnixConn), nil
}

// initControl is Usher's end of an init's control socket (user namespace).
type initControl struct {
	mu sync.Mutex // one request at a time
	c  *net.UnixConn
}

// relays receives the n relay listeners the init made.
func (ic *initControl) relays(n int) ([]net.Listener, error) {
	ic.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer ic.c.SetReadDeadline(time.Time{})
	files, msg, err := ic.receive(n)
	if err != nil {
		return nil, fmt.Errorf("relays from the init: %w", err)
	}
	if msg != "ok" || len(files) != n {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("relays from the init: %q with %d sockets", msg, len(files))
	}
	var lns []net.Listener
	for _, f := range files {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// dial asks the init for a connection to the instance's port.
func (ic *initControl) dial(ctx context.Context) (net.Conn, error) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	ic.c.SetDeadline(deadline)
	defer ic.c.SetDeadline(time.Time{})
	if _, err := ic.c.Write([]byte("dial")); err != nil {
		return nil, fmt.Errorf("dial instance: %w", err)
	}
	files, msg, err := ic.receive(1)
	if err != nil {
		return nil, fmt.Errorf("dial instance: %w", err)
	}
	if msg != "ok" || len(files) != 1 {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("dial instance: %s", msg)
	}
	defer files[0].Close()
	return net.FileConn(files[0])
}

func (ic *initControl) receive(maxFDs int) ([]*os.File, string, error) {
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4*max(maxFDs, 1)))
	n, oobn, _, _, err := ic.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, "", err
	}
	var files []*os.File
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "socket"))
		}
	}
	return files, string(buf[:n]), nil
}

func (ic *initControl) Close() error { return ic.c.Close() }

// startPasta gives the network namespace of pid (in its user namespace)
// egress through pasta (Debian's passt): a user-mode network stack that
// makes the instance's connections as Usher's own. No port is forwarded
// either way and the gateway address is not mapped to the host's
// loopback, so the host's loopback services stay out of reach.
func startPasta(pasta string, pid int) (*exec.Cmd, error) {
	cmd := exec.Command(pasta, "--config-net", "--foreground", "--quiet", "--ipv4-only",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw", strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startCmd(cmd); err != nil {
		return nil, fmt.Errorf("egress: start pasta: %w", err)
	}
	return cmd, nil
}

// closeAfterStart closes the parent's copies of the init's ends.
func closeAfterStart(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
}

// netns is an instance's network namespace, held open by Usher.
type netns struct{ f *os.File }

func openNetns(pid int) (*netns, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	return &netns{f: f}, nil
}

func (ns *netns) Close() error { return ns.f.Close() }

// do runs f on a thread inside the namespace; sockets f creates stay in
// the namespace after it returns. The thread goes back to its own namespace
// afterwards: it may be the main thread, whose namespace is what /proc/net
// shows (the metadata server's peer lookups read it), and which the Go
// runtime never ends. If it cannot go back, it stays locked and dies with
// the goroutine instead of returning to the scheduler in the wrong
// namespace (the Go runtime starts new threads from a clean one).
func (ns *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("own network namespace: %w", err)
			goruntime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			goruntime.UnlockOSThread()
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			goruntime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// loUp brings the loopback interface of the current thread's namespace up.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// dial connects to addr from inside the namespace.
func (ns *netns) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// relay listens inside ns on each address of reach and forwards every
// connection to the same address on the host, from src when the address is
// IPv4 loopback. It returns the listeners (closed by the caller).
func (ns *netns) relay(reach []string, local []netip.Addr, src netip.Addr) ([]net.Listener, error) {
	var lns []net.Listener
	err := ns.do(func() error {
		if err := loUp(); err != nil {
			return err
		}
		if err := addLocal(local); err != nil {
			return err
		}
		for _, a := range reach {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return fmt.Errorf("relay %s: %w", a, err)
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	for i, ln := range lns {
		go serveRelay(ln, hostTarget(reach[i]), src)
	}
	return lns, nil
}

// relayLocalAddrs are the addresses an instance's namespace takes from the
// host (on lo): the host's own IPv4 addresses, and those reach names. So a
// relay can listen on a specified address; the instance reaches Usher at
// the host's address (where a service URL's host name leads) through the
// relay; and every other port of the host's addresses is refused inside,
// even where egress (pasta's) would otherwise connect to it. Loopback needs
// none, nor egressNet (the instance's own link). Addresses the host gains
// later are not covered.
func relayLocalAddrs(reach []string) []netip.Addr {
	var out []netip.Addr
	add := func(a netip.Addr) {
		a = a.Unmap()
		if a.Is4() && !a.IsLoopback() && !a.IsUnspecified() && !egressNet.Contains(a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, r := range reach {
		if ap, err := netip.ParseAddrPort(r); err == nil {
			add(ap.Addr())
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				add(ip)
			}
		}
	}
	return out
}

// addLocal gives the current thread's network namespace the addresses
// (on lo, /32 each).
func addLocal(addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	for _, a := range addrs {
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(a, a.BitLen()))}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("lo: address %s: %w", a, err)
		}
	}
	return nil
}

// hostTarget is where a relayed address is dialed on the host: an
// unspecified host (":8080", "0.0.0.0:8080") means the host's loopback.
func hostTarget(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func serveRelay(ln net.Listener, target string, src netip.Addr) {
	d := net.Dialer{}
	if ap, err := netip.ParseAddrPort(target); err == nil && ap.Addr().Unmap().Is4() && ap.Addr().IsLoopback() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go func() {
			defer c.Close()
			up, err := d.Dial("tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(up, c)
				if tc, ok := up.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				close(done)
			}()
			io.Copy(c, up)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			<-done
		}()
	}
}

// sandboxExitError says how the program of a sandboxed instance ended:
// as the init reported it, else (the init was killed, or failed before
// starting it) as the init ended.
func sandboxExitError(status *os.File, ps *os.ProcessState) *runtime.ExitError {
	b, _ := io.ReadAll(io.LimitReader(status, 32))
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return exitError(ps)
	}
	ws := syscall.WaitStatus(n)
	if ws.Signaled() {
		return &runtime.ExitError{Code: -1, Signal: ws.Signal().String()}
	}
	return &runtime.ExitError{Code: ws.ExitStatus()}
}

// absPaths makes hide paths absolute and clean.
func absPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		if a, err := filepath.Abs(p); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// inMemory are the sandbox's writable directories (private tmpfs): a
// directory the program needs may be made under them.
var inMemory = []string{"/tmp/", "/dev/shm/"}

// mountVolume mounts an in-memory volume: a tmpfs anyone in the sandbox
// may write, at a directory of the sandbox's file system that exists or is
// made under /tmp or /dev/shm (the root is the host's, read-only: nothing
// else can be made). Mounts are private to the instance's namespace.
func mountVolume(v runtime.Volume, uid, gid int) error {
	if err := makeDir("volume mount path", v.Path, 0o755); err != nil {
		return err
	}
	if v.Files != nil {
		return mountFiles(v, uid, gid)
	}
	opts := "mode=1777"
	if v.SizeBytes > 0 {
		opts += ",size=" + strconv.FormatInt(v.SizeBytes, 10)
	}
	if err := unix.Mount("tmpfs", v.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("in-memory volume at %s: %w", v.Path, err)
	}
	return nil
}

// mountFiles mounts a read-only volume holding v.Files (a secret volume):
// a tmpfs just large enough, the files written with their modes and owned
// by the instance's user (so that 0400 means "the instance may read it"),
// then remounted read-only.
func mountFiles(v runtime.Volume, uid, gid int) error {
	size := int64(64 << 10) // room for the directory itself
	for _, f := range v.Files {
		size += int64(len(f.Data)) + 4096
	}
	opts := "mode=0555,size=" + strconv.FormatInt(size, 10)
	if err := unix.Mount("tmpfs", v.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("secret volume at %s: %w", v.Path, err)
	}
	for _, f := range v.Files {
		if f.Name == "" || strings.ContainsRune(f.Name, '/') || f.Name == "." || f.Name == ".." {
			return fmt.Errorf("secret volume at %s: %q is not a file name", v.Path, f.Name)
		}
		p := filepath.Join(v.Path, f.Name)
		if err := os.WriteFile(p, f.Data, 0o600); err != nil {
			return fmt.Errorf("secret volume at %s: %w", v.Path, err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("secret volume at %s: %w", v.Path, err)
		}
		if err := os.Chmod(p, os.FileMode(f.Mode&0o777)); err != nil {
			return fmt.Errorf("secret volume at %s: %w", v.Path, err)
		}
	}
	if err := unix.Mount("", v.Path, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("secret volume at %s: read-only: %w", v.Path, err)
	}
	return nil
}

// makeWorkingDir makes sure dir, the program's working directory, exists in
// the sandbox: a directory of the (read-only) host file system that is not
// hidden, or one under /tmp or /dev/shm, made here for the instance's user
// if missing (as Docker makes a missing WORKDIR).
func makeWorkingDir(dir string, uid, gid int) error {
	made, _ := os.Stat(dir)
	if err := makeDir("working directory", dir, 0o755); err != nil {
		return err
	}
	if made != nil {
		return nil // it was there: not ours to change
	}
	return os.Chown(dir, uid, gid)
}

// makeDir makes sure dir exists as a directory in the sandbox: one of the
// host's (read-only) that is not hidden, or one it makes under /tmp or
// /dev/shm. what names dir in errors.
func makeDir(what, dir string, mode os.FileMode) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s %s is not a directory", what, dir)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	for _, m := range inMemory {
		if strings.HasPrefix(dir, m) {
			if err := os.MkdirAll(dir, mode); err != nil {
				return fmt.Errorf("%s %s: %w", what, dir, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s %s does not exist in the sandbox, whose file system is the host's, read-only: use a directory that exists there or one under /tmp", what, dir)
}
