// Package audit is Usher's audit trail: a durable record of every admin
// write (deploys, deletes, IAM policy changes with the bindings they added
// and removed, service accounts) and of every invocation the gateway or the
// forward-auth endpoint refused, each with its time, kind, principal,
// resource and status. `usher logging read` and
// GET /v1/projects/{project}/auditLogs read it back, filtered.
//
// Records live in the store, so they survive restarts and, on etcd, are
// shared by every node: admin writes under state.AuditPrefix, refusals under
// state.DenialsPrefix, each with its own retention bound, so anonymous
// traffic can never prune the record of who changed access. One key holds
// one batch of records (state.AuditKey); Read flattens batches, so the
// batching never shows.
//
// Two ways in, because the two paths have different budgets:
//
//   - Record writes synchronously. The admin API calls it after a write has
//     succeeded and before it answers, so an acknowledged change is on the
//     trail. It is best effort: a failure is logged (and returned) but never
//     undoes or fails the change it describes.
//   - Enqueue never blocks and never does I/O: the gateway's hot path calls
//     it for each refusal. Records go to a bounded queue that Run drains in
//     batches, one store write per batch; when the queue is full the record
//     is dropped and counted (Dropped), and the count is logged. A flood of
//     refused requests therefore costs the store a write per batch, not per
//     request, and can never slow the gateway down.
//
// Retention is bounded by age (Config.MaxAge, default 30 days) and count,
// separately for admin records (Config.MaxRecords, default 100,000) and
// refusals (Config.MaxDenials, default 50,000), enforced by whole batches,
// so the trail may briefly hold up to one batch more; Run prunes at start
// and every PruneInterval.
//
// Every record is also emitted as one structured log line (msg "audit"),
// admin writes when recorded, refusals when their batch is written.
//
// The package must never sit in the way of what it records: it never blocks
// the gateway, never fails an admin write, and keeps nothing that grants
// access.
package audit

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

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Kinds of record: NOUN.VERB.
const (
	KindServiceCreate           = "service.create"
	KindServiceReplace          = "service.replace"
	KindServiceDelete           = "service.delete"
	KindRevisionDelete          = "revision.delete"
	KindSetIamPolicy            = "iam.setPolicy"
	KindServiceAccountCreate    = "serviceAccount.create"
	KindServiceAccountDelete    = "serviceAccount.delete"
	KindServiceAccountUndelete  = "serviceAccount.undelete"
	KindServiceAccountDisable   = "serviceAccount.disable"
	KindServiceAccountEnable    = "serviceAccount.enable"
	KindServiceAccountUpdate    = "serviceAccount.update"
	KindServiceAccountKeyCreate = "serviceAccountKey.create"
	KindServiceAccountKeyDelete = "serviceAccountKey.delete"
	KindSecretCreate            = "secret.create"
	KindSecretDelete            = "secret.delete"
	KindSecretVersionAdd        = "secretVersion.add"
	KindProjectCreate           = "project.create"
	KindProjectUpdate           = "project.update"
	KindProjectDelete           = "project.delete"
	KindProjectUndelete         = "project.undelete"
	// KindConsoleImpersonate is a console sign-in as another principal.
	KindConsoleImpersonate = "console.impersonate"
	KindOrgPolicySet       = "orgPolicy.set"
	KindOrgPolicyDelete    = "orgPolicy.delete"
	KindRoleCreate         = "role.create"
	KindRoleUpdate         = "role.update"
	KindRoleDelete         = "role.delete"
	KindRoleUndelete       = "role.undelete"
	// KindInvokeDenied is a request refused with 401 or 403.
	KindInvokeDenied = "invoke.denied"
)

// Record is one entry of the trail.
type Record struct {
	// ID is unique and stable; Read fills it (it is not stored).
	ID   string    `json:"insertId,omitempty"`
	Time time.Time `json:"timestamp"`
	Kind string    `json:"kind"`
	// Principal is who acted, as a policy member ("user:x@y",
	// "serviceAccount:…"); "" for a caller without credentials.
	Principal string `json:"principal,omitempty"`
	Project   string `json:"project"`
	Region    string `json:"region,omitempty"`
	Service   string `json:"service,omitempty"`
	// Resource is the IAM resource name acted on
	// ("projects/P/locations/R/services/S").
	Resource string `json:"resource"`
	// Permission is what the action needed (for refusals, what was missing).
	Permission string `json:"permission,omitempty"`
	// Status is the HTTP status answered.
	Status int `json:"status"`
	// Reason says why a request was refused.
	Reason string `json:"reason,omitempty"`
	// Count is how many identical refusals this record stands for when
	// more than one (aggregated under a flood, or dropped on a full queue).
	Count   int      `json:"count,omitempty"`
	Details *Details `json:"details,omitempty"`
}

// Details are the kind-specific parts of a record.
type Details struct {
	// BindingDeltas are what a setIamPolicy changed, in Cloud Audit Logs'
	// policyDelta shape.
	BindingDeltas []BindingDelta `json:"bindingDeltas,omitempty"`
	// Generation and Image describe a service write.
	Generation int64  `json:"generation,omitempty"`
	Image      string `json:"image,omitempty"`
	// Revision names a deleted revision.
	Revision string `json:"revision,omitempty"`
	// Email names a service account; ServiceAccount is the one a written
	// service runs as.
	Email          string `json:"email,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Impersonator is who acted as Principal (a console sign-in as someone
	// else): the change is theirs.
	Impersonator string `json:"impersonator,omitempty"`
	// Host is the Host a refused request was sent to; Via says what refused
	// it ("gateway" or "forward-auth").
	Host string `json:"host,omitempty"`
	Via  string `json:"via,omitempty"`
}

// BindingDelta is one member added to or removed from a role.
type BindingDelta struct {
	Action    string    `json:"action"` // ADD or REMOVE
	Role      string    `json:"role"`
	Member    string    `json:"member"`
	Condition *iam.Expr `json:"condition,omitempty"`
}

// PolicyDelta lists what changed from before to after (nil: no policy),
// adds first, each sorted by role and member.
func PolicyDelta(before, after *iam.Policy) []BindingDelta {
	type key struct {
		role, member, cond string
	}
	index := func(p *iam.Policy) map[key]BindingDelta {
		m := map[key]BindingDelta{}
		if p == nil {
			return m
		}
		for _, b := range p.Bindings {
			cond := ""
			if b.Condition != nil {
				cond = b.Condition.Title + "\x00" + b.Condition.Description + "\x00" + b.Condition.Expression
			}
			for _, mem := range b.Members {
				m[key{b.Role, mem, cond}] = BindingDelta{Role: b.Role, Member: mem, Condition: b.Condition}
			}
		}
		return m
	}
	old, cur := index(before), index(after)
	var adds, removes []BindingDelta
	for k, d := range cur {
		if _, ok := old[k]; !ok {
			d.Action = "ADD"
			adds = append(adds, d)
		}
	}
	for k, d := range old {
		if _, ok := cur[k]; !ok {
			d.Action = "REMOVE"
			removes = append(removes, d)
		}
	}
	byRoleMember := func(a, b BindingDelta) int {
		return cmp.Or(strings.Compare(a.Role, b.Role), strings.Compare(a.Member, b.Member))
	}
	slices.SortFunc(adds, byRoleMember)
	slices.SortFunc(removes, byRoleMember)
	return append(adds, removes...)
}

// Defaults.
const (
	DefaultMaxAge     = 30 * 24 * time.Hour
	DefaultMaxRecords = 100_000
	DefaultMaxDenials = 50_000
	// AggregateAbove is the batch size above which identical refusals are
	// written as one record with a Count.
	AggregateAbove       = 100
	DefaultQueueSize     = 8192
	DefaultBatchSize     = 500
	DefaultFlushInterval = 500 * time.Millisecond
	DefaultPruneInterval = 10 * time.Minute
	// MaxPageSize bounds one Read.
	MaxPageSize = 1000
)

// Config wires a Trail.
type Config struct {
	Store store.Store
	// MaxAge bounds retention; MaxRecords bounds admin records and
	// MaxDenials refusals, each on its own (defaults DefaultMaxAge,
	// DefaultMaxRecords, DefaultMaxDenials).
	MaxAge     time.Duration
	MaxRecords int
	MaxDenials int
	// QueueSize bounds refusals waiting to be written; BatchSize bounds one
	// write; FlushInterval is the longest a queued record waits.
	QueueSize     int
	BatchSize     int
	FlushInterval time.Duration
	PruneInterval time.Duration
	Now           func() time.Time
	// Log receives one line per record and the trail's own problems.
	Log *slog.Logger
}

// Trail is the audit trail.
type Trail struct {
	cfg     Config
	queue   chan Record
	flushes chan chan struct{}
	dropped atomic.Uint64
	// droppedBy counts refusals dropped on a full queue, by project
	// (*atomic.Int64), until the next batch records them.
	droppedBy sync.Map
	// done is closed when Run returns.
	done chan struct{}

	// mu serializes batch writes (Run's and Flush's) and guards:
	mu sync.Mutex
	// running is true while Run takes records off the queue.
	running bool
	pending []Record // taken off the queue, not yet written
	// reported is the drop count last logged.
	reported uint64
}

// New returns a trail; call Run to write queued records and prune.
func New(cfg Config) *Trail {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = DefaultMaxRecords
	}
	if cfg.MaxDenials <= 0 {
		cfg.MaxDenials = DefaultMaxDenials
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
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Trail{
		cfg:     cfg,
		queue:   make(chan Record, cfg.QueueSize),
		flushes: make(chan chan struct{}),
		done:    make(chan struct{}),
	}
}

// Record writes r now (its Time defaults to now). Errors are logged too.
func (t *Trail) Record(ctx context.Context, r Record) error {
	if r.Time.IsZero() {
		r.Time = t.cfg.Now()
	}
	r.Time = r.Time.UTC()
	// The change r describes has happened: record it even if the client
	// that asked for it has gone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := t.write(ctx, adminPrefix(r.Kind), []Record{r})
	t.emit(ctx, []Record{r}, err)
	return err
}

// Entry is r as the store key and value Record would write, for a caller
// that writes it in the same transaction as the change it describes (so no
// change is acknowledged without its record); it returns r with its Time
// set. Call Committed once the transaction has.
func (t *Trail) Entry(r Record) (key string, value []byte, _ Record, err error) {
	if r.Time.IsZero() {
		r.Time = t.cfg.Now()
	}
	r.Time = r.Time.UTC()
	value, err = json.Marshal(batch{Records: []Record{r}})
	if err != nil {
		return "", nil, r, fmt.Errorf("audit: encoding: %w", err)
	}
	return state.AuditKey(adminPrefix(r.Kind), r.Time, randomHex(6)), value, r, nil
}

// Committed logs r, an Entry written by the caller's transaction.
func (t *Trail) Committed(ctx context.Context, r Record) { t.emit(ctx, []Record{r}, nil) }

// adminPrefix is where an admin record of kind lives: changes of who may do
// what apart from other writes, each class with its own bound, so a flood
// of deploys cannot prune the record of who changed access.
func adminPrefix(kind string) string {
	switch noun, _, _ := strings.Cut(kind, "."); noun {
	case "iam", "serviceAccount", "role", "orgPolicy", "console":
		return state.AccessPrefix
	}
	return state.AuditPrefix
}

// Enqueue queues r for the next batch without blocking (its Time defaults
// to now). It reports false when the queue was full and r was dropped.
func (t *Trail) Enqueue(r Record) bool {
	if r.Time.IsZero() {
		r.Time = t.cfg.Now()
	}
	r.Time = r.Time.UTC()
	select {
	case t.queue <- r:
		return true
	default:
		t.dropped.Add(1)
		n, ok := t.droppedBy.Load(r.Project)
		if !ok {
			n, _ = t.droppedBy.LoadOrStore(r.Project, new(atomic.Int64))
		}
		n.(*atomic.Int64).Add(1)
		return false
	}
}

// Dropped is how many records Enqueue has dropped, or whose batch failed to
// be written, since New.
func (t *Trail) Dropped() uint64 { return t.dropped.Load() }

// Flush writes every record enqueued before the call (or fails to, counting
// them as dropped). It works with or without Run.
func (t *Trail) Flush(ctx context.Context) error {
	t.mu.Lock()
	if !t.running {
		// Nothing else takes records off the queue until we are done.
		defer t.mu.Unlock()
		t.drainLocked(ctx)
		t.flushLocked(ctx)
		return ctx.Err()
	}
	t.mu.Unlock()
	// Run holds records it has taken off the queue: ask it, so none is
	// missed.
	ack := make(chan struct{})
	select {
	case t.flushes <- ack:
	case <-t.done: // Run has written everything and returned
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

// Done is closed once Run has returned, every queued record written.
func (t *Trail) Done() <-chan struct{} { return t.done }

// Run writes queued records in batches and prunes, until ctx ends; it then
// writes what is still queued and returns. Call it once.
func (t *Trail) Run(ctx context.Context) {
	defer close(t.done)
	t.mu.Lock()
	t.running = true
	t.mu.Unlock()
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		t.pruneLoop(ctx)
	}()
	defer func() { <-pruned }()

	// Writes outlive ctx: what is queued at shutdown is still written.
	wctx := context.WithoutCancel(ctx)
	tick := time.NewTicker(t.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-t.queue:
			t.mu.Lock()
			t.addLocked(wctx, r)
			t.mu.Unlock()
		case <-tick.C:
			t.mu.Lock()
			t.flushLocked(wctx)
			t.mu.Unlock()
		case ack := <-t.flushes:
			t.mu.Lock()
			t.drainLocked(wctx)
			t.flushLocked(wctx)
			t.mu.Unlock()
			close(ack)
		case <-ctx.Done():
			t.mu.Lock()
			t.drainLocked(wctx)
			t.flushLocked(wctx)
			t.running = false
			t.mu.Unlock()
			return
		}
	}
}

// addLocked adds r to the pending batch, writing it when full.
func (t *Trail) addLocked(ctx context.Context, r Record) {
	t.pending = append(t.pending, r)
	if len(t.pending) >= t.cfg.BatchSize {
		t.flushLocked(ctx)
	}
}

// drainLocked moves what is queued into pending batches.
func (t *Trail) drainLocked(ctx context.Context) {
	for {
		select {
		case r := <-t.queue:
			t.addLocked(ctx, r)
		default:
			return
		}
	}
}

// flushLocked writes the pending batch (aggregated under a flood, with a
// record of what the queue dropped), and reports drops since last time.
func (t *Trail) flushLocked(ctx context.Context) {
	t.droppedBy.Range(func(project, n any) bool {
		if c := n.(*atomic.Int64).Swap(0); c > 0 {
			t.pending = append(t.pending, Record{Time: t.cfg.Now().UTC(), Kind: KindInvokeDenied, Project: project.(string),
				Resource: "projects/" + project.(string), Count: int(c),
				Reason: "refused requests not recorded one by one: the audit queue was full (a flood)"})
		}
		return true
	})
	if len(t.pending) > AggregateAbove {
		t.pending = aggregate(t.pending)
	}
	if len(t.pending) > 0 {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := t.write(wctx, state.DenialsPrefix, t.pending)
		if err != nil {
			t.dropped.Add(uint64(len(t.pending)))
		}
		t.emit(wctx, t.pending, err)
		cancel()
		t.pending = t.pending[:0]
	}
	if d := t.dropped.Load(); d != t.reported {
		t.cfg.Log.Warn("audit: records dropped (queue full or store failing)", "dropped_total", d, "dropped_since_last", d-t.reported)
		t.reported = d
	}
}

// aggregate folds identical refusals into one record each, counting them;
// the first one's time is kept.
func aggregate(records []Record) []Record {
	type key struct {
		kind, project, region, service, resource, principal, reason, host, via string
		status                                                                 int
	}
	index := map[key]int{}
	out := records[:0:0]
	for _, r := range records {
		k := key{r.Kind, r.Project, r.Region, r.Service, r.Resource, r.Principal, r.Reason, "", "", r.Status}
		if r.Details != nil {
			k.host, k.via = r.Details.Host, r.Details.Via
		}
		n := max(r.Count, 1)
		if i, ok := index[k]; ok {
			out[i].Count += n
			continue
		}
		r.Count = n
		index[k] = len(out)
		out = append(out, r)
	}
	for i := range out {
		if out[i].Count == 1 {
			out[i].Count = 0
		}
	}
	return out
}

// batch is the stored form of a key under state.AuditPrefix.
type batch struct {
	Records []Record `json:"records"`
}

// write stores records as one batch under prefix, keyed by the oldest
// one's time.
func (t *Trail) write(ctx context.Context, prefix string, records []Record) error {
	if len(records) == 0 {
		return nil
	}
	oldest := records[0].Time
	for _, r := range records[1:] {
		if r.Time.Before(oldest) {
			oldest = r.Time
		}
	}
	value, err := json.Marshal(batch{Records: records})
	if err != nil {
		return fmt.Errorf("audit: encoding: %w", err)
	}
	for attempt := 0; ; attempt++ {
		_, err = t.cfg.Store.Put(ctx, state.AuditKey(prefix, oldest, randomHex(6)), value, store.MustNotExist)
		if !errors.Is(err, store.ErrConflict) || attempt == 2 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("audit: writing %d records: %w", len(records), err)
	}
	return nil
}

// emit logs each record as one structured line.
func (t *Trail) emit(ctx context.Context, records []Record, err error) {
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelError
	}
	if !t.cfg.Log.Enabled(ctx, level) {
		return
	}
	for _, r := range records {
		attrs := []slog.Attr{
			slog.String("kind", r.Kind),
			slog.Time("time", r.Time),
			slog.String("principal", r.Principal),
			slog.String("resource", r.Resource),
			slog.Int("status", r.Status),
		}
		if r.Permission != "" {
			attrs = append(attrs, slog.String("permission", r.Permission))
		}
		if r.Reason != "" {
			attrs = append(attrs, slog.String("reason", r.Reason))
		}
		if d := r.Details; d != nil && len(d.BindingDeltas) > 0 {
			deltas := make([]string, 0, len(d.BindingDeltas))
			for _, bd := range d.BindingDeltas {
				deltas = append(deltas, bd.Action+" "+bd.Role+" "+bd.Member)
			}
			attrs = append(attrs, slog.String("binding_deltas", strings.Join(deltas, "; ")))
		}
		if err != nil {
			attrs = append(attrs, slog.String("err", "not stored: "+err.Error()))
		}
		t.cfg.Log.LogAttrs(ctx, level, "audit", attrs...)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Query selects records of one project.
type Query struct {
	Project string
	// Region and Service match exactly when set.
	Region, Service string
	// Principal matches a member ("user:x@y") exactly, or any member with
	// that email when it has no type ("x@y"); "anonymous" matches callers
	// without credentials.
	Principal string
	// Kind matches exactly or as a prefix ending at a dot ("service"
	// matches service.create and service.delete).
	Kind string
	// Since and Until bound Time, inclusive (zero: unbounded).
	Since, Until time.Time
	// PageSize bounds the answer (default 100, at most MaxPageSize).
	PageSize int
	// PageToken continues a previous Read.
	PageToken string
}

// Page is one Read's answer, newest first.
type Page struct {
	Records       []Record `json:"entries"`
	NextPageToken string   `json:"nextPageToken,omitempty"`
}

// ErrBadPageToken is returned for a page token Read did not issue.
var ErrBadPageToken = errors.New("audit: invalid page token")

// cursor is where a page ended: the last record's time and ID.
type cursor struct {
	nanos int64
	id    string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.nanos, 10) + "|" + c.id))
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadPageToken
	}
	n, id, ok := strings.Cut(string(b), "|")
	nanos, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil {
		return cursor{}, ErrBadPageToken
	}
	return cursor{nanos, id}, nil
}

// newer orders records newest first, ties by ID descending.
func newer(a, b Record) int {
	return cmp.Or(b.Time.Compare(a.Time), strings.Compare(b.ID, a.ID))
}

// Read returns the records matching q, newest first. Records still queued
// are not seen until written; call Flush first to see them.
func (t *Trail) Read(ctx context.Context, q Query) (Page, error) {
	size := q.PageSize
	if size <= 0 {
		size = 100
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
	out, err := t.collect(ctx, t.prefixes(q), q, after)
	if err != nil {
		return Page{}, err
	}
	slices.SortFunc(out, newer)
	page := Page{Records: out}
	if len(out) > size {
		page.Records = out[:size:size]
		last := page.Records[size-1]
		page.NextPageToken = cursor{last.Time.UnixNano(), last.ID}.encode()
	}
	if page.Records == nil {
		page.Records = []Record{}
	}
	return page, nil
}

// AdminRecords returns every admin record (every write; no refusals) that
// matches q, in no particular order; q's paging fields are ignored. The
// Logging API serves them as Cloud Audit Logs' admin activity.
func (t *Trail) AdminRecords(ctx context.Context, q Query) ([]Record, error) {
	var prefixes []string
	for _, prefix := range []string{state.AccessPrefix, state.AuditPrefix} {
		prefixes = append(prefixes, t.dayPrefixes(prefix, q)...)
	}
	return t.collect(ctx, prefixes, q, nil)
}

// collect reads the records under prefixes that match q and come after
// after (when set), each with its ID.
func (t *Trail) collect(ctx context.Context, prefixes []string, q Query, after *cursor) ([]Record, error) {
	var out []Record
	for _, prefix := range prefixes {
		entries, _, err := t.cfg.Store.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			var b batch
			if err := json.Unmarshal(e.Value, &b); err != nil {
				t.cfg.Log.Warn("audit: undecodable batch skipped", "key", e.Key, "err", err)
				continue
			}
			idBase := e.Key[strings.IndexByte(e.Key, '/')+1:]
			if _, rest, ok := strings.Cut(idBase, "/"); ok {
				idBase = rest
			}
			for i, r := range b.Records {
				r.ID = idBase + "." + strconv.Itoa(i)
				if !q.matches(r) {
					continue
				}
				if after != nil && newer(r, Record{Time: time.Unix(0, after.nanos), ID: after.id}) <= 0 {
					continue
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// prefixes are the store prefixes that can hold q's records: every day from
// the one before Since (a batch is keyed by its oldest record, so a record
// may sit in a batch keyed a little earlier) to Until's, or the whole trail.
func (t *Trail) prefixes(q Query) []string {
	var out []string
	for _, prefix := range []string{state.AccessPrefix, state.AuditPrefix, state.DenialsPrefix} {
		out = append(out, t.dayPrefixes(prefix, q)...)
	}
	return out
}

// dayPrefixes are the prefixes under prefix that can hold q's records.
func (t *Trail) dayPrefixes(prefix string, q Query) []string {
	if q.Since.IsZero() {
		return []string{prefix}
	}
	until := q.Until
	if until.IsZero() {
		until = t.cfg.Now()
	}
	from := q.Since.UTC().Add(-24 * time.Hour).Truncate(24 * time.Hour)
	if until.Before(from) {
		return nil
	}
	var out []string
	// A day past until tolerates clocks a little ahead of this node's.
	for d := from; !d.After(until.UTC().Add(24 * time.Hour)); d = d.Add(24 * time.Hour) {
		out = append(out, state.AuditDayPrefix(prefix, d))
		if len(out) > 400 {
			return []string{prefix} // a range beyond any retention: read it all
		}
	}
	return out
}

func (q Query) matches(r Record) bool {
	if r.Project != q.Project {
		return false
	}
	if q.Region != "" && r.Region != q.Region {
		return false
	}
	if q.Service != "" && r.Service != q.Service {
		return false
	}
	if q.Kind != "" && r.Kind != q.Kind && !strings.HasPrefix(r.Kind, strings.TrimSuffix(q.Kind, ".")+".") {
		return false
	}
	if q.Principal != "" && !principalMatches(q.Principal, r.Principal) {
		return false
	}
	if !q.Since.IsZero() && r.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && r.Time.After(q.Until) {
		return false
	}
	return true
}

func principalMatches(want, got string) bool {
	if strings.EqualFold(want, "anonymous") {
		return got == ""
	}
	if strings.Contains(want, ":") {
		return strings.EqualFold(want, got)
	}
	_, email, _ := strings.Cut(got, ":")
	return email != "" && strings.EqualFold(want, email)
}

// pruneLoop prunes at start and every PruneInterval until ctx ends.
func (t *Trail) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(t.cfg.PruneInterval)
	defer tick.Stop()
	for {
		if n, err := t.Prune(ctx); err != nil {
			if ctx.Err() == nil {
				t.cfg.Log.Warn("audit: pruning failed", "err", err)
			}
		} else if n > 0 {
			t.cfg.Log.Info("audit: pruned old records", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Prune deletes batches whose records are all older than MaxAge, then the
// oldest batches until at most MaxRecords changes of access, MaxRecords
// other admin records and MaxDenials refusals remain. It returns how many records it deleted.
func (t *Trail) Prune(ctx context.Context) (int, error) {
	total := 0
	for _, b := range []struct {
		prefix string
		max    int
	}{{state.AccessPrefix, t.cfg.MaxRecords}, {state.AuditPrefix, t.cfg.MaxRecords}, {state.DenialsPrefix, t.cfg.MaxDenials}} {
		n, err := t.prune(ctx, b.prefix, b.max)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// prune bounds the batches under prefix to maxRecords records.
func (t *Trail) prune(ctx context.Context, prefix string, maxRecords int) (int, error) {
	entries, _, err := t.cfg.Store.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	type meta struct {
		key    string
		rev    int64
		count  int
		newest time.Time
	}
	metas := make([]meta, 0, len(entries))
	total := 0
	for _, e := range entries {
		var b struct {
			Records []struct {
				Time time.Time `json:"timestamp"`
			} `json:"records"`
		}
		m := meta{key: e.Key, rev: e.Revision}
		if err := json.Unmarshal(e.Value, &b); err == nil {
			m.count = len(b.Records)
			for _, r := range b.Records {
				if r.Time.After(m.newest) {
					m.newest = r.Time
				}
			}
		}
		if m.newest.IsZero() { // undecodable or empty: judge by its key
			m.newest, _ = state.AuditKeyTime(prefix, e.Key)
		}
		metas = append(metas, m)
		total += m.count
	}
	// Keys sort by their oldest record, which is close enough to "oldest
	// batch first" for a bound.
	cutoff := t.cfg.Now().Add(-t.cfg.MaxAge)
	deleted := 0
	for _, m := range metas {
		if !m.newest.Before(cutoff) && total <= maxRecords {
			break
		}
		if _, err := t.cfg.Store.Delete(ctx, m.key, m.rev); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return deleted, err
		}
		total -= m.count
		deleted += m.count
	}
	return deleted, nil
}
