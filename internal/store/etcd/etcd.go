// Package etcd is the multi-node store.Store backend: Usher's state in an etcd
// v3 cluster, so several `usher serve` processes on different machines share
// one consistent store (`usher serve --store etcd://HOST:PORT,.../PREFIX`).
//
// Mapping onto etcd: every Usher key lives under the configured prefix
// (default /usher/), so several Usher clusters can share one etcd. A key's
// Revision is its etcd mod_revision; List's revision is the header revision of
// the same read; compare-and-swap is one etcd transaction comparing the key's
// mod_revision (create_revision = 0 for store.MustNotExist); Watch is an etcd
// watch from revision after+1, and etcd's "required revision has been
// compacted" becomes store.ErrCompacted.
//
// It must never:
//   - read or write a key outside its prefix (the etcd may be shared);
//   - acknowledge a write before etcd has committed it through Raft (a quorum
//     of members has it in their fsync'd WAL), nor retry a write whose outcome
//     is unknown: a retried compare-and-swap that had in fact succeeded would
//     report a false conflict, and an unconditional one could overwrite a
//     newer value, so such errors go back to the caller;
//   - serve a stale read: Get and List are linearizable;
//   - deliver watch events out of revision order, skip or repeat one (after a
//     lost connection the etcd client resumes the watch just after the last
//     revision it received), stall silently on a member that lost its
//     leader (watches require a leader and end with an error instead), or
//     buffer without bound for a watcher that does not read (it is ended
//     with store.ErrCompacted, as in the bolt backend);
//   - compact etcd's history: compaction is global to the etcd cluster, so it
//     is the operator's job (etcd --auto-compaction-retention); watchers that
//     fall behind it get store.ErrCompacted and re-list.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/usher-run/usher/internal/store"
)

var _ store.Store = (*Store)(nil)

// DefaultPrefix is where Usher's keys live in etcd when no prefix is given.
const DefaultPrefix = "/usher/"

// DefaultDialTimeout bounds Open's first round trip to the cluster.
const DefaultDialTimeout = 5 * time.Second

// DefaultRequestTimeout bounds each Get, List, Put and Delete: a frozen or
// partitioned member, or a leader election, costs a caller at most this long
// before it gets store.ErrUnavailable (and its retry goes to another member).
const DefaultRequestTimeout = 2 * time.Second

// defaultQueueSize is how many events a watcher may leave undelivered (as in
// the bolt backend).
const defaultQueueSize = 1024

// Config says which etcd to use and how.
type Config struct {
	// Endpoints are client URLs' HOST:PORT (or full http(s):// URLs) of
	// one or more members; the client balances over and fails over
	// between them.
	Endpoints []string
	// Prefix is prepended to every key; a trailing "/" is added if missing.
	// Empty means DefaultPrefix.
	Prefix string
	// TLS, if set, is used as is for the client connections. Otherwise
	// CertFile/KeyFile (client certificate, both or neither) and CAFile
	// (the members' CA; system roots if empty) turn TLS on when any is set.
	TLS      *tls.Config
	CertFile string
	KeyFile  string
	CAFile   string
	// DialTimeout bounds Open's first round trip; default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds each read and write; default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Log receives the etcd client's own logs (default: discarded).
	Log *slog.Logger
}

type kvPair = mvccpb.KeyValue

// Store is a store.Store backed by an etcd cluster.
type Store struct {
	cli    *clientv3.Client
	prefix string
	desc   string // endpoints, for messages
	// timeout bounds each read and write (Config.RequestTimeout).
	timeout time.Duration
	// queueSize is how many events a watcher may leave undelivered before
	// it is ended with store.ErrCompacted.
	queueSize int

	// ctx is canceled by Close; it ends watches and marks the store closed.
	ctx    context.Context
	cancel context.CancelFunc
	// mu orders Watch registrations with Close so Close can wait for every
	// watch goroutine (wg) before closing the client.
	mu sync.Mutex
	wg sync.WaitGroup
}

// Open connects to the etcd cluster in cfg and checks, within DialTimeout,
// that it answers a linearizable read (so a quorum is up and TLS works).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	for _, ep := range cfg.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return nil, err
		}
	}
	prefix, err := normalizePrefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	tlsConf, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	desc := strings.Join(cfg.Endpoints, ",")
	reqTimeout := cfg.RequestTimeout
	if reqTimeout <= 0 {
		reqTimeout = DefaultRequestTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: timeout,
		TLS:         tlsConf,
		// Notice a member that vanished or froze without closing its
		// connections (power loss, partition, SIGSTOP) and move to another
		// one. etcd refuses pings more often than every 5s
		// (--grpc-keepalive-min-time), so 5s is the floor; each request's
		// own timeout (RequestTimeout) bounds what a caller waits meanwhile.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: time.Second,
		PermitWithoutStream:  true,
		Logger:               zapToSlog(log), // logs.go
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %s: %w", desc, err)
	}

	cctx, ccancel := context.WithTimeout(ctx, timeout)
	defer ccancel()
	// The prefix itself is never an Usher key; reading it proves a quorum
	// answers linearizable reads.
	if _, err := cli.Get(cctx, prefix, clientv3.WithKeysOnly()); err != nil {
		cli.Close()
		hint := ""
		if errors.Is(err, context.DeadlineExceeded) {
			hint = " (are the endpoints etcd client URLs, is a quorum of members up, and does the cluster need --etcd-cert/--etcd-key/--etcd-ca?)"
		}
		return nil, fmt.Errorf("etcd: no answer from %s within %s: %w%s", desc, timeout, err, hint)
	}

	sctx, cancel := context.WithCancel(context.Background())
	return &Store{cli: cli, prefix: prefix, desc: desc, timeout: reqTimeout, queueSize: defaultQueueSize, ctx: sctx, cancel: cancel}, nil
}

// checkEndpoint accepts HOST:PORT or an http(s) URL with one.
func checkEndpoint(ep string) error {
	hostport := ep
	if rest, ok := strings.CutPrefix(ep, "http://"); ok {
		hostport = rest
	} else if rest, ok := strings.CutPrefix(ep, "https://"); ok {
		hostport = rest
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("etcd: endpoint %q: want HOST:PORT (etcd's client port is usually 2379): %v", ep, err)
	}
	if host == "" {
		return fmt.Errorf("etcd: endpoint %q: empty host", ep)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("etcd: endpoint %q: port %q is not a number in 1-65535", ep, port)
	}
	return nil
}

// normalizePrefix applies the default and the trailing "/" that keeps one
// cluster's prefix from matching another's ("/a" would match "/ab/...").
func normalizePrefix(p string) (string, error) {
	if p == "" || p == "/" {
		return DefaultPrefix, nil
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-", r)) {
			return "", fmt.Errorf("etcd: prefix %q: only letters, digits and / . _ - are allowed", p)
		}
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}

func clientTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLS != nil {
		return cfg.TLS.Clone(), nil
	}
	if cfg.CertFile == "" && cfg.KeyFile == "" && cfg.CAFile == "" {
		return nil, nil
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("etcd: a client certificate needs both --etcd-cert and --etcd-key")
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd: CA file %s: no PEM certificates in it", cfg.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// ParseURL parses the --store value for etcd:
//
//	etcd://HOST:PORT[,HOST:PORT...][/PREFIX]
//
// PREFIX defaults to DefaultPrefix ("/usher/"); "/prod" becomes "/prod/".
// TLS is not part of the URL: set Config.CertFile/KeyFile/CAFile.
func ParseURL(s string) (Config, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return Config{}, fmt.Errorf("etcd URL %q: want etcd://HOST:PORT[,HOST:PORT...][/PREFIX]", s)
	}
	if strings.ContainsAny(rest, "?#") {
		return Config{}, fmt.Errorf("etcd URL %q: query strings and fragments are not supported", s)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if strings.Contains(hosts, "@") {
		return Config{}, fmt.Errorf("etcd URL %q: credentials in the URL are not supported (use a client certificate)", s)
	}
	if hosts == "" {
		return Config{}, fmt.Errorf("etcd URL %q: no HOST:PORT", s)
	}
	var cfg Config
	for ep := range strings.SplitSeq(hosts, ",") {
		if ep == "" {
			return Config{}, fmt.Errorf("etcd URL %q: empty endpoint in %q", s, hosts)
		}
		if err := checkEndpoint(ep); err != nil {
			return Config{}, fmt.Errorf("etcd URL %q: %w", s, err)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	prefix, err := normalizePrefix("/" + path)
	if err != nil {
		return Config{}, fmt.Errorf("etcd URL %q: %w", s, err)
	}
	cfg.Prefix = prefix
	return cfg, nil
}

// Prefix is the etcd key prefix this store reads and writes under.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) closed() bool { return s.ctx.Err() != nil }

// check reports why an operation may not start.
func (s *Store) check(ctx context.Context) error {
	if s.closed() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// wrap annotates an etcd error; once the store is closed every failure is
// store.ErrClosed.
func (s *Store) wrap(op, key string, err error) error {
	if s.closed() {
		return fmt.Errorf("etcd: %s %q: %w", op, key, store.ErrClosed)
	}
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("etcd: %s %q: value too large for etcd (its --max-request-bytes defaults to 1.5 MiB; the client sends at most 2 MiB): %w", op, key, err)
	}
	if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrGRPCTooManyOps) || err.Error() == rpctypes.ErrTooManyOps.Error() {
		// A refusal, not an unknown outcome: nothing was written.
		return fmt.Errorf("etcd: %s %q: too many operations in one transaction for etcd (its --max-txn-ops defaults to 128; Usher's admin changes are planned within that default): %w", op, key, err)
	}
	if unavailable(err) {
		return fmt.Errorf("etcd: %s %q: no answer from %s: %w (%w)", op, key, s.desc, store.ErrUnavailable, err)
	}
	return fmt.Errorf("etcd: %s %q: %w", op, key, err)
}

// unavailable reports whether err means etcd did not answer in time, so a
// write's outcome is unknown.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	for _, e := range []error{rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrGRPCTimeout, rpctypes.ErrGRPCNoLeader, rpctypes.ErrGRPCLeaderChanged} {
		if errors.Is(err, e) || err.Error() == e.Error() {
			return true
		}
	}
	return false
}

// opCtx bounds one read or write by the store's request timeout.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// entry turns an etcd key-value into a store entry, stripping the prefix.
// Values are never nil (etcd hands back empty values as nil).
func (s *Store) entry(kv *kvPair) store.Entry {
	v := kv.Value
	if v == nil {
		v = []byte{}
	}
	return store.Entry{Key: strings.TrimPrefix(string(kv.Key), s.prefix), Value: v, Revision: kv.ModRevision}
}

// Get returns the key's entry or store.ErrNotFound (a linearizable read).
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	if err := s.check(ctx); err != nil {
		return store.Entry{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return store.Entry{}, s.wrap("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.Entry{}, fmt.Errorf("etcd: get %q: %w", key, store.ErrNotFound)
	}
	return s.entry(resp.Kvs[0]), nil
}

// List returns the entries under prefix sorted by key and the etcd revision
// of that read, so Watch(prefix, rev) misses nothing. The revision is the
// whole etcd cluster's: writes by anyone else sharing the etcd advance it too.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Entry, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+prefix, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, s.wrap("list", prefix, err)
	}
	var entries []store.Entry
	if len(resp.Kvs) > 0 {
		entries = make([]store.Entry, len(resp.Kvs))
		for i, kv := range resp.Kvs {
			entries[i] = s.entry(kv)
		}
	}
	return entries, resp.Header.Revision, nil
}

func validate(op, key string, expected int64) error {
	if key == "" {
		return fmt.Errorf("etcd: %s: empty key", op)
	}
	if expected < store.AnyRevision {
		return fmt.Errorf("etcd: %s %q: invalid expected revision %d", op, key, expected)
	}
	return nil
}

// Put writes value if the key's mod revision matches expected, in one etcd
// transaction, and returns the write's revision once etcd committed it.
func (s *Store) Put(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	if err := validate("put", key, expected); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	k, v := s.prefix+key, string(value)
	if expected == store.AnyRevision {
		resp, err := s.cli.Put(ctx, k, v)
		if err != nil {
			return 0, s.wrap("put", key, err)
		}
		return resp.Header.Revision, nil
	}
	cmp := clientv3.Compare(clientv3.ModRevision(k), "=", expected)
	if expected == store.MustNotExist {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	}
	resp, err := s.cli.Txn(ctx).
		If(cmp).
		Then(clientv3.OpPut(k, v)).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, s.wrap("put", key, err)
	}
	if !resp.Succeeded {
		return 0, conflict("put", key, expected, resp)
	}
	return resp.Header.Revision, nil
}

// Delete removes the key if its mod revision matches expected and returns the
// deletion's revision once etcd committed it.
func (s *Store) Delete(ctx context.Context, key string, expected int64) (int64, error) {
	if err := validate("delete", key, expected); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	k := s.prefix + key
	switch expected {
	case store.AnyRevision:
		resp, err := s.cli.Delete(ctx, k)
		if err != nil {
			return 0, s.wrap("delete", key, err)
		}
		if resp.Deleted == 0 { // etcd did not write: no revision was used
			return 0, fmt.Errorf("etcd: delete %q: %w", key, store.ErrNotFound)
		}
		return resp.Header.Revision, nil
	case store.MustNotExist:
		// Never deletes: it is a conflict if the key exists, else not found.
		resp, err := s.cli.Get(ctx, k, clientv3.WithKeysOnly())
		if err != nil {
			return 0, s.wrap("delete", key, err)
		}
		if len(resp.Kvs) == 0 {
			return 0, fmt.Errorf("etcd: delete %q: %w", key, store.ErrNotFound)
		}
		return 0, fmt.Errorf("etcd: delete %q: expected revision %d (must not exist), have %d: %w",
			key, expected, resp.Kvs[0].ModRevision, store.ErrConflict)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expected)).
		Then(clientv3.OpDelete(k)).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, s.wrap("delete", key, err)
	}
	if !resp.Succeeded {
		if current(resp) == nil {
			return 0, fmt.Errorf("etcd: delete %q: %w", key, store.ErrNotFound)
		}
		return 0, conflict("delete", key, expected, resp)
	}
	return resp.Header.Revision, nil
}

// current is the key as the failed transaction's Else branch read it, or nil.
// Txn applies ops in one etcd transaction: every op's check is a compare
// of the transaction, so either all ops commit, sharing one revision, or
// none does.
func (s *Store) Txn(ctx context.Context, ops []store.Op) ([]int64, error) {
	var (
		cmps       []clientv3.Cmp
		cmpOf      = make([]int, len(ops)) // index into cmps, or -1
		then, orig []clientv3.Op
	)
	for i, op := range ops {
		name := "put"
		if op.Value == nil {
			name = "delete"
		}
		if err := validate(name, op.Key, op.Expected); err != nil {
			return nil, err
		}
		k := s.prefix + op.Key
		cmpOf[i] = -1
		switch {
		case op.Value == nil && op.Expected == store.MustNotExist:
			// Never deletes, as Delete: the check fails either way.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "<", 0))
			cmpOf[i] = len(cmps) - 1
		case op.Expected == store.MustNotExist:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			cmpOf[i] = len(cmps) - 1
		case op.Expected != store.AnyRevision:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", op.Expected))
			cmpOf[i] = len(cmps) - 1
		}
		if op.Value == nil {
			then = append(then, clientv3.OpDelete(k))
		} else {
			then = append(then, clientv3.OpPut(k, string(op.Value)))
		}
		orig = append(orig, clientv3.OpGet(k, clientv3.WithKeysOnly()))
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(orig...).Commit()
	if err != nil {
		return nil, s.wrap("txn", ops[0].Key, err)
	}
	if !resp.Succeeded {
		for i, op := range ops {
			if cmpOf[i] < 0 {
				continue
			}
			var cur *kvPair
			if r := resp.Responses[i].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
				cur = r.Kvs[0]
			}
			name := "put"
			if op.Value == nil {
				name = "delete"
			}
			switch {
			case cur == nil && op.Value == nil:
				return nil, &store.TxnError{Index: i, Err: fmt.Errorf("etcd: %s %q: %w", name, op.Key, store.ErrNotFound)}
			case cur == nil && op.Expected != store.MustNotExist:
				return nil, &store.TxnError{Index: i, Err: fmt.Errorf("etcd: %s %q: expected revision %d, key is absent: %w", name, op.Key, op.Expected, store.ErrConflict)}
			case cur != nil && (op.Expected == store.MustNotExist || cur.ModRevision != op.Expected):
				return nil, &store.TxnError{Index: i, Err: fmt.Errorf("etcd: %s %q: expected revision %d, have %d: %w", name, op.Key, op.Expected, cur.ModRevision, store.ErrConflict)}
			}
		}
		return nil, fmt.Errorf("etcd: txn on %q: a check failed but no op's key shows why", ops[0].Key)
	}
	revs := make([]int64, len(ops))
	for i := range ops {
		if d := resp.Responses[i].GetResponseDeleteRange(); d != nil && d.Deleted == 0 {
			continue // deleting what was not there wrote nothing
		}
		revs[i] = resp.Header.Revision
	}
	return revs, nil
}

func current(resp *clientv3.TxnResponse) *kvPair {
	if len(resp.Responses) != 1 {
		return nil
	}
	r := resp.Responses[0].GetResponseRange()
	if r == nil || len(r.Kvs) == 0 {
		return nil
	}
	return r.Kvs[0]
}

func conflict(op, key string, expected int64, resp *clientv3.TxnResponse) error {
	if kv := current(resp); kv != nil {
		return fmt.Errorf("etcd: %s %q: expected revision %d, have %d: %w", op, key, expected, kv.ModRevision, store.ErrConflict)
	}
	return fmt.Errorf("etcd: %s %q: expected revision %d, key is absent: %w", op, key, expected, store.ErrConflict)
}

// Watch streams changes under prefix with revision > after from an etcd
// watch. If etcd compacted past after+1 the only response is
// store.ErrCompacted; a watcher that leaves more than 1024 events unread is
// also ended with store.ErrCompacted. Other failures the etcd client cannot
// recover from (e.g. the member lost its leader) end the watch with a plain
// error; the caller watches again from the last revision it saw.
func (s *Store) Watch(ctx context.Context, prefix string, after int64) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 1)
	fail := func(err error) <-chan store.WatchResponse {
		out <- store.WatchResponse{Err: err}
		close(out)
		return out
	}
	if after < 0 {
		return fail(fmt.Errorf("etcd: watch %q: invalid revision %d", prefix, after))
	}

	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return fail(store.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()

	// wctx ends with the caller's ctx or Close. Requiring a leader makes a
	// watch on a member cut off from the quorum fail instead of going quiet.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	stop := context.AfterFunc(s.ctx, cancel)
	wch := s.cli.Watch(wctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(after+1))
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		s.serve(wctx, prefix, after, wch, out)
	}()
	return out
}

// serve forwards etcd watch responses to out until wctx ends or the watch
// fails. It keeps reading from etcd while the caller is slow, holding at most
// queueSize undelivered events: beyond that the watch ends with
// store.ErrCompacted (the caller re-lists) instead of buffering without
// bound in the etcd client.
func (s *Store) serve(wctx context.Context, prefix string, after int64, wch clientv3.WatchChan, out chan<- store.WatchResponse) {
	var (
		pending []store.Event
		last    = after // highest revision received
		final   error   // the watch's terminal error, sent after pending
	)
	for final == nil {
		var (
			outc chan<- store.WatchResponse
			next store.WatchResponse
		)
		if len(pending) > 0 {
			outc, next = out, store.WatchResponse{Events: pending}
		}
		var (
			resp clientv3.WatchResponse
			ok   bool
		)
		select {
		case outc <- next:
			pending = nil
			continue
		case resp, ok = <-wch:
		case <-wctx.Done():
			return
		}
		switch {
		case wctx.Err() != nil:
			return // caller's ctx or Close: end without an error
		case !ok:
			final = fmt.Errorf("etcd: watch %q after %d: etcd watch ended unexpectedly", prefix, last)
		case resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted):
			final = fmt.Errorf("etcd: watch %q after %d: etcd history is compacted up to revision %d: %w",
				prefix, last, resp.CompactRevision, store.ErrCompacted)
		case resp.Err() != nil:
			final = fmt.Errorf("etcd: watch %q after %d: %w", prefix, last, resp.Err())
		}
		if final != nil {
			break
		}
		// Created and progress-notify responses carry no events.
		received := last
		for _, ev := range resp.Events {
			// Belt and braces: the etcd client resumes from last+1, so an
			// already-received revision could only come from a redelivered
			// response. (Events sharing a revision, from a multi-key etcd
			// transaction, arrive in one response, and last only moves
			// between responses.)
			if ev.Kv.ModRevision <= last {
				continue
			}
			e := store.Event{Type: store.EventPut, Entry: s.entry(ev.Kv)}
			if ev.Type == clientv3.EventTypeDelete {
				e.Type, e.Entry.Value = store.EventDelete, nil
			}
			pending = append(pending, e)
			received = ev.Kv.ModRevision
		}
		last = received
		if len(pending) > s.queueSize {
			// Let go of etcd's side now; the caller learns at its next read.
			pending = nil
			final = fmt.Errorf("etcd: watch %q: watcher fell more than %d events behind: %w", prefix, s.queueSize, store.ErrCompacted)
		}
	}
	send := func(resp store.WatchResponse) bool {
		select {
		case out <- resp:
			return true
		case <-wctx.Done():
			return false
		}
	}
	if len(pending) > 0 && !send(store.WatchResponse{Events: pending}) {
		return
	}
	send(store.WatchResponse{Err: final})
}

// Close ends all watches, waits for their goroutines and closes the etcd
// client. Later calls, including Close, return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return store.ErrClosed
	}
	s.cancel()
	s.mu.Unlock()

	s.wg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close client for %s: %w", s.desc, err)
	}
	return nil
}
