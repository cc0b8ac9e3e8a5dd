package docker

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/runtimetest"
)

// TestWaitInstanceAtPending: without an engine, the bookkeeping of launches
// in progress.
func TestWaitInstanceAtPending(t *testing.T) {
	r := &Runtime{byIP: map[netip.Addr]*instance{}}
	ip := netip.MustParseAddr("172.17.0.9")

	// Nothing starting: an unknown address is unknown at once.
	t0 := time.Now()
	if p, ok := r.WaitInstanceAt(context.Background(), ip); ok || time.Since(t0) > time.Second {
		t.Fatalf("WaitInstanceAt with no launch = %+v, %v after %v", p, ok, time.Since(t0))
	}

	// A launch in progress that ends with the address: found.
	settled := r.launching()
	in := &instance{id: "abc", service: "svc", revision: "svc-00001-a"}
	go func() {
		time.Sleep(100 * time.Millisecond)
		r.register(ip, in)
		settled()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, ok := r.WaitInstanceAt(ctx, ip); !ok || p != (Peer{ID: "abc", Service: "svc", Revision: "svc-00001-a"}) {
		t.Fatalf("WaitInstanceAt during a launch = %+v, %v", p, ok)
	}
	settled() // idempotent

	// A launch that does not settle in time: unknown (fail closed).
	settled = r.launching()
	defer settled()
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if p, ok := r.WaitInstanceAt(short, netip.MustParseAddr("172.17.0.10")); ok {
		t.Fatalf("WaitInstanceAt past its context = %+v", p)
	}

	// A container seen to exit is forgotten, and a late register (a launch
	// that inspected it before) does not bring it back.
	r.unregister(in)
	r.register(ip, in)
	if p, ok := r.InstanceAt(ip); ok {
		t.Fatalf("InstanceAt after the exit = %+v", p)
	}
}

// TestWaitInstanceAtFromFirstInstruction: an instance calls the host at
// startup, before Start returns; WaitInstanceAt knows it from that
// connection's address.
func TestWaitInstanceAtFromFirstInstruction(t *testing.T) {
	rt := newRuntime(t, Config{Addressing: AddrContainerIP})
	if !rt.DirectAddressing() {
		t.Fatal("DirectAddressing() = false with AddrContainerIP")
	}
	gw := rt.HostGateway()
	if gw == "" {
		t.Skip("the network has no IPv4 gateway")
	}
	l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatalf("listening on the gateway %s: %v", gw, err)
	}
	defer l.Close()
	beacon := net.JoinHostPort(gw, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))

	started := make(chan runtime.Instance, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		in, err := rt.Start(ctx, runtime.InstanceSpec{
			Image:    images[runtimetest.App],
			Service:  "svc",
			Revision: "svc-00004-early",
			Env:      []runtime.EnvVar{{Name: "TESTAPP_BEACON", Value: beacon}},
		})
		if err != nil {
			t.Errorf("Start: %v", err)
		}
		started <- in
	}()
	l.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("the instance did not reach the gateway at %s: %v", beacon, err)
	}
	defer c.Close()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, ok := rt.WaitInstanceAt(ctx, remote)
	in := <-started
	if in == nil {
		t.FailNow()
	}
	defer stop(t, in)
	if !ok || p.ID != in.ID() || p.Revision != "svc-00004-early" {
		t.Errorf("WaitInstanceAt(%s) during startup = %+v, %v; want instance %s of svc-00004-early", remote, p, ok, in.ID())
	}

	// The host itself (the gateway address) is no instance.
	if p, ok := rt.WaitInstanceAt(ctx, netip.MustParseAddr(gw)); ok {
		t.Errorf("WaitInstanceAt(gateway) = %+v", p)
	}

	// The container runs without NET_RAW: it cannot forge its address.
	insp, err := engine.ContainerInspect(context.Background(), in.(*instance).cid, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cd := insp.Container.HostConfig.CapDrop; !slices.Contains(cd, "NET_RAW") && !slices.Contains(cd, "CAP_NET_RAW") {
		t.Errorf("CapDrop = %q, want NET_RAW dropped", insp.Container.HostConfig.CapDrop)
	}
}

func TestNoRawSockets(t *testing.T) {
	r := &Runtime{cfg: Config{Owner: "me"}, network: "bridge", direct: true}
	_, hc := r.containerConfigs(runtime.InstanceSpec{Image: "example/app:1"}, "0123456789ab", container.Resources{}, nil)
	if !slices.Contains(hc.CapDrop, "NET_RAW") {
		t.Errorf("CapDrop = %q, want NET_RAW", hc.CapDrop)
	}
}
