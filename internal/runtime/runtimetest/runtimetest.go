// Package runtimetest is the conformance suite every runtime.Runtime must
// pass. It runs the test app of ./testapp, which the caller provides as an
// image in whatever form its runtime runs (a file:// executable, a container
// image, ...).
//
// The suite checks the contract of package runtime as seen from outside:
// the environment (and that the test process's environment does not leak),
// command and args, the startup probe and its failures, logs, exits and Stop.
// To tell that an instance's processes are gone, the test app dials a
// "beacon" listener of the suite and holds the connection while it lives. The
// beacon listens on 127.0.0.1; a runtime whose instances cannot reach the
// host's loopback can set RUNTIMETEST_BEACON_HOST to an address of the host
// they can reach (the beacon then listens on all interfaces).
//
// It must never be imported outside tests.
package runtimetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime"
)

// App is the name of the test app passed to the image function.
const App = "testapp"

// waitTimeout bounds every wait of the suite; generous for loaded CI
// machines and -race.
const waitTimeout = 30 * time.Second

// Run runs the conformance suite against rt. image returns the image to run
// the named test app (App, built from ./testapp) with; it is called from
// parallel subtests.
//
// Run sets a canary variable in the environment of the test process (and
// checks that instances do not see it), so it must not run in parallel with
// tests that use t.Setenv.
func Run(t *testing.T, rt runtime.Runtime, image func(t *testing.T, app string) string) {
	// A secret of the parent process that must not reach instances.
	canaryName, canaryValue := "USHER_RUNTIMETEST_CANARY_SECRET", "canary-"+randHex(t)
	prev, had := os.LookupEnv(canaryName)
	os.Setenv(canaryName, canaryValue)
	t.Cleanup(func() {
		if had {
			os.Setenv(canaryName, prev)
		} else {
			os.Unsetenv(canaryName)
		}
	})

	s := &suite{rt: rt, image: image}

	t.Run("Serve", s.testServe)
	t.Run("ContractEnv", func(t *testing.T) { s.testContractEnv(t, canaryName, canaryValue) })
	t.Run("CommandArgs", s.testCommandArgs)
	t.Run("ReservedEnv", s.testReservedEnv)
	t.Run("Logs", s.testLogs)
	t.Run("StderrApart", s.testStderrApart)
	t.Run("ExitByItself", s.testExitByItself)
	t.Run("ChildrenDieWithInstance", s.testChildrenDie)
	t.Run("StopGraceful", s.testStopGraceful)
	t.Run("StopIgnoringSIGTERM", s.testStopIgnoringSIGTERM)
	t.Run("StopContext", s.testStopContext)
	t.Run("StopIdempotent", s.testStopIdempotent)
	t.Run("ExitAtStart", s.testExitAtStart)
	t.Run("NeverListens", s.testNeverListens)
	t.Run("CancelDuringStartup", s.testCancelDuringStartup)
}

type suite struct {
	rt    runtime.Runtime
	image func(t *testing.T, app string) string
}

// spec returns a spec for the test app with logs going to the test log.
func (s *suite) spec(t *testing.T, env ...runtime.EnvVar) (runtime.InstanceSpec, *LogBuffer) {
	logs := NewLogBuffer(t)
	return runtime.InstanceSpec{
		Image:          s.image(t, App),
		Env:            env,
		Service:        "svc",
		Revision:       "svc-00001-abc",
		Configuration:  "svc",
		StartupTimeout: waitTimeout,
		StopGrace:      5 * time.Second,
		Logs:           logs,
	}, logs
}

// start starts an instance that is stopped when the test ends.
func (s *suite) start(t *testing.T, spec runtime.InstanceSpec) runtime.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	in, err := s.rt.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := in.Stop(ctx); err != nil {
			t.Errorf("cleanup: Stop: %v", err)
		}
	})
	return in
}

func (s *suite) testServe(t *testing.T) {
	t.Parallel()
	spec, _ := s.spec(t)
	spec.Logs = nil // allowed: discard
	var (
		wg   sync.WaitGroup
		ins  [2]runtime.Instance
		errs [2]error
	)
	for i := range ins {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			ins[i], errs[i] = s.rt.Start(ctx, spec)
		})
	}
	wg.Wait()
	for i, in := range ins {
		if errs[i] != nil {
			t.Errorf("Start: %v", errs[i])
			continue
		}
		t.Cleanup(func() { stop(t, in, waitTimeout) })
	}
	if t.Failed() {
		return
	}
	for _, in := range ins {
		if in.ID() == "" {
			t.Error("empty ID")
		}
		if _, _, err := net.SplitHostPort(in.Addr()); err != nil {
			t.Errorf("Addr %q: %v", in.Addr(), err)
		}
		if got := get(t, in, "/"); got != "ok\n" {
			t.Errorf("GET / = %q, want ok", got)
		}
		select {
		case <-in.Done():
			t.Errorf("instance %s done while running: %v", in.ID(), in.Err())
		default:
		}
	}
	if ins[0].ID() == ins[1].ID() {
		t.Errorf("two instances share ID %q", ins[0].ID())
	}
	if ins[0].Addr() == ins[1].Addr() {
		t.Errorf("two instances share Addr %q", ins[0].Addr())
	}
}

func (s *suite) testContractEnv(t *testing.T, canaryName, canaryValue string) {
	t.Parallel()
	spec, _ := s.spec(t,
		runtime.EnvVar{Name: "FOO", Value: "bar"},
		runtime.EnvVar{Name: "EMPTY", Value: ""},
		runtime.EnvVar{Name: "WITH_SPACES", Value: " a = b "},
		runtime.EnvVar{Name: "OVERRIDDEN", Value: "by-user"},
	)
	spec.ExtraEnv = []runtime.EnvVar{
		{Name: "OVERRIDDEN", Value: "by-usher"},
		{Name: "USHER_EXTRA", Value: "extra"},
	}
	in := s.start(t, spec)
	info := getEnv(t, in)

	want := map[string]string{
		"FOO":             "bar",
		"EMPTY":           "",
		"WITH_SPACES":     " a = b ",
		"OVERRIDDEN":      "by-usher",
		"USHER_EXTRA":     "extra",
		"K_SERVICE":       "svc",
		"K_REVISION":      "svc-00001-abc",
		"K_CONFIGURATION": "svc",
	}
	for k, v := range want {
		got, ok := info.Env[k]
		if !ok {
			t.Errorf("env %s missing", k)
		} else if got != v {
			t.Errorf("env %s = %q, want %q", k, got, v)
		}
	}
	if p, err := strconv.Atoi(info.Env["PORT"]); err != nil || p <= 0 || p > 65535 {
		t.Errorf("env PORT = %q, want a port number", info.Env["PORT"])
	}
	if info.Env["PATH"] == "" {
		t.Error("env PATH missing or empty")
	}
	if _, ok := info.Env[canaryName]; ok {
		t.Errorf("env %s of the test process leaked into the instance", canaryName)
	}
	for _, kv := range info.Environ {
		if strings.Contains(kv, canaryValue) {
			t.Errorf("secret of the test process leaked into the instance: %q", kv)
		}
	}
}

func (s *suite) testCommandArgs(t *testing.T) {
	t.Parallel()
	spec, _ := s.spec(t)
	spec.Args = []string{"--alpha", "two words", ""}
	in := s.start(t, spec)
	info := getEnv(t, in)
	if len(info.Args) == 0 || !slices.Equal(info.Args[1:], spec.Args) {
		t.Errorf("args = %q, want [ENTRYPOINT %q...]", info.Args, spec.Args)
	}
	if info.Executable == "" {
		t.Fatal("test app reports no executable")
	}

	// --command: the test app again, by the path it has inside the instance.
	spec.Command = []string{info.Executable, "--from-command"}
	spec.Args = []string{"a b", "c"}
	in = s.start(t, spec)
	info = getEnv(t, in)
	want := []string{info.Executable, "--from-command", "a b", "c"}
	if !slices.Equal(info.Args, want) {
		t.Errorf("with Command: args = %q, want %q", info.Args, want)
	}
}

func (s *suite) testReservedEnv(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"} {
		spec, _ := s.spec(t, runtime.EnvVar{Name: name, Value: "1"})
		in, err := s.rt.Start(context.Background(), spec)
		if err == nil {
			in.Stop(context.Background())
			t.Errorf("Start with user env %s succeeded", name)
			continue
		}
		if !errors.Is(err, runtime.ErrReservedEnv) {
			t.Errorf("Start with user env %s: error %v does not wrap ErrReservedEnv", name, err)
		}
	}
	spec, _ := s.spec(t, runtime.EnvVar{Name: "BAD=NAME", Value: "1"})
	if in, err := s.rt.Start(context.Background(), spec); err == nil {
		in.Stop(context.Background())
		t.Error("Start with invalid env name succeeded")
	}
}

func (s *suite) testLogs(t *testing.T) {
	t.Parallel()
	spec, logs := s.spec(t)
	in := s.start(t, spec)
	logs.WaitFor(t, "testapp: listening")
	logs.WaitFor(t, "testapp: hello from stderr")
	out, errOut := "to-stdout-"+randHex(t), "to-stderr-"+randHex(t)
	get(t, in, "/log?msg="+out)
	get(t, in, "/log?stream=stderr&msg="+errOut)
	logs.WaitFor(t, out)
	logs.WaitFor(t, errOut)
	logs.CheckLines(t)
}

// testStderrApart: with ErrLogs, stderr lines go there and stdout lines to
// Logs, never crossed.
func (s *suite) testStderrApart(t *testing.T) {
	t.Parallel()
	spec, logs := s.spec(t)
	errLogs := NewLogBuffer(t)
	spec.ErrLogs = errLogs
	in := s.start(t, spec)
	logs.WaitFor(t, "testapp: listening")
	errLogs.WaitFor(t, "testapp: hello from stderr")
	out, errOut := "to-stdout-"+randHex(t), "to-stderr-"+randHex(t)
	get(t, in, "/log?msg="+out)
	get(t, in, "/log?stream=stderr&msg="+errOut)
	logs.WaitFor(t, out)
	errLogs.WaitFor(t, errOut)
	if logs.Contains(errOut) || errLogs.Contains(out) || logs.Contains("hello from stderr") {
		t.Errorf("streams crossed: stdout %q, stderr %q", logs.String(), errLogs.String())
	}
	logs.CheckLines(t)
	errLogs.CheckLines(t)
}

func (s *suite) testExitByItself(t *testing.T) {
	t.Parallel()
	spec, logs := s.spec(t)
	in := s.start(t, spec)
	getIgnoringErrors(in, "/exit?code=7")
	waitDone(t, in)
	logs.CloseAtDone()
	err := in.Err()
	if err == nil {
		t.Fatal("Err() = nil after the instance exited")
	}
	var x *runtime.ExitError
	if !errors.As(err, &x) || x.Code != 7 {
		t.Errorf("Err() = %v, want an *ExitError with Code 7", err)
	}
	if errors.Is(err, runtime.ErrStopped) {
		t.Errorf("Err() = %v is ErrStopped, but nobody stopped it", err)
	}
	if err := in.Stop(context.Background()); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
	logs.WaitFor(t, "exiting with status 7")
	logs.CheckLines(t)
}

func (s *suite) testChildrenDie(t *testing.T) {
	t.Parallel()
	b := NewBeacon(t)
	spec, _ := s.spec(t, b.Env())
	in := s.start(t, spec)
	get(t, in, "/spawn")
	b.WaitHellos(t, 2)
	getIgnoringErrors(in, "/exit?code=0")
	waitDone(t, in)
	b.WaitGone(t)
}

func (s *suite) testStopGraceful(t *testing.T) {
	t.Parallel()
	b := NewBeacon(t)
	spec, logs := s.spec(t, b.Env())
	in := s.start(t, spec)
	get(t, in, "/spawn") // a child ignoring SIGTERM must die too
	b.WaitHellos(t, 2)
	stop(t, in, waitTimeout)
	if !errors.Is(in.Err(), runtime.ErrStopped) {
		t.Errorf("Err() = %v, want ErrStopped", in.Err())
	}
	var x *runtime.ExitError
	if !errors.As(in.Err(), &x) || x.Code != 0 {
		t.Errorf("Err() = %v, want an *ExitError with Code 0 (the app exits 0 on SIGTERM)", in.Err())
	}
	logs.WaitFor(t, "SIGTERM")
	b.WaitGone(t)
}

func (s *suite) testStopIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	b := NewBeacon(t)
	spec, _ := s.spec(t, b.Env(), runtime.EnvVar{Name: "TESTAPP_IGNORE_SIGTERM", Value: "1"})
	spec.StopGrace = 300 * time.Millisecond
	in := s.start(t, spec)
	b.WaitHellos(t, 1)
	stop(t, in, waitTimeout)
	if !errors.Is(in.Err(), runtime.ErrStopped) {
		t.Errorf("Err() = %v, want ErrStopped", in.Err())
	}
	b.WaitGone(t)
}

func (s *suite) testStopContext(t *testing.T) {
	t.Parallel()
	b := NewBeacon(t)
	spec, _ := s.spec(t, b.Env(), runtime.EnvVar{Name: "TESTAPP_IGNORE_SIGTERM", Value: "1"})
	spec.StopGrace = time.Hour
	in := s.start(t, spec)
	b.WaitHellos(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := in.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop with a short ctx and a long grace = %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-in.Done():
	default:
		t.Error("Stop returned before Done was closed")
	}
	b.WaitGone(t)
}

func (s *suite) testStopIdempotent(t *testing.T) {
	t.Parallel()
	spec, _ := s.spec(t)
	in := s.start(t, spec)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { stop(t, in, waitTimeout) })
	}
	wg.Wait()
	stop(t, in, waitTimeout)
}

func (s *suite) testExitAtStart(t *testing.T) {
	t.Parallel()
	spec, logs := s.spec(t, runtime.EnvVar{Name: "TESTAPP_EXIT_AT_START", Value: "1"})
	in, err := s.rt.Start(context.Background(), spec)
	if err == nil {
		in.Stop(context.Background())
		t.Fatal("Start succeeded for an app exiting at start")
	}
	if !strings.Contains(err.Error(), "boom") {
		t.Errorf("Start error %q does not include the app's output %q", err, "boom")
	}
	var x *runtime.ExitError
	if !errors.As(err, &x) || x.Code != 3 {
		t.Errorf("Start error %v does not wrap an *ExitError with Code 3", err)
	}
	logs.WaitFor(t, "boom")
}

func (s *suite) testNeverListens(t *testing.T) {
	t.Parallel()
	b := NewBeacon(t)
	spec, _ := s.spec(t, b.Env(), runtime.EnvVar{Name: "TESTAPP_NEVER_LISTEN", Value: "1"})
	spec.StartupTimeout = time.Second
	in, err := s.rt.Start(context.Background(), spec)
	if err == nil {
		in.Stop(context.Background())
		t.Fatal("Start succeeded for an app that never listens")
	}
	if !errors.Is(err, runtime.ErrStartupTimeout) {
		t.Errorf("Start error %v does not wrap ErrStartupTimeout", err)
	}
	b.WaitHellos(t, 1)
	b.WaitGone(t)
}

func (s *suite) testCancelDuringStartup(t *testing.T) {
	t.Parallel()
	b := NewBeacon(t)
	spec, _ := s.spec(t, b.Env(), runtime.EnvVar{Name: "TESTAPP_NEVER_LISTEN", Value: "1"})
	spec.StartupTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		in  runtime.Instance
		err error
	}
	res := make(chan result, 1)
	go func() {
		in, err := s.rt.Start(ctx, spec)
		res <- result{in, err}
	}()
	b.WaitHellos(t, 1)
	cancel()
	select {
	case r := <-res:
		if r.err == nil {
			r.in.Stop(context.Background())
			t.Fatal("Start succeeded for an app that never listens")
		}
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("Start error %v does not wrap context.Canceled", r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Start did not return after its ctx was canceled")
	}
	b.WaitGone(t)
}

// EnvInfo is what the test app's /env reports.
type EnvInfo struct {
	Env        map[string]string `json:"env"`
	Environ    []string          `json:"environ"`
	Args       []string          `json:"args"`
	Executable string            `json:"executable"`
	Cwd        string            `json:"cwd"`
	PID        int               `json:"pid"`
}

var client = &http.Client{
	Timeout:   waitTimeout,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// clientFor returns the client that reaches in: through its runtime.InstanceDialer when it has one.
func clientFor(in runtime.Instance) *http.Client {
	d, ok := in.(runtime.InstanceDialer)
	if !ok {
		return client
	}
	return &http.Client{
		Timeout: waitTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialInstance(ctx)
			},
		},
	}
}

// Get sends GET path to the instance (through its runtime.InstanceDialer
// when it has one) and returns the status code and body.
func Get(in runtime.Instance, path string) (int, string, error) {
	resp, err := clientFor(in).Get("http://" + in.Addr() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func getEnv(t *testing.T, in runtime.Instance) EnvInfo {
	t.Helper()
	var info EnvInfo
	if err := json.Unmarshal([]byte(get(t, in, "/env")), &info); err != nil {
		t.Fatalf("GET /env: %v", err)
	}
	return info
}

func get(t *testing.T, in runtime.Instance, path string) string {
	t.Helper()
	resp, err := clientFor(in).Get("http://" + in.Addr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body)
}

// getIgnoringErrors is for requests that make the app exit.
func getIgnoringErrors(in runtime.Instance, path string) {
	resp, err := clientFor(in).Get("http://" + in.Addr() + path)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func waitDone(t *testing.T, in runtime.Instance) {
	t.Helper()
	select {
	case <-in.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("instance %s did not exit within %v", in.ID(), waitTimeout)
	}
}

// stop stops in and checks it is done.
func stop(t *testing.T, in runtime.Instance, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := in.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	select {
	case <-in.Done():
	default:
		t.Error("Stop returned before Done was closed")
	}
	if in.Err() == nil {
		t.Error("Err() = nil after Stop")
	}
}

func randHex(t testing.TB) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// LogBuffer is an InstanceSpec.Logs that records lines, mirrors them to the
// test log and checks that every Write is one whole line.
type LogBuffer struct {
	t testing.TB

	mu       sync.Mutex
	buf      bytes.Buffer
	bad      []string
	closed   bool
	changed  chan struct{}
	testOver bool
}

// NewLogBuffer returns a LogBuffer logging to t.
func NewLogBuffer(t testing.TB) *LogBuffer {
	l := &LogBuffer{t: t, changed: make(chan struct{})}
	t.Cleanup(func() {
		l.mu.Lock()
		l.testOver = true // t.Logf would panic now
		l.mu.Unlock()
	})
	return l
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.bad = append(l.bad, fmt.Sprintf("write after Done: %q", p))
	}
	if len(p) == 0 || p[len(p)-1] != '\n' || bytes.IndexByte(p[:len(p)-1], '\n') >= 0 {
		l.bad = append(l.bad, fmt.Sprintf("write is not one whole line: %q", p))
	}
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	if !l.testOver {
		l.t.Logf("instance: %s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

// CloseAtDone records that the instance is done: later writes are errors.
func (l *LogBuffer) CloseAtDone() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// Contains reports whether s was written so far.
func (l *LogBuffer) Contains(s string) bool { return strings.Contains(l.String(), s) }

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// WaitFor waits until the logs contain s.
func (l *LogBuffer) WaitFor(t testing.TB, s string) {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		found, ch := strings.Contains(l.buf.String(), s), l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("logs do not contain %q after %v; logs:\n%s", s, waitTimeout, l.String())
		}
	}
}

// CheckLines reports writes that were not one whole line, or came after Done.
func (l *LogBuffer) CheckLines(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bad {
		t.Errorf("logs: %s", b)
	}
}

// Beacon tells when the processes of the test app are gone: each one given
// Env dials it, says hello and holds the connection while it lives.
type Beacon struct {
	l    net.Listener
	addr string

	mu      sync.Mutex
	conns   []*beaconConn
	changed chan struct{}
}

type beaconConn struct {
	c     net.Conn
	hello string // "hello PID ROLE", once received
	gone  bool
}

// NewBeacon starts a beacon, closed when the test ends.
func NewBeacon(t testing.TB) *Beacon {
	t.Helper()
	listen, host := "127.0.0.1:0", "127.0.0.1"
	if h := os.Getenv("RUNTIMETEST_BEACON_HOST"); h != "" {
		listen, host = ":0", h
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("beacon: %v", err)
	}
	b := &Beacon{
		l:       l,
		addr:    net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)),
		changed: make(chan struct{}),
	}
	go b.accept()
	t.Cleanup(func() {
		l.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.c.Close() // lets leftover test app children exit
		}
	})
	return b
}

// Env is the variable telling the test app where the beacon is.
func (b *Beacon) Env() runtime.EnvVar {
	return runtime.EnvVar{Name: "TESTAPP_BEACON", Value: b.addr}
}

func (b *Beacon) accept() {
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		bc := &beaconConn{c: c}
		b.update(func() { b.conns = append(b.conns, bc) })
		go func() {
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err == nil {
				b.update(func() { bc.hello = strings.TrimSpace(line) })
				io.Copy(io.Discard, br)
			}
			b.update(func() { bc.gone = true })
		}()
	}
}

func (b *Beacon) update(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Beacon) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		b.mu.Lock()
		ok, ch := cond(), b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			b.mu.Lock()
			var st []string
			for _, c := range b.conns {
				st = append(st, fmt.Sprintf("%q gone=%v", c.hello, c.gone))
			}
			b.mu.Unlock()
			t.Fatalf("beacon: no %s after %v; connections: %v", what, waitTimeout, st)
		}
	}
}

// WaitHellos waits until n processes have said hello (and may be gone since).
func (b *Beacon) WaitHellos(t testing.TB, n int) {
	t.Helper()
	b.wait(t, fmt.Sprintf("%d hellos", n), func() bool {
		k := 0
		for _, c := range b.conns {
			if c.hello != "" {
				k++
			}
		}
		return k >= n
	})
}

// WaitGone waits until every process that connected is gone.
func (b *Beacon) WaitGone(t testing.TB) {
	t.Helper()
	b.wait(t, "exit of all test app processes", func() bool {
		for _, c := range b.conns {
			if !c.gone {
				return false
			}
		}
		return true
	})
}
