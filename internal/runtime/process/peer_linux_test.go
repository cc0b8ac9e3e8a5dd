package process

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime"
)

// listenLoopback listens on a free loopback port until the test ends.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serverSide accepts one connection and returns its addresses as the server
// sees them.
func serverSide(t *testing.T, l net.Listener) (local, remote netip.AddrPort) {
	t.Helper()
	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
}

func TestPeerPIDSelf(t *testing.T) {
	l := listenLoopback(t)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local, remote := serverSide(t, l)
	pid, err := PeerPID(local, remote)
	if err != nil {
		t.Fatalf("PeerPID: %v", err)
	}
	if pid != os.Getpid() {
		t.Fatalf("PeerPID = %d, want this process %d", pid, os.Getpid())
	}
	// The test process is no instance of its own.
	if _, err := InstanceLeader(pid); !errors.Is(err, ErrNotInstance) {
		t.Fatalf("InstanceLeader(self) err = %v, want ErrNotInstance", err)
	}
	// Swapping the ends finds the server's own socket (also ours), and an
	// address nobody uses finds nothing.
	if pid, err := PeerPID(remote, local); err != nil || pid != os.Getpid() {
		t.Fatalf("PeerPID(swapped) = %d, %v", pid, err)
	}
	bogus := netip.AddrPortFrom(remote.Addr(), 1)
	if _, err := PeerPID(local, bogus); err == nil {
		t.Fatal("PeerPID for an unconnected address succeeded")
	}
}

func TestPeerPIDIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local, remote := serverSide(t, l)
	if pid, err := PeerPID(local, remote); err != nil || pid != os.Getpid() {
		t.Fatalf("PeerPID over IPv6 = %d, %v", pid, err)
	}
}

// startConnector starts bash in its own process group (as the runtime starts
// instances); script may use $ADDR_HOST and $ADDR_PORT.
func startConnector(t *testing.T, l net.Listener, script string) *exec.Cmd {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = []string{"PATH=" + runtime.BasePath, "ADDR_HOST=" + host, "ADDR_PORT=" + port, "MARK=connector"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

func TestPeerPIDChildGroup(t *testing.T) {
	l := listenLoopback(t)
	// The main process connects itself.
	cmd := startConnector(t, l, `exec 3<>/dev/tcp/$ADDR_HOST/$ADDR_PORT; read -u 3 x`)
	local, remote := serverSide(t, l)
	pid, err := PeerPID(local, remote)
	if err != nil {
		t.Fatalf("PeerPID: %v", err)
	}
	if pid != cmd.Process.Pid {
		t.Fatalf("PeerPID = %d, want child %d", pid, cmd.Process.Pid)
	}
	if g, err := ProcessGroup(pid); err != nil || g != cmd.Process.Pid {
		t.Fatalf("ProcessGroup = %d, %v; want %d", g, err, cmd.Process.Pid)
	}
	if !InGroup(pid, cmd.Process.Pid) {
		t.Fatal("InGroup(child, its group) = false")
	}
	if InGroup(pid, os.Getpid()) || InGroup(os.Getpid(), cmd.Process.Pid) {
		t.Fatal("InGroup confuses the test process and the child")
	}
	if leader, err := InstanceLeader(pid); err != nil || leader != cmd.Process.Pid {
		t.Fatalf("InstanceLeader = %d, %v; want %d", leader, err, cmd.Process.Pid)
	}
	env, err := Environ(pid)
	if err != nil || env["MARK"] != "connector" {
		t.Fatalf("Environ = %v, %v", env, err)
	}
}

func TestPeerPIDGrandchild(t *testing.T) {
	l := listenLoopback(t)
	// A subshell (a forked child in the same group) connects and reports
	// its pid over the connection.
	cmd := startConnector(t, l, `( exec 3<>/dev/tcp/$ADDR_HOST/$ADDR_PORT; echo $BASHPID >&3; read -u 3 x ); wait`)
	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	sub, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("bad pid line %q", line)
	}
	pid, err := PeerPID(c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatalf("PeerPID: %v", err)
	}
	if pid != sub || pid == cmd.Process.Pid {
		t.Fatalf("PeerPID = %d, want the subshell %d (main %d)", pid, sub, cmd.Process.Pid)
	}
	if !InGroup(pid, cmd.Process.Pid) {
		t.Fatal("the subshell is not in the main process's group")
	}
	if leader, err := InstanceLeader(pid); err != nil || leader != cmd.Process.Pid {
		t.Fatalf("InstanceLeader = %d, %v; want %d", leader, err, cmd.Process.Pid)
	}
}

func TestPeerPIDNotGroupLeader(t *testing.T) {
	l := listenLoopback(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	// A child of this process that stays in our group is no instance.
	cmd := exec.Command(bash, "-c", `exec 3<>/dev/tcp/$0/$1; read -u 3 x`, host, port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	local, remote := serverSide(t, l)
	pid, err := PeerPID(local, remote)
	if err != nil || pid != cmd.Process.Pid {
		t.Fatalf("PeerPID = %d, %v; want %d", pid, err, cmd.Process.Pid)
	}
	if _, err := InstanceLeader(pid); !errors.Is(err, ErrNotInstance) {
		t.Fatalf("InstanceLeader(child in our group) err = %v, want ErrNotInstance", err)
	}
}

// peerHelperEnv makes TestPeerHelperInstance act as an instance.
const peerHelperEnv = "USHER_PEER_TEST_INSTANCE"

// TestPeerHelperInstance is an instance for TestInstanceProcessGroup when
// run by it: it connects to $CONNECT_TO and waits for a line (as an app
// fetching a token at startup would), then listens on $PORT.
func TestPeerHelperInstance(t *testing.T) {
	if os.Getenv(peerHelperEnv) != "1" {
		t.Skip("helper for TestInstanceProcessGroup")
	}
	c, err := net.Dial("tcp", os.Getenv("CONNECT_TO"))
	if err != nil {
		os.Exit(3)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		os.Exit(4)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		os.Exit(5)
	}
	defer l.Close()
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestInstanceProcessGroup(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	l := listenLoopback(t)
	rt := New(Config{WorkDir: t.TempDir()})
	type started struct {
		in  runtime.Instance
		err error
	}
	res := make(chan started, 1)
	go func() {
		in, err := rt.Start(context.Background(), runtime.InstanceSpec{
			Image: "file://" + exe,
			Args:  []string{"-test.run=^TestPeerHelperInstance$"},
			Env: []runtime.EnvVar{
				{Name: peerHelperEnv, Value: "1"},
				{Name: "CONNECT_TO", Value: l.Addr().String()},
			},
			StartupTimeout: 10 * time.Second,
		})
		res <- started{in, err}
	}()
	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The instance is still starting: Start has not returned, yet the peer
	// maps to it.
	pid, err := PeerPID(c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatalf("PeerPID during startup: %v", err)
	}
	leader, err := InstanceLeader(pid)
	if err != nil {
		t.Fatalf("InstanceLeader during startup: %v", err)
	}
	if env, err := Environ(leader); err != nil || env["CONNECT_TO"] != l.Addr().String() || env["PORT"] == "" {
		t.Fatalf("Environ(leader) = %v, %v", env, err)
	}
	c.Write([]byte("go\n"))
	r := <-res
	if r.err != nil {
		t.Fatalf("Start: %v", r.err)
	}
	defer r.in.Stop(context.Background())
	g, ok := r.in.(ProcessGrouper)
	if !ok {
		t.Fatal("process instances do not implement ProcessGrouper")
	}
	if g.ProcessGroup() != leader || leader != pid {
		t.Fatalf("ProcessGroup = %d, leader %d, peer %d: want all equal", g.ProcessGroup(), leader, pid)
	}
}
