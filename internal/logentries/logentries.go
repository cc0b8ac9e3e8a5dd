// Package logentries is the store behind Usher's Cloud Logging API v2
// (POST /v2/entries:list, what `gcloud logging read` and `gcloud run
// services logs read` call): what services' instances printed and the
// requests the gateway answered or refused, kept durably in Usher's store,
// and read back as Google's LogEntry, together with the audit trail's admin
// writes as Cloud Audit Logs' admin activity.
//
// Two budgets, as in package audit. Enqueueing (Output, Request) never
// blocks and never does I/O: an instance's output and the gateway's hot
// path call it once per line or request. Entries go to a bounded queue that
// Run drains in batches, one store transaction per stream and flush; when
// the queue is full an entry is dropped and counted (Dropped), and the
// count is logged. Each stream of a service (its output, its requests) is
// bounded on its own, the newest MaxPerStream entries kept: the transaction
// that writes a batch also deletes the oldest batches beyond the bound, so
// a flood of requests never pushes out what the instances printed, and
// what is kept never grows without bound. On a cluster each node bounds the
// batches it knows of (those it listed when it first wrote to the stream,
// and those it wrote since), so a stream holds about MaxPerStream entries
// per writing node until a node restarts and prunes it all. Batches older
// than MaxAge (Google's 30 days by default) are pruned, so the entries of
// deleted services go too.
//
// Reading (List) decodes the batches that can match (one service's when
// the filter pins its name and location), turns them into LogEntries,
// matches them with package logfilter, and pages them by timestamp.
package logentries

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/logfilter"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Defaults.
const (
	DefaultMaxPerStream  = 10000
	DefaultQueueSize     = 8192
	DefaultBatchSize     = 1000
	DefaultFlushInterval = time.Second
	// DefaultMaxAge is Google's default retention (the _Default bucket's).
	DefaultMaxAge        = 30 * 24 * time.Hour
	DefaultPruneInterval = time.Hour
	// MaxPageSize bounds one List, as Google's API does.
	MaxPageSize = 1000
	// DefaultPageSize is Google's.
	DefaultPageSize = 50
	// MaxTextBytes bounds one stored line; longer ones are cut.
	MaxTextBytes = 32 << 10
	// maxURLBytes and maxAgentBytes bound a request's stored URL and
	// user agent, which the client chooses.
	maxURLBytes   = 2048
	maxAgentBytes = 512
)

// Log names, as Cloud Run's.
const (
	LogStdout   = "run.googleapis.com%2Fstdout"
	LogStderr   = "run.googleapis.com%2Fstderr"
	LogRequests = "run.googleapis.com%2Frequests"
	LogActivity = "cloudaudit.googleapis.com%2Factivity"
)

// Resource types: a service's entries, a job's.
const (
	ResourceRevision = "cloud_run_revision"
	ResourceJob      = "cloud_run_job"
)

// AuditSource reads the audit trail's admin records (an *audit.Trail).
type AuditSource interface {
	AdminRecords(ctx context.Context, q audit.Query) ([]audit.Record, error)
}

var _ AuditSource = (*audit.Trail)(nil)

// Config wires a Book.
type Config struct {
	Store store.Store
	// Audit, if set, is served as admin activity.
	Audit AuditSource
	// MaxPerStream bounds each stream of each service (default
	// DefaultMaxPerStream entries).
	MaxPerStream int
	// QueueSize bounds entries waiting to be written; BatchSize is how many
	// pending entries start a write before FlushInterval has passed.
	QueueSize     int
	BatchSize     int
	FlushInterval time.Duration
	// MaxAge bounds every entry's age (default DefaultMaxAge), so the
	// entries of deleted services go too; Run prunes at start and every
	// PruneInterval.
	MaxAge        time.Duration
	PruneInterval time.Duration
	Now           func() time.Time
	// Log receives the book's own problems (drops, failed writes).
	Log *slog.Logger
}

// Request is one request the gateway answered or refused.
type Request struct {
	Time      time.Time
	Revision  string
	Method    string
	URL       string
	Status    int
	Latency   time.Duration
	RemoteIP  string
	UserAgent string
	// Reason says why the gateway refused it, or answered itself.
	Reason string
}

// record is one stored entry: an output line (Text) or a request (HTTP).
type record struct {
	Time     time.Time   `json:"t"`
	Revision string      `json:"rev,omitempty"`
	Instance string      `json:"inst,omitempty"`
	Text     string      `json:"text,omitempty"`
	HTTP     *storedHTTP `json:"http,omitempty"`
	Stderr   bool        `json:"err,omitempty"` // an output line from stderr
	// Attempt is a job task's attempt (Revision is then the execution,
	// Instance the task's index).
	Attempt int `json:"att,omitempty"`
}

type storedHTTP struct {
	Method    string        `json:"m"`
	URL       string        `json:"u"`
	Status    int           `json:"s"`
	Latency   time.Duration `json:"l,omitempty"`
	RemoteIP  string        `json:"ip,omitempty"`
	UserAgent string        `json:"ua,omitempty"`
}

// batch is the stored form of a key under state.LogsPrefix.
type batch struct {
	// Written is when the batch was written: its entries' receiveTimestamp.
	Written time.Time `json:"written"`
	Entries []record  `json:"entries"`
}

type queued struct {
	stream string // state.LogStreamPrefix
	rec    record
}

// Book is the durable log store.
type Book struct {
	cfg     Config
	queue   chan queued
	flushes chan chan struct{}
	dropped atomic.Uint64
	done    chan struct{}

	// mu serializes writes and guards:
	mu       sync.Mutex
	running  bool
	pending  map[string][]record
	npending int
	// index lists, per stream this node has written to, the batches it
	// knows of, oldest first.
	index    map[string]*streamIndex
	reported uint64
}

type streamIndex struct {
	batches []batchMeta
	total   int
}

type batchMeta struct {
	key   string
	count int
}

// New returns a book; call Run to write what is enqueued.
func New(cfg Config) *Book {
	if cfg.MaxPerStream <= 0 {
		cfg.MaxPerStream = DefaultMaxPerStream
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Book{
		cfg:     cfg,
		queue:   make(chan queued, cfg.QueueSize),
		flushes: make(chan chan struct{}),
		done:    make(chan struct{}),
		pending: map[string][]record{},
		index:   map[string]*streamIndex{},
	}
}

// Output enqueues one line an instance of a service's revision printed (on
// stderr when stderr), without blocking; false: the queue was full and the
// line was dropped.
func (b *Book) Output(project, region, service, revision, instance string, at time.Time, text string, stderr bool) bool {
	if len(text) > MaxTextBytes {
		text = text[:MaxTextBytes] + " …(cut)"
	}
	return b.enqueue(queued{
		stream: state.LogStreamPrefix(project, region, service, state.LogStreamOutput),
		rec:    record{Time: b.when(at), Revision: revision, Instance: instance, Text: text, Stderr: stderr},
	})
}

// JobOutput enqueues one line a task of a job's execution printed, as
// Output does.
func (b *Book) JobOutput(project, region, job, execution string, task, attempt int, at time.Time, text string, stderr bool) bool {
	if len(text) > MaxTextBytes {
		text = text[:MaxTextBytes] + " …(cut)"
	}
	return b.enqueue(queued{
		stream: state.LogStreamPrefix(project, region, job, state.LogStreamJobOutput),
		rec:    record{Time: b.when(at), Revision: execution, Instance: strconv.Itoa(task), Attempt: attempt, Text: text, Stderr: stderr},
	})
}

// Request enqueues one request to a service, without blocking; false: the
// queue was full and it was dropped.
func (b *Book) Request(project, region, service string, r Request) bool {
	return b.enqueue(queued{
		stream: state.LogStreamPrefix(project, region, service, state.LogStreamRequests),
		rec: record{Time: b.when(r.Time), Revision: r.Revision, Text: r.Reason, HTTP: &storedHTTP{
			Method: r.Method, URL: cut(r.URL, maxURLBytes), Status: r.Status, Latency: r.Latency,
			RemoteIP: r.RemoteIP, UserAgent: cut(r.UserAgent, maxAgentBytes),
		}},
	})
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (b *Book) when(t time.Time) time.Time {
	if t.IsZero() {
		t = b.cfg.Now()
	}
	return t.UTC()
}

func (b *Book) enqueue(q queued) bool {
	select {
	case b.queue <- q:
		return true
	default:
		b.dropped.Add(1)
		return false
	}
}

// Dropped is how many entries were dropped (a full queue, or a failed
// write) since New.
func (b *Book) Dropped() uint64 { return b.dropped.Load() }

// Done is closed once Run has returned, everything queued written.
func (b *Book) Done() <-chan struct{} { return b.done }

// Flush writes every entry enqueued before the call (or fails to, counting
// them as dropped). It works with or without Run.
func (b *Book) Flush(ctx context.Context) error {
	b.mu.Lock()
	if !b.running {
		defer b.mu.Unlock()
		b.drainLocked(ctx)
		b.flushLocked(ctx)
		return ctx.Err()
	}
	b.mu.Unlock()
	ack := make(chan struct{})
	select {
	case b.flushes <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run writes enqueued entries in batches until ctx ends, then writes what
// is still queued and returns. Call it once.
func (b *Book) Run(ctx context.Context) {
	defer close(b.done)
	b.mu.Lock()
	b.running = true
	b.mu.Unlock()
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		b.pruneLoop(ctx)
	}()
	defer func() { <-pruned }()
	// Writes outlive ctx: what is queued at shutdown is still written.
	wctx := context.WithoutCancel(ctx)
	tick := time.NewTicker(b.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case q := <-b.queue:
			b.mu.Lock()
			b.addLocked(wctx, q)
			b.mu.Unlock()
		case <-tick.C:
			b.mu.Lock()
			b.flushLocked(wctx)
			b.mu.Unlock()
		case ack := <-b.flushes:
			b.mu.Lock()
			b.drainLocked(wctx)
			b.flushLocked(wctx)
			b.mu.Unlock()
			close(ack)
		case <-ctx.Done():
			b.mu.Lock()
			b.drainLocked(wctx)
			b.flushLocked(wctx)
			b.running = false
			b.mu.Unlock()
			return
		}
	}
}

func (b *Book) addLocked(ctx context.Context, q queued) {
	b.pending[q.stream] = append(b.pending[q.stream], q.rec)
	b.npending++
	if b.npending >= b.cfg.BatchSize {
		b.flushLocked(ctx)
	}
}

func (b *Book) drainLocked(ctx context.Context) {
	for {
		select {
		case q := <-b.queue:
			b.addLocked(ctx, q)
		default:
			return
		}
	}
}

// flushLocked writes each stream's pending entries as one batch.
func (b *Book) flushLocked(ctx context.Context) {
	for stream, recs := range b.pending {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := b.write(wctx, stream, recs); err != nil {
			b.dropped.Add(uint64(len(recs)))
			b.cfg.Log.Warn("logs: batch not written", "stream", stream, "entries", len(recs), "err", err)
		}
		cancel()
	}
	clear(b.pending)
	b.npending = 0
	if d := b.dropped.Load(); d != b.reported {
		b.cfg.Log.Warn("logs: entries dropped (queue full or store failing)", "dropped_total", d, "dropped_since_last", d-b.reported)
		b.reported = d
	}
}

// write stores recs as one batch of stream and, in the same transaction,
// deletes the oldest batches beyond the stream's bound.
func (b *Book) write(ctx context.Context, stream string, recs []record) error {
	idx, err := b.streamIndex(ctx, stream)
	if err != nil {
		return err
	}
	slices.SortStableFunc(recs, func(x, y record) int { return x.Time.Compare(y.Time) })
	if n := len(recs) - b.cfg.MaxPerStream; n > 0 {
		b.dropped.Add(uint64(n)) // more than the bound in one batch: keep the newest
		recs = recs[n:]
	}
	value, err := json.Marshal(batch{Written: b.cfg.Now().UTC(), Entries: recs})
	if err != nil {
		return fmt.Errorf("logs: encoding: %w", err)
	}
	key := state.LogKey(stream, recs[0].Time, randomHex(6))
	ops := []store.Op{{Key: key, Value: value, Expected: store.MustNotExist}}
	total, evict := idx.total+len(recs), 0
	for evict < len(idx.batches) && total > b.cfg.MaxPerStream {
		// AnyRevision: a batch another node already deleted is no conflict.
		ops = append(ops, store.Op{Key: idx.batches[evict].key, Expected: store.AnyRevision})
		total -= idx.batches[evict].count
		evict++
	}
	if _, err := b.cfg.Store.Txn(ctx, ops); err != nil {
		return err
	}
	idx.batches = append(idx.batches[evict:], batchMeta{key: key, count: len(recs)})
	idx.total = total
	return nil
}

// streamIndex returns what this node knows of stream's batches, listing
// them on first use.
func (b *Book) streamIndex(ctx context.Context, stream string) (*streamIndex, error) {
	if idx, ok := b.index[stream]; ok {
		return idx, nil
	}
	entries, _, err := b.cfg.Store.List(ctx, stream)
	if err != nil {
		return nil, err
	}
	idx := &streamIndex{}
	for _, e := range entries {
		var bt struct {
			Entries []json.RawMessage `json:"entries"`
		}
		json.Unmarshal(e.Value, &bt) // undecodable: count 0, still evicted in turn
		idx.batches = append(idx.batches, batchMeta{key: e.Key, count: len(bt.Entries)})
		idx.total += len(bt.Entries)
	}
	b.index[stream] = idx
	return idx, nil
}

// pruneLoop prunes at start and every PruneInterval until ctx ends.
func (b *Book) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(b.cfg.PruneInterval)
	defer tick.Stop()
	for {
		if n, err := b.Prune(ctx); err != nil {
			if ctx.Err() == nil {
				b.cfg.Log.Warn("logs: pruning failed", "err", err)
			}
		} else if n > 0 {
			b.cfg.Log.Info("logs: pruned old batches", "batches", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Prune deletes the batches older than MaxAge (by their oldest entry), of
// every service, deleted ones included, and returns how many it deleted.
func (b *Book) Prune(ctx context.Context) (int, error) {
	entries, _, err := b.cfg.Store.List(ctx, state.LogsPrefix)
	if err != nil {
		return 0, err
	}
	cutoff := b.cfg.Now().Add(-b.cfg.MaxAge).UnixNano()
	old := map[string]bool{}
	var ops []store.Op
	deleted := 0
	for i, kv := range entries {
		parts := state.SplitKey(kv.Key, state.LogsPrefix, 5)
		var nanos int64
		if parts != nil {
			n, _, _ := strings.Cut(parts[4], "-")
			nanos, _ = strconv.ParseInt(n, 10, 64)
		}
		if parts == nil || nanos < cutoff {
			old[kv.Key] = true
			ops = append(ops, store.Op{Key: kv.Key, Expected: store.AnyRevision})
		}
		if len(ops) == 100 || (i == len(entries)-1 && len(ops) > 0) {
			if _, err := b.cfg.Store.Txn(ctx, ops); err != nil {
				return deleted, err
			}
			deleted += len(ops)
			ops = ops[:0]
		}
	}
	if len(old) > 0 {
		b.mu.Lock()
		for _, idx := range b.index {
			kept := idx.batches[:0]
			idx.total = 0
			for _, m := range idx.batches {
				if !old[m.key] {
					kept = append(kept, m)
					idx.total += m.count
				}
			}
			idx.batches = kept
		}
		b.mu.Unlock()
	}
	return deleted, nil
}

func randomHex(n int) string {
	buf := make([]byte, n)
	rand.Read(buf)
	return hex.EncodeToString(buf)
}

// Query selects a project's entries.
type Query struct {
	Project string
	// Filter selects entries (nil: all).
	Filter *logfilter.Filter
	// Descending orders newest first (orderBy "timestamp desc").
	Descending bool
	// PageSize bounds the answer (default DefaultPageSize, at most
	// MaxPageSize); PageToken continues a previous List.
	PageSize  int
	PageToken string
}

// Page is one List's answer.
type Page struct {
	Entries       []Entry `json:"entries"`
	NextPageToken string  `json:"nextPageToken,omitempty"`
}

// ErrBadPageToken is returned for a page token List did not issue.
var ErrBadPageToken = errors.New("logs: invalid page token")

// List returns the entries of q.Project that match q.Filter, ordered by
// timestamp. Entries still queued are not seen; Flush first to see them.
func (b *Book) List(ctx context.Context, q Query) (Page, error) {
	size := q.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	var after *cursor
	if q.PageToken != "" {
		c, err := decodeCursor(q.PageToken)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	keep := func(e *Entry) bool {
		if !q.Filter.Match(e.Field) {
			return false
		}
		return after == nil || after.before(e, q.Descending)
	}
	var out []Entry
	resourceType, typed := q.Filter.Pinned("resource.type")
	if !typed || resourceType == ResourceRevision || resourceType == ResourceJob {
		got, err := b.serviceEntries(ctx, q, keep)
		if err != nil {
			return Page{}, err
		}
		out = got
	}
	if b.cfg.Audit != nil {
		aq := audit.Query{Project: q.Project}
		if since, ok := q.Filter.Since(); ok {
			aq.Since = since
		}
		if s, ok := q.Filter.Pinned("resource.labels.service_name"); ok {
			aq.Service = s
		}
		records, err := b.cfg.Audit.AdminRecords(ctx, aq)
		if err != nil {
			return Page{}, err
		}
		for _, r := range records {
			e := activityEntry(r)
			if keep(&e) {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(x, y Entry) int {
		c := cmp.Or(x.Timestamp.Compare(y.Timestamp), strings.Compare(x.InsertID, y.InsertID))
		if q.Descending {
			return -c
		}
		return c
	})
	page := Page{Entries: out}
	if len(out) > size {
		page.Entries = out[:size:size]
		last := page.Entries[size-1]
		page.NextPageToken = cursor{last.Timestamp.UnixNano(), last.InsertID}.encode()
	}
	if page.Entries == nil {
		page.Entries = []Entry{}
	}
	return page, nil
}

// serviceEntries reads the services' and jobs' batches that can hold q's
// entries.
func (b *Book) serviceEntries(ctx context.Context, q Query, keep func(*Entry) bool) ([]Entry, error) {
	prefix := state.LogProjectPrefix(q.Project)
	service, byService := q.Filter.Pinned("resource.labels.service_name")
	if job, byJob := q.Filter.Pinned("resource.labels.job_name"); byJob && !byService {
		service, byService = job, true // the same key layout
	}
	if location, ok := q.Filter.Pinned("resource.labels.location"); ok && byService {
		prefix = state.LogServicePrefix(q.Project, location, service)
	}
	entries, _, err := b.cfg.Store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, kv := range entries {
		parts := state.SplitKey(kv.Key, state.LogsPrefix, 5) // PROJECT/REGION/SERVICE/STREAM/BATCH
		if parts == nil || (byService && parts[2] != service) {
			continue
		}
		var bt batch
		if err := json.Unmarshal(kv.Value, &bt); err != nil {
			b.cfg.Log.Warn("logs: undecodable batch skipped", "key", kv.Key, "err", err)
			continue
		}
		for i, r := range bt.Entries {
			id := parts[4] + "." + strconv.Itoa(i)
			var e Entry
			if parts[3] == state.LogStreamJobOutput {
				e = jobEntry(parts[0], parts[1], parts[2], id, bt.Written, r)
			} else {
				e = serviceEntry(parts[0], parts[1], parts[2], parts[3], id, bt.Written, r)
			}
			if keep(&e) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// Lines returns up to limit (all if <= 0) of the newest lines a service's
// instances printed (only revision's when set), oldest first, as printed:
// what `usher run services logs read` and the console show. Lines still
// queued are not seen; Flush first to see them.
func (b *Book) Lines(ctx context.Context, project, region, service, revision string, limit int) ([]logs.Entry, error) {
	kvs, _, err := b.cfg.Store.List(ctx, state.LogStreamPrefix(project, region, service, state.LogStreamOutput))
	if err != nil {
		return nil, err
	}
	var out []logs.Entry
	for _, kv := range kvs {
		var bt batch
		if err := json.Unmarshal(kv.Value, &bt); err != nil {
			b.cfg.Log.Warn("logs: undecodable batch skipped", "key", kv.Key, "err", err)
			continue
		}
		for _, r := range bt.Entries {
			if revision == "" || r.Revision == revision {
				out = append(out, logs.Entry{Time: r.Time, Service: service, Revision: r.Revision, Instance: r.Instance, Text: r.Text})
			}
		}
	}
	// Batches sort by their oldest line; lines of batches written by
	// different nodes may interleave.
	slices.SortStableFunc(out, func(x, y logs.Entry) int { return x.Time.Compare(y.Time) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// cursor is where a page ended: the last entry's timestamp and insertId.
type cursor struct {
	nanos int64
	id    string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.nanos, 10) + "|" + c.id))
}

// before reports whether the cursor's entry comes before e in the order.
func (c cursor) before(e *Entry, descending bool) bool {
	d := cmp.Or(cmp.Compare(c.nanos, e.Timestamp.UnixNano()), strings.Compare(c.id, e.InsertID))
	if descending {
		return d > 0
	}
	return d < 0
}

func decodeCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadPageToken
	}
	n, id, ok := strings.Cut(string(raw), "|")
	nanos, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil {
		return cursor{}, ErrBadPageToken
	}
	return cursor{nanos, id}, nil
}
