package history

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

var svc = Key{"proj", "us-central1", "hello"}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "usher.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// at is a settable clock.
type at struct{ t time.Time }

func (c *at) now() time.Time { return c.t }

func newRecorder(st store.Store, node string, clock *at) *Recorder {
	r := New(st, node)
	r.now = clock.now
	return r
}

func traffic(r *Recorder) {
	for range 90 {
		r.Record(svc, Sample{Decision: Allowed, Status: 200, Forwarded: true, Total: 3 * time.Millisecond, Usher: 200 * time.Microsecond})
	}
	for range 10 {
		r.Record(svc, Sample{Decision: Allowed, Status: 500, Forwarded: true, Total: 700 * time.Millisecond, Usher: time.Millisecond})
	}
	for range 5 {
		r.Record(svc, Sample{Decision: Unauthenticated, Status: 401})
	}
	for range 3 {
		r.Record(svc, Sample{Decision: Forbidden, Status: 403})
	}
	for i := range 7 {
		r.Record(svc, Sample{Decision: Limited, Status: 429, Anonymous: true, Client: netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 2)})})
	}
}

func TestQueryCountsAndPercentiles(t *testing.T) {
	clock := &at{time.Unix(1_800_000_000, 0)}
	r := newRecorder(openStore(t), "a", clock)
	traffic(r)
	r.Instances(svc, 2, 4*time.Second)
	clock.t = clock.t.Add(15 * time.Second)
	r.Instances(svc, 3, 10*time.Second)
	res, err := r.Query(context.Background(), svc, "1h")
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	want := map[string]uint64{"allowed": 100, "401": 5, "403": 3, "429": 7, "503": 0}
	for k, v := range want {
		if s.Requests[k] != v {
			t.Errorf("requests %s = %d, want %d", k, s.Requests[k], v)
		}
	}
	if s.Classes["2xx"] != 90 || s.Classes["5xx"] != 10 || s.Anonymous != 7 {
		t.Errorf("classes %v, anonymous %d", s.Classes, s.Anonymous)
	}
	if s.LatencyMs.P50 != 4 || s.LatencyMs.P95 != 1024 || s.LatencyMs.P99 != 1024 || s.UsherLatencyMs.P50 != 1 {
		t.Errorf("latency %+v, usher %+v", s.LatencyMs, s.UsherLatencyMs)
	}
	if s.Instances != 3 || s.BillableSeconds != 10 {
		t.Errorf("instances %d, billable %v; want 3, 10", s.Instances, s.BillableSeconds)
	}
	if len(res.Points) != 2 || res.Step != "10s" {
		t.Errorf("%d points of %s, want 2 of 10s", len(res.Points), res.Step)
	}
	if len(res.BusiestClients) != 2 || res.BusiestClients[0] != (Client{"192.0.2.0", 4}) {
		t.Errorf("busiest clients %v", res.BusiestClients)
	}
	if _, err := r.Query(context.Background(), svc, "2h"); err == nil {
		t.Error("window 2h accepted")
	}
	for _, w := range []string{"6h", "1d", "7d"} {
		res, err := r.Query(context.Background(), svc, w)
		if err != nil || res.Summary.Requests["allowed"] != 100 {
			t.Errorf("window %s: %v, %v", w, res.Summary.Requests, err)
		}
	}
}

// A restart keeps the history: a new Recorder of the same node loads what
// the last one flushed.
func TestRestartKeepsHistory(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clock := &at{time.Unix(1_800_000_000, 0)}
	r := newRecorder(st, "a", clock)
	traffic(r)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	again := newRecorder(st, "a", clock)
	if err := again.Load(ctx, func(Key) bool { return true }); err != nil {
		t.Fatal(err)
	}
	again.Record(svc, Sample{Decision: Allowed, Status: 200})
	for _, w := range []string{"1h", "7d"} {
		res, err := again.Query(ctx, svc, w)
		if err != nil || res.Summary.Requests["allowed"] != 101 || res.Summary.Requests["401"] != 5 {
			t.Errorf("after restart, %s: %v, %v", w, res.Summary.Requests, err)
		}
	}
}

// Several nodes: each one's share counts once in a read on any node.
func TestNodesMerged(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clock := &at{time.Unix(1_800_000_000, 0)}
	a, b := newRecorder(st, "a", clock), newRecorder(st, "b", clock)
	traffic(a)
	traffic(b)
	a.Instances(svc, 1, 0)
	b.Instances(svc, 2, 0)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Query(ctx, svc, "1h")
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Requests["allowed"] != 200 || res.Summary.Instances != 3 || strings.Join(res.Nodes, ",") != "a,b" {
		t.Errorf("merged: %v, %d instances, nodes %v", res.Summary.Requests, res.Summary.Instances, res.Nodes)
	}
}

// Old chunks and forgotten services' chunks are deleted by their node.
func TestExpiryAndForget(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clock := &at{time.Unix(1_800_000_000, 0)}
	r := newRecorder(st, "a", clock)
	traffic(r)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	count := func() map[string]int {
		entries, _, _ := st.List(ctx, Prefix)
		n := map[string]int{}
		for _, e := range entries {
			_, _, step, _, _ := splitChunkKey(e.Key)
			n[time.Duration(step*int64(time.Second)).String()]++
		}
		return n
	}
	if n := count(); n["10s"] != 1 || n["1m0s"] != 1 || n["10m0s"] != 1 {
		t.Fatalf("chunks after a flush: %v", n)
	}
	clock.t = clock.t.Add(2 * time.Hour) // the 10 s chunk is out of its hour
	r.Record(svc, Sample{Decision: Allowed, Status: 200})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n["10s"] != 1 || n["1m0s"] != 2 {
		t.Fatalf("chunks two hours later: %v (want the old 10 s chunk gone)", n)
	}
	res, _ := r.Query(ctx, svc, "1h")
	if res.Summary.Requests["allowed"] != 1 {
		t.Errorf("last hour after two: %v", res.Summary.Requests)
	}
	r.Forget(svc)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); len(n) != 0 {
		t.Errorf("chunks of a forgotten service: %v", n)
	}
	// At start, a service that no longer exists is forgotten too.
	traffic(r)
	r.Flush(ctx)
	fresh := newRecorder(st, "a", clock)
	fresh.Load(ctx, func(Key) bool { return false })
	fresh.Flush(ctx)
	if n := count(); len(n) != 0 {
		t.Errorf("chunks of a service gone while the node was down: %v", n)
	}
}

func TestLatencyBucket(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 0, time.Millisecond: 0, 1500 * time.Microsecond: 1, 2 * time.Millisecond: 1,
		3 * time.Millisecond: 2, time.Second: 10, time.Hour: latencyBuckets - 1} {
		if got := latencyBucket(d); got != want {
			t.Errorf("latencyBucket(%v) = %d, want %d", d, got, want)
		}
	}
}

// BenchmarkRecord is the gateway's per-request cost: no allocation once the
// service's rings exist.
func BenchmarkRecord(b *testing.B) {
	r := New(nil, "a")
	smp := Sample{Decision: Allowed, Status: 200, Forwarded: true, Total: 3 * time.Millisecond, Usher: 100 * time.Microsecond}
	r.Record(svc, smp)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Record(svc, smp)
	}
}

// Attacker's view: a flooder first sends one request from each of many
// fresh addresses (an IPv6 prefix has plenty), filling the client table,
// then floods from one more address. The flooder must still be listed
// first among the busiest clients, in this window and the next.
func TestFlooderListedAfterTableFilled(t *testing.T) {
	clock := &at{time.Unix(1_700_000_000, 0)}
	clock.t = clock.t.Add(-time.Duration(clock.t.Unix()%clientWindow) * time.Second) // a window's start
	r := newRecorder(openStore(t), "a", clock)
	base := netip.MustParseAddr("2001:db8::")
	decoy := func(i int) netip.Addr {
		b := base.As16()
		b[14], b[15] = byte(i>>8), byte(i)
		return netip.AddrFrom16(b)
	}
	flooder := netip.MustParseAddr("198.51.100.7")
	anon := func(a netip.Addr) { r.Record(svc, Sample{Decision: Allowed, Status: 200, Anonymous: true, Client: a}) }
	for round := range 2 {
		for i := range 4 * maxClients {
			anon(decoy(round*4*maxClients + i))
		}
		for range 1000 {
			anon(flooder)
		}
		res, err := r.Query(context.Background(), svc, "1h")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.BusiestClients) == 0 || res.BusiestClients[0].Address != flooder.String() || res.BusiestClients[0].Requests < 1000 {
			t.Fatalf("window %d: busiest clients %v, want %s first with at least 1000", round, res.BusiestClients, flooder)
		}
		clock.t = clock.t.Add(clientWindow * time.Second)
	}
}

// BenchmarkRecordFreshClients is the worst case of an anonymous flood:
// every request from a new address, the client table full.
func BenchmarkRecordFreshClients(b *testing.B) {
	r := New(nil, "a")
	smp := Sample{Decision: Allowed, Status: 200, Anonymous: true}
	var i uint32
	next := func() netip.Addr {
		i++
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for range 2 * maxClients {
		smp.Client = next()
		r.Record(svc, smp)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		smp.Client = next()
		r.Record(svc, smp)
	}
}

// A service deleted and created again under its name (by someone else,
// maybe) before the next flush starts with no history: none of the old
// service's requests or anonymous client addresses show on the new one,
// in memory or, after the flush, in the store.
func TestRecreatedServiceStartsAfresh(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clock := &at{time.Unix(1_800_000_000, 0)}
	r := newRecorder(st, "a", clock)
	traffic(r)
	r.Record(svc, Sample{Decision: Allowed, Status: 200, Anonymous: true, Client: netip.MustParseAddr("192.0.2.44")})
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r.Forget(svc)                                         // deleted
	r.Record(svc, Sample{Decision: Allowed, Status: 200}) // created again, called once
	check := func(when string) {
		t.Helper()
		res, err := r.Query(ctx, svc, "1h")
		if err != nil {
			t.Fatal(err)
		}
		if n := res.Summary.Requests["allowed"]; n != 1 || len(res.BusiestClients) != 0 {
			t.Errorf("%s: the new service shows %d allowed requests and clients %v; want 1 and none", when, n, res.BusiestClients)
		}
	}
	check("before the flush")
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the flush")
	fresh := newRecorder(st, "a", clock)
	if err := fresh.Load(ctx, func(Key) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if res, _ := fresh.Query(ctx, svc, "1h"); res.Summary.Requests["allowed"] != 1 {
		t.Errorf("after a restart: %d allowed requests, want 1", res.Summary.Requests["allowed"])
	}
}
