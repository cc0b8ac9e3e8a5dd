package pool

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/runtime/process"
)

// BenchmarkColdStart: from a request for a revision with no instance to its
// first answer (process runtime, a small Go server).
func BenchmarkColdStart(b *testing.B) {
	app := build(b, "./testdata/slowapp")
	p := New(Config{Runtime: newProcessRuntime(), StopGrace: time.Second})
	defer p.Close(context.Background())
	ctx := context.Background()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		rev := revision(fmt.Sprintf("svc-%05d-abc", i), app)
		begin := time.Now()
		if err := call(ctx, p, rev, "/"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(begin)
		p.Retire(ctx, func(string) bool { return false })
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/coldstart")
}

// BenchmarkColdStartSandboxed: as BenchmarkColdStart, with the instance in
// the process sandbox (namespaces, its init, relays), reached through its
// network namespace; without egress and with it (a veth pair with NAT, and
// cgroup limits where the machine has them). Needs root.
func BenchmarkColdStartSandboxed(b *testing.B) {
	for _, egress := range []bool{false, true} {
		name := "Egress=none"
		if egress {
			name = "Egress=all"
		}
		b.Run(name, func(b *testing.B) { benchColdStartSandboxed(b, egress) })
	}
}

func benchColdStartSandboxed(b *testing.B, egress bool) {
	rt := process.New(process.Config{Sandbox: &process.Sandbox{Egress: egress}})
	defer rt.Close()
	if ok, err := rt.Sandboxed(); !ok {
		b.Skipf("no sandbox here: %v", err)
	}
	app := build(b, "./testdata/slowapp")
	p := New(Config{Runtime: rt, StopGrace: time.Second})
	defer p.Close(context.Background())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       rt.DialContext,
	}}
	ctx := context.Background()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		rev := revision(fmt.Sprintf("svc-%05d-abc", i), app)
		begin := time.Now()
		lease, err := p.Acquire(ctx, Key(rev), rev)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := client.Get("http://" + lease.Addr() + "/")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lease.Release()
		total += time.Since(begin)
		p.Retire(ctx, func(string) bool { return false })
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/coldstart")
}
