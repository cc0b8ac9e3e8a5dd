// Package history keeps each service's recent metrics without an external
// Prometheus, for the console's Metrics tab and `usher run services
// metrics`: requests by the gateway's decision and response class,
// latency percentiles (total, and Usher's own share), instances, billable
// instance time, anonymous requests and the busiest anonymous clients.
//
// Each node records its own traffic in ring buffers per service at three
// resolutions: 10 s for the last hour, 1 min for the last six hours and
// 10 min for the last week. A service costs nothing until its first
// request, then about 260 KB. Every 30 s (and when the node stops) the
// chunks of 60 slots that changed are written to the store under
// metrics/PROJECT/REGION/SERVICE/NODE/STEP/CHUNKSTART; a node loads its own
// at start, so a restart keeps the history, and a read merges every node's
// share (this node's from memory, the others' as of their last write).
// Chunks older than a week, and those of services that no longer exist,
// are deleted by the node that wrote them. The busiest anonymous clients
// are this node's, from memory (the last 20 minutes or so), never stored.
//
// Recording is on the gateway's hot path: one shard read lock, one
// per-service mutex, no allocation once the service's rings exist.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/store"
)

// Prefix is where the history lives in the store.
const Prefix = "metrics/"

// Decision is what the gateway decided for a request.
type Decision uint8

const (
	Allowed         Decision = iota // passed authorization (whatever the instance answered)
	Unauthenticated                 // 401
	Forbidden                       // 403
	Limited                         // 429: anonymous rate limit, or no slot in the queue
	Unavailable                     // 503: no instance or revision could take it
	numDecisions
)

var decisionNames = [numDecisions]string{"allowed", "401", "403", "429", "503"}

func (d Decision) String() string { return decisionNames[d] }

// Latency histogram: bucket i counts latencies up to 1 ms × 2^i, the last
// bucket everything slower (about 8 s and more).
const latencyBuckets = 14

// Sample is one request.
type Sample struct {
	Decision Decision
	// Status is what the client got (its response class is counted).
	Status int
	// Anonymous: admitted without authorization (a public service).
	Anonymous bool
	// Client is the anonymous caller's address (zero: not recorded).
	Client netip.Addr
	// Forwarded: an instance answered; Total and Usher are then its
	// latency and Usher's share of it.
	Forwarded    bool
	Total, Usher time.Duration
}

// Key names a service.
type Key struct{ Project, Region, Service string }

func (k Key) prefix() string { return Prefix + k.Project + "/" + k.Region + "/" + k.Service + "/" }

// bucket is one slot of a ring: what happened in [Start, Start+step).
type bucket struct {
	Start      int64                  `json:"t"` // unix seconds; 0: empty
	Decisions  [numDecisions]uint32   `json:"d"`
	Classes    [4]uint32              `json:"c"` // 2xx, 3xx, 4xx, 5xx
	Anonymous  uint32                 `json:"a"`
	Total      [latencyBuckets]uint32 `json:"lt"`
	Usher      [latencyBuckets]uint32 `json:"lu"`
	Instances  uint32                 `json:"i"` // most seen at once
	BillableMs uint64                 `json:"b"`
}

func (b *bucket) add(o *bucket) {
	for i := range b.Decisions {
		b.Decisions[i] += o.Decisions[i]
	}
	for i := range b.Classes {
		b.Classes[i] += o.Classes[i]
	}
	b.Anonymous += o.Anonymous
	for i := range b.Total {
		b.Total[i] += o.Total[i]
		b.Usher[i] += o.Usher[i]
	}
	b.Instances += o.Instances
	b.BillableMs += o.BillableMs
}

// resolution is one ring's step and length.
type resolution struct {
	step  int64 // seconds
	slots int64
}

// The rings: 10 s × 360 (1 h), 1 min × 360 (6 h), 10 min × 1008 (7 d).
var resolutions = [3]resolution{{10, 360}, {60, 360}, {600, 1008}}

// chunkSlots is how many slots one stored chunk holds.
const chunkSlots = 60

// ring is one resolution's slots.
type ring struct {
	res   resolution
	slots []bucket
	dirty map[int64]bool // chunk starts changed since the last flush
	last  int64          // the chunk start last marked dirty (saves a map write)
}

func (r *ring) at(now int64) *bucket {
	start := now - now%r.res.step
	b := &r.slots[(start/r.res.step)%r.res.slots]
	if b.Start != start {
		*b = bucket{Start: start}
	}
	span := r.res.step * chunkSlots
	if c := start - start%span; c != r.last || len(r.dirty) == 0 {
		r.dirty[c] = true
		r.last = c
	}
	return b
}

// series is one service's rings and clients on this node.
type series struct {
	mu       sync.Mutex
	rings    [len(resolutions)]ring
	clients  clientCounts
	billable time.Duration // the pool's cumulative figure last seen
}

func newSeries() *series {
	s := &series{}
	for i, res := range resolutions {
		s.rings[i] = ring{res: res, slots: make([]bucket, res.slots), dirty: map[int64]bool{}}
	}
	s.clients.reset()
	return s
}

// Recorder records this node's samples and answers queries. It is safe for
// concurrent use.
type Recorder struct {
	st   store.Store
	node string
	now  func() time.Time
	seed maphash.Seed

	shards [64]shard

	// gone are services forgotten (deleted) whose chunks this node has
	// still to delete at the next Flush.
	goneMu sync.Mutex
	gone   map[Key]bool
}

type shard struct {
	mu sync.RWMutex
	m  map[Key]*series
}

// New returns a Recorder for node's share, stored in st.
func New(st store.Store, node string) *Recorder {
	r := &Recorder{st: st, node: node, now: time.Now, seed: maphash.MakeSeed(), gone: map[Key]bool{}}
	for i := range r.shards {
		r.shards[i].m = map[Key]*series{}
	}
	return r
}

func (r *Recorder) shard(k Key) *shard {
	return &r.shards[maphash.String(r.seed, k.Service)%uint64(len(r.shards))]
}

// get returns k's series, creating it when create is set.
func (r *Recorder) get(k Key, create bool) *series {
	sh := r.shard(k)
	sh.mu.RLock()
	s := sh.m[k]
	sh.mu.RUnlock()
	if s != nil || !create {
		return s
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s = sh.m[k]; s == nil {
		s = newSeries()
		sh.m[k] = s
	}
	return s
}

// Record counts one request to k.
func (r *Recorder) Record(k Key, smp Sample) {
	if smp.Decision >= numDecisions {
		return
	}
	now := r.now().Unix()
	s := r.get(k, true)
	total, usher := latencyBucket(smp.Total), latencyBucket(smp.Usher)
	class := smp.Status/100 - 2
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.rings {
		b := s.rings[i].at(now)
		b.Decisions[smp.Decision]++
		if smp.Decision == Allowed && class >= 0 && class < len(b.Classes) {
			b.Classes[class]++
		}
		if smp.Anonymous {
			b.Anonymous++
		}
		if smp.Forwarded {
			b.Total[total]++
			b.Usher[usher]++
		}
	}
	if smp.Anonymous && smp.Client.IsValid() {
		s.clients.add(smp.Client, now)
	}
}

// Instances records k's instances on this node now and its cumulative
// billable instance time (the pool's figure): called every few seconds for
// every routed service.
func (r *Recorder) Instances(k Key, instances int, billable time.Duration) {
	s := r.get(k, instances > 0 || billable > 0)
	if s == nil {
		return
	}
	now := r.now().Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	delta := billable - s.billable
	if delta < 0 { // a revision left the sum (retired): count from here on
		delta = 0
	}
	s.billable = billable
	if instances == 0 && delta == 0 {
		return
	}
	for i := range s.rings {
		b := s.rings[i].at(now)
		b.Instances = max(b.Instances, uint32(instances))
		b.BillableMs += uint64(delta.Milliseconds())
	}
}

// Forget drops k's history (the service is gone): at once from memory, and
// its chunks at the next Flush. A service created again under the name
// starts afresh, whatever it records before that Flush: it never shows the
// deleted one's requests or clients.
func (r *Recorder) Forget(k Key) {
	sh := r.shard(k)
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
	r.goneMu.Lock()
	r.gone[k] = true
	r.goneMu.Unlock()
}

func latencyBucket(d time.Duration) int {
	if d <= time.Millisecond {
		return 0
	}
	i := int(math.Ceil(math.Log2(float64(d) / float64(time.Millisecond))))
	return min(i, latencyBuckets-1)
}

// chunk is a stored chunk's value.
type chunk struct {
	Buckets []bucket `json:"buckets"`
}

func chunkKey(k Key, node string, step, start int64) string {
	return k.prefix() + node + "/" + strconv.FormatInt(step, 10) + "/" + strconv.FormatInt(start, 10)
}

// Flush writes this node's changed chunks and deletes its expired ones and
// those of forgotten services.
func (r *Recorder) Flush(ctx context.Context) error {
	now := r.now().Unix()
	var errs []error
	r.goneMu.Lock()
	gone := make([]Key, 0, len(r.gone))
	for k := range r.gone {
		gone = append(gone, k)
	}
	clear(r.gone)
	r.goneMu.Unlock()
	for _, k := range gone {
		if err := r.deleteOwn(ctx, k, func(int64, int64) bool { return true }); err != nil {
			r.goneMu.Lock()
			r.gone[k] = true // next time
			r.goneMu.Unlock()
			errs = append(errs, err)
			continue
		}
		// Recorded since under the name (created again): its chunks went
		// too, and are written again below.
		if s := r.get(k, false); s != nil {
			s.mu.Lock()
			for i := range s.rings {
				rg := &s.rings[i]
				span := rg.res.step * chunkSlots
				for _, b := range rg.slots {
					if b.Start != 0 {
						rg.dirty[b.Start-b.Start%span] = true
					}
				}
			}
			s.mu.Unlock()
		}
	}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		keys := make([]Key, 0, len(sh.m))
		for k := range sh.m {
			keys = append(keys, k)
		}
		sh.mu.RUnlock()
		for _, k := range keys {
			if err := r.flushSeries(ctx, k, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (r *Recorder) flushSeries(ctx context.Context, k Key, now int64) error {
	s := r.get(k, false)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	var ops []store.Op
	for i := range s.rings {
		rg := &s.rings[i]
		span := rg.res.step * chunkSlots
		for start := range rg.dirty {
			var c chunk
			for _, b := range rg.slots {
				if b.Start >= start && b.Start < start+span {
					c.Buckets = append(c.Buckets, b)
				}
			}
			slices.SortFunc(c.Buckets, func(a, b bucket) int { return int(a.Start - b.Start) })
			v, err := json.Marshal(c)
			if err != nil {
				s.mu.Unlock()
				return err
			}
			ops = append(ops, store.Op{Key: chunkKey(k, r.node, rg.res.step, start), Value: v, Expected: store.AnyRevision})
		}
		clear(rg.dirty)
	}
	s.mu.Unlock()
	for len(ops) > 0 { // etcd bounds the operations of one transaction
		n := min(len(ops), 64)
		if _, err := r.st.Txn(ctx, ops[:n]); err != nil {
			return fmt.Errorf("history of %s/%s/%s: %w", k.Project, k.Region, k.Service, err)
		}
		ops = ops[n:]
	}
	// Chunks that fell out of their ring's window.
	return r.deleteOwn(ctx, k, func(step, start int64) bool {
		for _, res := range resolutions {
			if res.step == step {
				return start+res.step*chunkSlots <= now-res.step*res.slots
			}
		}
		return true
	})
}

// deleteOwn deletes this node's chunks of k that drop says to.
func (r *Recorder) deleteOwn(ctx context.Context, k Key, drop func(step, start int64) bool) error {
	entries, _, err := r.st.List(ctx, k.prefix()+r.node+"/")
	if err != nil {
		return err
	}
	var ops []store.Op
	for _, e := range entries {
		step, start, ok := parseChunkTail(strings.TrimPrefix(e.Key, k.prefix()+r.node+"/"))
		if !ok || drop(step, start) {
			ops = append(ops, store.Op{Key: e.Key, Expected: store.AnyRevision})
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 64)
		if _, err := r.st.Txn(ctx, ops[:n]); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// parseChunkTail parses "STEP/START".
func parseChunkTail(s string) (step, start int64, ok bool) {
	a, b, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	step, err1 := strconv.ParseInt(a, 10, 64)
	start, err2 := strconv.ParseInt(b, 10, 64)
	return step, start, err1 == nil && err2 == nil && step > 0
}

// splitChunkKey parses a stored chunk's key.
func splitChunkKey(key string) (k Key, node string, step, start int64, ok bool) {
	parts := strings.Split(strings.TrimPrefix(key, Prefix), "/")
	if len(parts) != 6 || !strings.HasPrefix(key, Prefix) {
		return Key{}, "", 0, 0, false
	}
	step, start, ok = parseChunkTail(parts[4] + "/" + parts[5])
	return Key{parts[0], parts[1], parts[2]}, parts[3], step, start, ok
}

// Load reads this node's stored chunks into memory (at start, before
// recording), so the history survives a restart. Services that no longer
// exist (exists says) are forgotten: their chunks go at the next Flush.
func (r *Recorder) Load(ctx context.Context, exists func(Key) bool) error {
	entries, _, err := r.st.List(ctx, Prefix)
	if err != nil {
		return err
	}
	gone := map[Key]bool{}
	defer func() {
		for k := range gone {
			r.Forget(k)
		}
	}()
	for _, e := range entries {
		k, node, step, _, ok := splitChunkKey(e.Key)
		if !ok || node != r.node {
			continue
		}
		var c chunk
		if err := json.Unmarshal(e.Value, &c); err != nil {
			continue // an unreadable chunk is history lost, not an outage
		}
		s := r.get(k, true)
		s.mu.Lock()
		for i := range s.rings {
			rg := &s.rings[i]
			if rg.res.step != step {
				continue
			}
			for _, b := range c.Buckets {
				if b.Start <= 0 || b.Start%step != 0 {
					continue
				}
				slot := &rg.slots[(b.Start/step)%rg.res.slots]
				if slot.Start < b.Start {
					*slot = b
				}
			}
		}
		s.mu.Unlock()
		if exists != nil && !exists(k) {
			gone[k] = true
		}
	}
	return nil
}

// Windows a query may ask for, and the ring each reads.
var Windows = map[string]time.Duration{"1h": time.Hour, "6h": 6 * time.Hour, "1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func ringFor(window time.Duration) int {
	switch {
	case window <= time.Hour:
		return 0
	case window <= 6*time.Hour:
		return 1
	}
	return 2
}

// Point is one interval of a Result.
type Point struct {
	Start time.Time `json:"start"`
	// Requests by decision ("allowed", "401", "403", "429", "503") and, of
	// those allowed, by response class ("2xx" …).
	Requests  map[string]uint64 `json:"requests"`
	Classes   map[string]uint64 `json:"responseClasses"`
	Anonymous uint64            `json:"anonymousRequests"`
	// Latency percentiles of forwarded requests in milliseconds, total and
	// Usher's share (upper bounds of the histogram bucket they fall in);
	// zero when nothing was forwarded.
	LatencyMs      Percentiles `json:"latencyMs"`
	UsherLatencyMs Percentiles `json:"usherLatencyMs"`
	// Instances: the most at once (summed over nodes); billable instance
	// time in seconds.
	Instances       uint32  `json:"instances"`
	BillableSeconds float64 `json:"billableSeconds"`
}

// Percentiles are p50, p95 and p99.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Client is an anonymous client address and its requests.
type Client struct {
	Address  string `json:"address"`
	Requests uint64 `json:"requests"`
}

// Result is a service's history over a window.
type Result struct {
	Window  string  `json:"window"`
	Step    string  `json:"step"`
	Points  []Point `json:"points"`
	Summary Point   `json:"summary"` // the whole window (Start: its start)
	// BusiestClients are this node's busiest anonymous clients lately.
	BusiestClients []Client `json:"busiestAnonymousClients"`
	// Nodes whose share is included.
	Nodes []string `json:"nodes"`
}

// Query returns k's history over window (one of Windows), every node's
// share merged.
func (r *Recorder) Query(ctx context.Context, k Key, window string) (Result, error) {
	d, ok := Windows[window]
	if !ok {
		return Result{}, fmt.Errorf("window %q: want one of 1h, 6h, 1d, 7d", window)
	}
	ri := ringFor(d)
	res := resolutions[ri]
	now := r.now().Unix()
	from := now - int64(d/time.Second)
	merged := map[int64]*bucket{}
	add := func(b *bucket) {
		if b.Start == 0 || b.Start+res.step <= from || b.Start > now {
			return
		}
		m := merged[b.Start]
		if m == nil {
			m = &bucket{Start: b.Start}
			merged[b.Start] = m
		}
		m.add(b)
	}
	nodes := map[string]bool{r.node: true}
	var clients []Client
	if s := r.get(k, false); s != nil {
		s.mu.Lock()
		for i := range s.rings[ri].slots {
			add(&s.rings[ri].slots[i])
		}
		clients = s.clients.top(now, 5)
		s.mu.Unlock()
	}
	entries, _, err := r.st.List(ctx, k.prefix())
	if err != nil {
		return Result{}, err
	}
	for _, e := range entries {
		_, node, step, start, ok := splitChunkKey(e.Key)
		if !ok || node == r.node || step != res.step || start+step*chunkSlots <= from {
			continue
		}
		var c chunk
		if json.Unmarshal(e.Value, &c) != nil {
			continue
		}
		nodes[node] = true
		for i := range c.Buckets {
			add(&c.Buckets[i])
		}
	}
	out := Result{Window: window, Step: (time.Duration(res.step) * time.Second).String(), BusiestClients: clients}
	var total bucket
	starts := make([]int64, 0, len(merged))
	for t := range merged {
		starts = append(starts, t)
	}
	slices.Sort(starts)
	for _, t := range starts {
		b := merged[t]
		out.Points = append(out.Points, point(b))
		peak := max(total.Instances, b.Instances)
		total.add(b)
		total.Instances = peak
	}
	total.Start = from - from%res.step
	out.Summary = point(&total)
	for n := range nodes {
		out.Nodes = append(out.Nodes, n)
	}
	sort.Strings(out.Nodes)
	if out.Points == nil {
		out.Points = []Point{}
	}
	if out.BusiestClients == nil {
		out.BusiestClients = []Client{}
	}
	return out, nil
}

func point(b *bucket) Point {
	p := Point{
		Start:           time.Unix(b.Start, 0).UTC(),
		Requests:        map[string]uint64{},
		Classes:         map[string]uint64{},
		Anonymous:       uint64(b.Anonymous),
		LatencyMs:       percentiles(&b.Total),
		UsherLatencyMs:  percentiles(&b.Usher),
		Instances:       b.Instances,
		BillableSeconds: float64(b.BillableMs) / 1000,
	}
	for i, n := range b.Decisions {
		p.Requests[decisionNames[i]] = uint64(n)
	}
	for i, n := range b.Classes {
		p.Classes[strconv.Itoa(i+2)+"xx"] = uint64(n)
	}
	return p
}

// percentiles reads p50/p95/p99 off a histogram: each is the upper bound of
// the bucket it falls in (the last bucket reports twice its lower bound).
func percentiles(h *[latencyBuckets]uint32) Percentiles {
	var n uint64
	for _, c := range h {
		n += uint64(c)
	}
	if n == 0 {
		return Percentiles{}
	}
	at := func(q float64) float64 {
		rank := uint64(math.Ceil(q * float64(n)))
		var seen uint64
		for i, c := range h {
			seen += uint64(c)
			if seen >= rank {
				return math.Ldexp(1, i) // 1 ms × 2^i
			}
		}
		return math.Ldexp(1, latencyBuckets-1)
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

// clientCounts counts anonymous requests per client address over two
// 10-minute windows (the current one and the one before), at most
// maxClients addresses each. A full window counts a new address in place of
// its least-counted one, which the newcomer's count starts from
// (Space-Saving): whoever sent more than 1/maxClients of a window's
// requests is always listed, however many addresses came first (a flooder
// cannot hide behind one request from each of many addresses), and a
// count is at most the true one plus the least count when it came in.
type clientCounts struct {
	window    int64
	cur, prev clientTable
}

// clientTable is one window's counts: index maps an address to its slot.
type clientTable struct {
	index map[netip.Addr]int
	slots []clientSlot
}

type clientSlot struct {
	addr netip.Addr
	n    uint64
}

const (
	clientWindow = 600
	maxClients   = 512
)

func (t *clientTable) clear() {
	if t.index == nil {
		t.index = map[netip.Addr]int{}
	}
	clear(t.index)
	t.slots = t.slots[:0]
}

func (t *clientTable) add(a netip.Addr) {
	if i, ok := t.index[a]; ok {
		t.slots[i].n++
		return
	}
	if len(t.slots) < maxClients {
		t.index[a] = len(t.slots)
		t.slots = append(t.slots, clientSlot{a, 1})
		return
	}
	least := 0
	for i := range t.slots {
		if t.slots[i].n < t.slots[least].n {
			least = i
		}
	}
	delete(t.index, t.slots[least].addr)
	t.index[a] = least
	t.slots[least] = clientSlot{a, t.slots[least].n + 1}
}

func (c *clientCounts) reset() {
	c.cur.clear()
	c.prev.clear()
}

func (c *clientCounts) roll(now int64) {
	w := now - now%clientWindow
	switch {
	case w == c.window:
	case w == c.window+clientWindow:
		c.prev, c.cur = c.cur, c.prev
		c.cur.clear()
		c.window = w
	default:
		c.reset()
		c.window = w
	}
}

func (c *clientCounts) add(a netip.Addr, now int64) {
	c.roll(now)
	c.cur.add(a)
}

func (c *clientCounts) top(now int64, n int) []Client {
	c.roll(now)
	sum := map[netip.Addr]uint64{}
	for _, sl := range c.prev.slots {
		sum[sl.addr] += sl.n
	}
	for _, sl := range c.cur.slots {
		sum[sl.addr] += sl.n
	}
	out := make([]Client, 0, len(sum))
	for a, v := range sum {
		out = append(out, Client{Address: a.String(), Requests: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Address < out[j].Address
	})
	return out[:min(n, len(out))]
}
