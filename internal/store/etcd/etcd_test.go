package etcd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/storetest"
)

// timeout only guards against hangs.
const timeout = 10 * time.Second

func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = timeout
	}
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%v, %q) = %v, want nil", cfg.Endpoints, cfg.Prefix, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close() = %v, want nil", err)
		}
	})
	return s
}

// conformance runs the store suite with a fresh prefix (an empty store) per
// subtest; before opening subtest n's store it calls hook(n), if set.
func conformance(t *testing.T, cfg Config, hook func(n int)) {
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		if hook != nil {
			hook(n)
		}
		c := cfg
		c.Prefix = fmt.Sprintf("/conformance-%d/", n)
		return openStore(t, c)
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url       string
		endpoints []string
		prefix    string
	}{
		{"etcd://127.0.0.1:2379", []string{"127.0.0.1:2379"}, "/usher/"},
		{"etcd://h1:2379,h2:2379,h3:2379/prod", []string{"h1:2379", "h2:2379", "h3:2379"}, "/prod/"},
		{"etcd://h1:2379/", []string{"h1:2379"}, "/usher/"},
		{"etcd://h1:2379/a/b/", []string{"h1:2379"}, "/a/b/"},
		{"etcd://[::1]:2379,10.0.0.2:32379/usher-staging", []string{"[::1]:2379", "10.0.0.2:32379"}, "/usher-staging/"},
	}
	for _, tt := range tests {
		cfg, err := ParseURL(tt.url)
		if err != nil {
			t.Errorf("ParseURL(%q) = %v, want nil", tt.url, err)
			continue
		}
		if !slices.Equal(cfg.Endpoints, tt.endpoints) || cfg.Prefix != tt.prefix {
			t.Errorf("ParseURL(%q) = %q %q, want %q %q", tt.url, cfg.Endpoints, cfg.Prefix, tt.endpoints, tt.prefix)
		}
	}

	bad := []struct{ url, want string }{
		{"http://h1:2379", "want etcd://HOST:PORT"},
		{"h1:2379", "want etcd://HOST:PORT"},
		{"etcd://", "no HOST:PORT"},
		{"etcd:///prefix", "no HOST:PORT"},
		{"etcd://h1", "want HOST:PORT"},
		{"etcd://h1:2379,,h2:2379", "empty endpoint"},
		{"etcd://h1:2379,", "empty endpoint"},
		{"etcd://h1:client", "not a number"},
		{"etcd://h1:99999", "not a number"},
		{"etcd://:2379", "empty host"},
		{"etcd://user:pw@h1:2379", "credentials"},
		{"etcd://h1:2379/my prefix", "only letters"},
		{"etcd://h1:2379/p?x=1", "query"},
	}
	for _, tt := range bad {
		_, err := ParseURL(tt.url)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseURL(%q) = %v, want an error containing %q", tt.url, err, tt.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"NoEndpoints", Config{}, "no endpoints"},
		{"BadEndpoint", Config{Endpoints: []string{"localhost"}}, "want HOST:PORT"},
		{"BadPrefix", Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/a b"}, "only letters"},
		{"CertWithoutKey", Config{Endpoints: []string{"127.0.0.1:2379"}, CertFile: "c.pem"}, "both --etcd-cert and --etcd-key"},
		{"MissingCA", Config{Endpoints: []string{"127.0.0.1:2379"}, CAFile: filepath.Join(dir, "nope.pem")}, "CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open = nil error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tt.want)
			}
		})
	}

	t.Run("Unreachable", func(t *testing.T) {
		ep := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]) // nothing listens
		start := time.Now()
		s, err := Open(t.Context(), Config{Endpoints: []string{ep}, DialTimeout: 500 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Fatal("Open = nil error, want unreachable")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Open took %v with a 500ms DialTimeout", took)
		}
		if !strings.Contains(err.Error(), ep) || !strings.Contains(err.Error(), "no answer") {
			t.Fatalf("Open = %v, want a no-answer error naming %s", err, ep)
		}
		t.Logf("unreachable: %v", err)
	})
}

// TestSingleMember runs everything that needs one etcd against one member.
func TestSingleMember(t *testing.T) {
	c := startCluster(t, 1, nil, nil)
	cfg := Config{Endpoints: c.endpoints()}

	t.Run("Conformance", func(t *testing.T) { conformance(t, cfg, nil) })
	t.Run("Compaction", func(t *testing.T) { testCompaction(t, c) })
	t.Run("TwoNodesConcurrentCAS", func(t *testing.T) { testTwoNodes(t, c) })
	t.Run("PrefixIsolation", func(t *testing.T) { testPrefixIsolation(t, c) })
	t.Run("SlowWatcherIsEnded", func(t *testing.T) { testSlowWatcher(t, c) })
	t.Run("LargeValueRejected", func(t *testing.T) {
		s := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/large/"})
		// etcd refuses requests over 1.5 MiB; the client refuses to send
		// over 2 MiB.
		for _, size := range []int{1600 << 10, 3 << 20} {
			_, err := s.Put(t.Context(), "big", make([]byte, size), store.AnyRevision)
			if err == nil || errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "--max-request-bytes") {
				t.Fatalf("Put(%d bytes) = %v, want a too-large error naming --max-request-bytes", size, err)
			}
		}
		mustPut(t, s, "big", string(make([]byte, 1<<20)), store.MustNotExist) // 1 MiB is fine
	})
	t.Run("TooManyOpsRejected", func(t *testing.T) {
		// etcd's --max-txn-ops defaults to 128: a larger Txn is refused
		// whole, with an error that says why (admin.MaxTxnOps plans for it).
		s := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/many/"})
		ops := make([]store.Op, 129)
		for i := range ops {
			ops[i] = store.Op{Key: fmt.Sprintf("k%03d", i), Value: []byte("v"), Expected: store.MustNotExist}
		}
		_, err := s.Txn(t.Context(), ops)
		if err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "--max-txn-ops") {
			t.Fatalf("Txn(129 ops) = %v, want a refusal naming --max-txn-ops", err)
		}
		if _, err := s.Get(t.Context(), "k000"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get(k000) after the refused Txn = %v, want ErrNotFound", err)
		}
		if _, err := s.Txn(t.Context(), ops[:128]); err != nil {
			t.Fatalf("Txn(128 ops) = %v, want nil", err)
		}
	})
}

// nextResp waits for one watch response.
func nextResp(t *testing.T, ch <-chan store.WatchResponse) (store.WatchResponse, bool) {
	t.Helper()
	select {
	case resp, ok := <-ch:
		return resp, ok
	case <-time.After(timeout):
		t.Fatalf("no watch response after %v", timeout)
		return store.WatchResponse{}, false
	}
}

func wantCompacted(t *testing.T, ch <-chan store.WatchResponse, what string) {
	t.Helper()
	resp, ok := nextResp(t, ch)
	if !ok || !errors.Is(resp.Err, store.ErrCompacted) || len(resp.Events) != 0 {
		t.Fatalf("%s: first response = %+v (open %v), want only ErrCompacted", what, resp, ok)
	}
	if _, ok := nextResp(t, ch); ok {
		t.Fatalf("%s: channel open after ErrCompacted, want closed", what)
	}
}

func wantEvent(t *testing.T, ch <-chan store.WatchResponse, typ store.EventType, key, value string, rev int64) {
	t.Helper()
	resp, ok := nextResp(t, ch)
	if !ok || resp.Err != nil || len(resp.Events) != 1 {
		t.Fatalf("watch response = %+v (open %v), want one event", resp, ok)
	}
	e := resp.Events[0]
	if e.Type != typ || e.Entry.Key != key || string(e.Entry.Value) != value || e.Entry.Revision != rev {
		t.Fatalf("watch event = %v %q=%q@%d, want %v %q=%q@%d", e.Type, e.Entry.Key, e.Entry.Value, e.Entry.Revision, typ, key, value, rev)
	}
}

func mustPut(t *testing.T, s store.Store, key, value string, expected int64) int64 {
	t.Helper()
	rev, err := s.Put(t.Context(), key, []byte(value), expected)
	if err != nil {
		t.Fatalf("Put(%q, %d) = %v, want nil", key, expected, err)
	}
	return rev
}

// testCompaction: etcd's compaction surfaces as store.ErrCompacted, and the
// List-then-Watch resync works afterwards.
func testCompaction(t *testing.T, c *cluster) {
	ctx := t.Context()
	raw := c.rawClient(t)
	s := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/compaction/"})

	r1 := mustPut(t, s, "a", "1", store.MustNotExist)
	mustPut(t, s, "b", "2", store.MustNotExist)
	r3 := mustPut(t, s, "a", "3", r1)
	live := s.Watch(ctx, "", r3) // established before the compaction

	// Compact at the current revision: everything before r3 is gone.
	if _, err := raw.Compact(ctx, r3, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact(%d) = %v", r3, err)
	}
	wantCompacted(t, s.Watch(ctx, "", r1), fmt.Sprintf("Watch(after=%d) with history compacted at %d", r1, r3))
	wantCompacted(t, s.Watch(ctx, "", r3-2), fmt.Sprintf("Watch(after=%d) with history compacted at %d", r3-2, r3))
	// The compaction revision itself is kept: after = r3-1 replays r3.
	wantEvent(t, s.Watch(ctx, "", r3-1), store.EventPut, "a", "3", r3)

	// Reads are unaffected.
	if e, err := s.Get(ctx, "a"); err != nil || string(e.Value) != "3" || e.Revision != r3 {
		t.Fatalf("Get(a) after compaction = %+v %v, want 3@%d", e, err, r3)
	}

	// Resync: List, then Watch from the listed revision.
	entries, rev, err := s.List(ctx, "")
	if err != nil || len(entries) != 2 {
		t.Fatalf("List after compaction = %d entries, %v; want 2", len(entries), err)
	}
	resynced := s.Watch(ctx, "", rev)
	r4, err := s.Delete(ctx, "b", store.AnyRevision)
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, resynced, store.EventDelete, "b", "", r4)
	// A watch that was live across the compaction goes on.
	wantEvent(t, live, store.EventDelete, "b", "", r4)
}

// testSlowWatcher: a watcher that does not read gets a prefix of the events,
// in order, then ErrCompacted, instead of an ever-growing buffer.
func testSlowWatcher(t *testing.T, c *cluster) {
	ctx := t.Context()
	s := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/slow/"})
	s.queueSize = 4
	_, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "", rev) // not read until the writes are done
	const writes = 100
	var last int64
	for i := range writes {
		last = mustPut(t, s, fmt.Sprintf("k%03d", i), "v", store.MustNotExist)
	}
	if last != rev+writes {
		t.Fatalf("last revision = %d, want %d (nobody else writes)", last, rev+writes)
	}
	next := rev + 1
	for {
		resp, ok := nextResp(t, ch)
		if !ok {
			t.Fatal("watch closed without ErrCompacted")
		}
		for _, ev := range resp.Events {
			if ev.Entry.Revision != next {
				t.Fatalf("event revision = %d, want %d", ev.Entry.Revision, next)
			}
			next++
		}
		if resp.Err == nil {
			continue
		}
		if !errors.Is(resp.Err, store.ErrCompacted) {
			t.Fatalf("watch error = %v, want ErrCompacted", resp.Err)
		}
		if _, ok := nextResp(t, ch); ok {
			t.Fatal("watch open after ErrCompacted, want closed")
		}
		if next > last {
			t.Fatalf("slow watcher got all %d events, want it ended", writes)
		}
		return
	}
}

// ack is one acknowledged increment of the shared counter.
type ack struct {
	value int
	rev   int64
}

// incrResult says how one increment attempt ended.
type incrResult int

const (
	incrOK       incrResult = iota
	incrConflict            // lost the compare-and-swap: read again
	incrReadErr             // the Get failed: nothing was written
	incrWriteErr            // the Put failed: it may or may not have committed
)

// incrOnce reads the counter and writes value+1 with compare-and-swap.
func incrOnce(ctx context.Context, s store.Store, key string) (ack, incrResult, error) {
	n, expected := 0, store.MustNotExist
	e, err := s.Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return ack{}, incrReadErr, err
	default:
		if n, err = strconv.Atoi(string(e.Value)); err != nil {
			return ack{}, incrReadErr, err
		}
		expected = e.Revision
	}
	rev, err := s.Put(ctx, key, []byte(strconv.Itoa(n+1)), expected)
	switch {
	case err == nil:
		return ack{n + 1, rev}, incrOK, nil
	case errors.Is(err, store.ErrConflict):
		return ack{}, incrConflict, err
	}
	return ack{}, incrWriteErr, err
}

// counterWatch follows the counter through one store, resuming from the last
// revision it saw whenever the watch ends with an error other than
// ErrCompacted, as Usher's watchers do.
type counterWatch struct {
	mu      sync.Mutex
	seen    []ack
	resumes []string
	fatal   error
	changed chan struct{}
	// started is closed once the first Watch call has returned.
	started chan struct{}
}

func watchCounter(ctx context.Context, s store.Store, key string, after int64) *counterWatch {
	w := &counterWatch{changed: make(chan struct{}, 1), started: make(chan struct{})}
	notify := func() {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	go func() {
		var once sync.Once
		for ctx.Err() == nil {
			var err error
			ch := s.Watch(ctx, key, after)
			once.Do(func() { close(w.started) })
			for resp := range ch {
				if err = resp.Err; err != nil {
					break
				}
				w.mu.Lock()
				for _, ev := range resp.Events {
					n, perr := strconv.Atoi(string(ev.Entry.Value))
					if ev.Type != store.EventPut || ev.Entry.Key != key || perr != nil {
						w.fatal = fmt.Errorf("unexpected event %v %q=%q", ev.Type, ev.Entry.Key, ev.Entry.Value)
					}
					w.seen = append(w.seen, ack{n, ev.Entry.Revision})
					after = ev.Entry.Revision
				}
				w.mu.Unlock()
				notify()
			}
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			if err == nil {
				err = errors.New("watch closed without an error")
			}
			if errors.Is(err, store.ErrCompacted) || w.fatal != nil {
				if w.fatal == nil {
					w.fatal = err
				}
				w.mu.Unlock()
				notify()
				return
			}
			w.resumes = append(w.resumes, err.Error())
			w.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

// check waits until the watch saw value final, then checks it saw exactly
// 1..final in revision order and every acknowledged write at its revision.
func (w *counterWatch) check(t *testing.T, final int, acks []ack) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		n, fatal := len(w.seen), w.fatal
		w.mu.Unlock()
		if fatal != nil {
			t.Fatalf("counter watch: %v", fatal)
		}
		if n >= final {
			break
		}
		select {
		case <-w.changed:
		case <-deadline:
			t.Fatalf("counter watch saw %d events after %v, want %d", n, timeout, final)
		}
	}
	w.mu.Lock()
	seen := slices.Clone(w.seen)
	w.mu.Unlock()
	if len(seen) != final {
		t.Fatalf("counter watch saw %d events, want %d (duplicates?)", len(seen), final)
	}
	for i, a := range seen {
		if a.value != i+1 {
			t.Fatalf("counter watch event %d = %d@%d, want value %d (skipped or repeated update)", i, a.value, a.rev, i+1)
		}
		if i > 0 && a.rev <= seen[i-1].rev {
			t.Fatalf("counter watch event %d at revision %d after %d, want increasing", i, a.rev, seen[i-1].rev)
		}
	}
	for _, a := range acks {
		if got := seen[a.value-1]; got != a {
			t.Fatalf("acknowledged write %d@%d, but the watch saw %d@%d", a.value, a.rev, got.value, got.rev)
		}
	}
}

func finalCounter(t *testing.T, s store.Store, key string) int {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s) = %v", key, err)
	}
	n, err := strconv.Atoi(string(e.Value))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// testTwoNodes: compare-and-swap increments through two separate clients
// (two Usher nodes) on a healthy etcd lose no update and allow no error.
func testTwoNodes(t *testing.T, c *cluster) {
	const perNode, increments = 4, 25
	ctx := t.Context()
	nodes := []*Store{
		openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/two-nodes/"}),
		openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/two-nodes/"}),
	}
	_, rev0, err := nodes[0].List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	w := watchCounter(ctx, nodes[1], "counter", rev0)

	var (
		mu        sync.Mutex
		acks      []ack
		conflicts int
		wg        sync.WaitGroup
	)
	for _, s := range nodes {
		for range perNode {
			wg.Go(func() {
				for done := 0; done < increments; {
					a, res, err := incrOnce(ctx, s, "counter")
					mu.Lock()
					switch res {
					case incrOK:
						acks = append(acks, a)
						done++
					case incrConflict:
						conflicts++
					default:
						t.Errorf("increment = %v, want nil or ErrConflict", err)
						mu.Unlock()
						return
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := 2 * perNode * increments
	if got := finalCounter(t, nodes[0], "counter"); got != want {
		t.Fatalf("counter = %d, want %d (lost updates)", got, want)
	}
	w.check(t, want, acks)
	t.Logf("%d increments through 2 clients, %d CAS conflicts retried", want, conflicts)
}

// testPrefixIsolation: two Usher clusters sharing an etcd under /tenant/ and
// /tenant-b/ (a prefix of the first without the trailing slash) never see
// each other's keys, nor keys outside both.
func testPrefixIsolation(t *testing.T, c *cluster) {
	ctx := t.Context()
	raw := c.rawClient(t)
	a := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/tenant"})
	b := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/tenant-b/"})
	if a.Prefix() != "/tenant/" {
		t.Fatalf("Prefix() = %q, want /tenant/", a.Prefix())
	}

	ra := mustPut(t, a, "k", "A", store.MustNotExist)
	mustPut(t, b, "k", "B", store.MustNotExist)
	if _, err := raw.Put(ctx, "/tenantx", "foreign"); err != nil {
		t.Fatal(err)
	}
	got, err := raw.Get(ctx, "/tenant/k")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "A" || got.Kvs[0].ModRevision != ra {
		t.Fatalf("raw Get(/tenant/k) = %v %v, want A@%d", got, err, ra)
	}

	entries, rev, err := a.List(ctx, "")
	if err != nil || len(entries) != 1 || entries[0].Key != "k" || string(entries[0].Value) != "A" {
		t.Fatalf("List through /tenant/ = %+v %v, want only k=A", entries, err)
	}
	// The revision is etcd's, shared by everyone: it moved past a's write.
	if rev <= ra {
		t.Fatalf("List revision = %d, want > %d (others wrote since)", rev, ra)
	}

	ch := a.Watch(ctx, "", rev)
	mustPut(t, b, "k2", "B", store.MustNotExist)
	if _, err := raw.Put(ctx, "/tenantx", "foreign2"); err != nil {
		t.Fatal(err)
	}
	rz := mustPut(t, a, "z", "A", store.MustNotExist)
	// z is the first event a's watch may deliver.
	wantEvent(t, ch, store.EventPut, "z", "A", rz)
}

// TestThreeMembers runs against a three-member cluster on loopback and
// SIGKILLs the leader while Usher nodes write and watch, then during the
// conformance suite.
func TestThreeMembers(t *testing.T) {
	c := startCluster(t, 3, nil, nil)
	raw := c.rawClient(t)

	var killed *member
	t.Run("WritersAcrossLeaderKill", func(t *testing.T) {
		killed = testWritersAcrossKill(t, c, raw)
	})
	if killed == nil {
		t.FailNow()
	}

	t.Run("KilledMemberRejoins", func(t *testing.T) {
		start := time.Now()
		killed.start(t)
		c.waitHealthy(t, killed)
		// A linearizable read through the restarted member alone.
		s := openStore(t, Config{Endpoints: []string{killed.endpoint()}, Prefix: "/kill/"})
		want := finalCounter(t, openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/kill/"}), "counter")
		if got := finalCounter(t, s, "counter"); got != want {
			t.Fatalf("counter through restarted %s = %d, want %d", killed.name, got, want)
		}
		t.Logf("%s restarted from its data dir and caught up in %v", killed.name, time.Since(start).Round(time.Millisecond))
	})

	t.Run("ConformanceWithLeaderKilledMidRun", func(t *testing.T) {
		if len(c.running()) != 3 {
			t.Fatalf("%d members running, want 3", len(c.running()))
		}
		// Kill the leader between subtests, so the suite's own writes
		// are never in flight at that moment (an in-flight write would
		// fail with an unknown outcome: see WritersAcrossLeaderKill). The
		// rest of the suite runs on the two survivors.
		const killBefore = 6
		conformance(t, Config{Endpoints: c.endpoints()}, func(n int) {
			if n != killBefore {
				return
			}
			m := c.leader(t, raw)
			start := time.Now()
			m.kill()
			c.waitHealthy(t, c.running()...)
			t.Logf("SIGKILLed leader %s before subtest %d; survivors healthy after %v", m.name, n, time.Since(start).Round(time.Millisecond))
		})
	})
}

// testWritersAcrossKill: two Usher nodes (separate clients over all three
// endpoints) increment one counter with compare-and-swap; mid-run the leader
// is SIGKILLed. Writes must keep succeeding through the two survivors, no
// acknowledged write may be lost, and a watch through one node must see every
// value exactly once, in order, across the kill.
func testWritersAcrossKill(t *testing.T, c *cluster, raw *clientv3.Client) *member {
	const (
		perNode        = 2
		acksBeforeKill = 50
		acksAfterKill  = 15 // per writer
		// A write in flight to a dead leader hangs until etcd's request
		// timeout (7s with the default election timeout): the writers
		// here bound each increment, as latency-sensitive callers should.
		opTimeout = 2 * time.Second
	)
	ctx := t.Context()
	eps := c.endpoints()
	reversed := slices.Clone(eps)
	slices.Reverse(reversed)
	nodes := []*Store{
		openStore(t, Config{Endpoints: eps, Prefix: "/kill/"}),
		openStore(t, Config{Endpoints: reversed, Prefix: "/kill/"}),
	}
	_, rev0, err := nodes[0].List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	w := watchCounter(ctx, nodes[1], "counter", rev0)

	// A third node's watch is pinned to the member that will be killed: its
	// client knows only that member when the watch starts, then learns the
	// others, so the etcd client must move the watch when the member dies.
	victim := c.leader(t, raw)
	pinned := openStore(t, Config{Endpoints: []string{victim.endpoint()}, Prefix: "/kill/"})
	wPinned := watchCounter(ctx, pinned, "counter", rev0)
	select {
	case <-wPinned.started:
	case <-time.After(timeout):
		t.Fatal("pinned watch not started")
	}
	pinned.cli.SetEndpoints(eps...)

	type writer struct {
		acks      []ack
		afterKill atomic.Int64
		ambiguous int           // failed Puts: committed or not
		errs      []string      // every failure, with its time relative to the kill
		slowest   time.Duration // longest successful increment
	}
	var (
		writers  []*writer
		total    atomic.Int64
		killedAt atomic.Pointer[time.Time]
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	since := func() string {
		if k := killedAt.Load(); k != nil {
			return fmt.Sprintf("kill%+v", time.Since(*k).Round(time.Millisecond))
		}
		return "before kill"
	}
	for _, s := range nodes {
		for range perNode {
			wr := &writer{}
			writers = append(writers, wr)
			wg.Go(func() {
				for !stop.Load() && ctx.Err() == nil {
					start := time.Now()
					octx, cancel := context.WithTimeout(ctx, opTimeout)
					a, res, err := incrOnce(octx, s, "counter")
					cancel()
					switch res {
					case incrOK:
						wr.acks = append(wr.acks, a)
						wr.slowest = max(wr.slowest, time.Since(start))
						total.Add(1)
						if killedAt.Load() != nil {
							wr.afterKill.Add(1)
						}
					case incrConflict:
					case incrReadErr:
						wr.errs = append(wr.errs, fmt.Sprintf("%s read: %v", since(), err))
					case incrWriteErr:
						wr.ambiguous++
						wr.errs = append(wr.errs, fmt.Sprintf("%s write: %v", since(), err))
					}
				}
			})
		}
	}
	stopWriters := func() { stop.Store(true); wg.Wait() }
	defer stopWriters()

	waitUntil := func(what string, limit time.Duration, cond func() bool) {
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				stopWriters()
				for i, wr := range writers {
					t.Logf("writer %d: %d acks (%d after kill), errors: %q", i, len(wr.acks), wr.afterKill.Load(), wr.errs)
				}
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("acks before the kill", 20*time.Second, func() bool { return total.Load() >= acksBeforeKill })

	leader := c.leader(t, raw)
	if leader != victim {
		t.Logf("leadership moved from %s to %s before the kill; killing %s (the pinned watch's member)", victim.name, leader.name, victim.name)
		leader = victim
	}
	now := time.Now()
	killedAt.Store(&now) // before the signal: failures it causes count as after
	beforeKill := total.Load()
	leader.kill()

	waitUntil("every writer succeeding after the kill", 30*time.Second, func() bool {
		for _, wr := range writers {
			if wr.afterKill.Load() < acksAfterKill {
				return false
			}
		}
		return true
	})
	recovered := time.Since(now)
	stopWriters()

	var (
		acks      []ack
		ambiguous int
		errs      []string
		slowest   time.Duration
	)
	for _, wr := range writers {
		acks = append(acks, wr.acks...)
		ambiguous += wr.ambiguous
		errs = append(errs, wr.errs...)
		slowest = max(slowest, wr.slowest)
	}
	for _, e := range errs {
		if strings.HasPrefix(e, "before kill") {
			t.Errorf("error before the kill: %s", e)
		}
	}
	final := finalCounter(t, nodes[0], "counter")
	// Every acknowledged increment is in; of the failed writes, some may
	// have committed (etcd applied them, the reply was lost).
	if final < len(acks) || final > len(acks)+ambiguous {
		t.Fatalf("counter = %d, want between %d acknowledged and %d (+%d unknown-outcome writes)",
			final, len(acks), len(acks)+ambiguous, ambiguous)
	}
	w.check(t, final, acks)
	wPinned.check(t, final, acks)

	w.mu.Lock()
	resumes := slices.Clone(w.resumes)
	w.mu.Unlock()
	wPinned.mu.Lock()
	resumes = append(resumes, wPinned.resumes...)
	wPinned.mu.Unlock()
	t.Logf("leader %s SIGKILLed after %d acked increments; every writer had %d more acked %v after the kill; "+
		"counter %d = %d acked + %d of %d unknown-outcome writes; slowest successful increment %v; "+
		"both watches (one pinned to %s) saw every value once in order, resumed by the caller %d times %q",
		leader.name, beforeKill, acksAfterKill, recovered.Round(time.Millisecond),
		final, len(acks), final-len(acks), ambiguous, slowest.Round(time.Millisecond), victim.name, len(resumes), resumes)
	for _, e := range errs {
		t.Logf("  %s", e)
	}
	return leader
}

// TestTLS runs a member that serves clients over TLS and requires client
// certificates, and connects with Config.CertFile/KeyFile/CAFile.
func TestTLS(t *testing.T) {
	needEtcd(t)
	files, clientConf := writeCerts(t)
	c := startCluster(t, 1, &files.server, clientConf)

	cfg := Config{Endpoints: c.endpoints(), CertFile: files.client.cert, KeyFile: files.client.key, CAFile: files.client.ca}
	conformance(t, cfg, nil)

	negatives := []struct {
		name string
		cfg  Config
	}{
		{"NoClientCert", Config{Endpoints: c.endpoints(), CAFile: files.client.ca}},
		{"Plaintext", Config{Endpoints: c.endpoints()}},
	}
	for _, tt := range negatives {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DialTimeout = time.Second
			s, err := Open(t.Context(), tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open = nil error, want refused")
			}
			t.Logf("Open: %v", err)
		})
	}
}

type certFiles struct{ server, client tlsFiles }

// writeCerts makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
func writeCerts(t *testing.T) (certFiles, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	tmpl := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
	}

	caKey := newKey()
	caT := tmpl("usher test CA")
	caT.IsCA, caT.BasicConstraintsValid, caT.KeyUsage = true, true, x509.KeyUsageCertSign
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	caPath := write("ca.pem", "CERTIFICATE", caDER)

	leaf := func(name string, usage x509.ExtKeyUsage) tlsFiles {
		k := newKey()
		lt := tmpl(name)
		lt.KeyUsage = x509.KeyUsageDigitalSignature
		lt.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		lt.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		der, err := x509.CreateCertificate(rand.Reader, lt, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return tlsFiles{
			cert: write(name+".pem", "CERTIFICATE", der),
			key:  write(name+"-key.pem", "PRIVATE KEY", kder),
			ca:   caPath,
		}
	}
	files := certFiles{server: leaf("server", x509.ExtKeyUsageServerAuth), client: leaf("client", x509.ExtKeyUsageClientAuth)}
	conf, err := clientTLS(Config{CertFile: files.client.cert, KeyFile: files.client.key, CAFile: caPath})
	if err != nil {
		t.Fatal(err)
	}
	return files, conf
}
