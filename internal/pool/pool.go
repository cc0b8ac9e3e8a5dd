// Package pool keeps the instances that serve each revision: it starts one on
// demand (a cold start), hands its address to the gateway, replaces it when it
// dies, and stops it when the revision is retired or Usher shuts down.
//
// The gateway's hot path is Acquire on a running instance: one sync.Map load
// and one atomic load, no lock and no I/O. The pool never decides who may call.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/runtime"
)

// ErrClosed is returned once the pool has been closed.
var ErrClosed = errors.New("pool: closed")

// Config wires a pool.
type Config struct {
	Runtime runtime.Runtime
	// ExtraEnv is added to every instance's environment (e.g. GCE_METADATA_HOST).
	ExtraEnv       []runtime.EnvVar
	StartupTimeout time.Duration
	StopGrace      time.Duration
	Log            *slog.Logger
}

// Pool holds instances per revision.
type Pool struct {
	cfg       Config
	revisions sync.Map // revision key → *revisionInstances
	closed    atomic.Bool
}

// New returns an empty pool.
func New(cfg Config) *Pool {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Pool{cfg: cfg}
}

// revisionInstances is the instance of one revision (one per revision until
// autoscaling arrives) and the machinery to (re)start it.
type revisionInstances struct {
	key  string
	spec runtime.InstanceSpec
	log  *slog.Logger

	current atomic.Pointer[instance] // read lock-free on the hot path

	mu       sync.Mutex
	starting chan struct{} // non-nil while a start is under way; closed when it ends
	startErr error
	stopped  bool
}

type instance struct {
	runtime.Instance
	addr string
}

func (in *instance) alive() bool {
	select {
	case <-in.Done():
		return false
	default:
		return true
	}
}

// Key identifies a revision across projects and regions: PROJECT/REGION/NAME.
func Key(rev *apis.Revision) string {
	return rev.Metadata.Namespace + "/" + rev.Metadata.Labels[apis.LabelLocation] + "/" + rev.Metadata.Name
}

// Acquire returns the address of a running instance of rev (whose Key is
// key), starting one if needed and waiting for it (bounded by ctx).
func (p *Pool) Acquire(ctx context.Context, key string, rev *apis.Revision) (string, error) {
	if v, ok := p.revisions.Load(key); ok {
		if in := v.(*revisionInstances).current.Load(); in != nil && in.alive() {
			return in.addr, nil
		}
	}
	if p.closed.Load() {
		return "", ErrClosed
	}
	ri := p.revisionFor(key, rev)
	in, err := ri.ensure(ctx, p)
	if err != nil {
		return "", err
	}
	return in.addr, nil
}

func (p *Pool) revisionFor(key string, rev *apis.Revision) *revisionInstances {
	if v, ok := p.revisions.Load(key); ok {
		return v.(*revisionInstances)
	}
	ri := &revisionInstances{
		key:  key,
		spec: p.specFor(rev),
		log:  p.cfg.Log.With("service", rev.Metadata.Labels[apis.LabelService], "revision", rev.Metadata.Name),
	}
	v, _ := p.revisions.LoadOrStore(key, ri)
	return v.(*revisionInstances)
}

func (p *Pool) specFor(rev *apis.Revision) runtime.InstanceSpec {
	c := rev.Spec.Containers[0]
	spec := runtime.InstanceSpec{
		Image:          c.Image,
		Command:        c.Command,
		Args:           c.Args,
		Service:        rev.Metadata.Labels[apis.LabelService],
		Revision:       rev.Metadata.Name,
		Configuration:  rev.Metadata.Labels[apis.LabelConfiguration],
		ExtraEnv:       p.cfg.ExtraEnv,
		StartupTimeout: p.cfg.StartupTimeout,
		StopGrace:      p.cfg.StopGrace,
	}
	for _, e := range c.Env {
		spec.Env = append(spec.Env, runtime.EnvVar{Name: e.Name, Value: e.Value})
	}
	return spec
}

// ensure returns the running instance or starts one; concurrent callers share
// one start.
func (ri *revisionInstances) ensure(ctx context.Context, p *Pool) (*instance, error) {
	for {
		ri.mu.Lock()
		if in := ri.current.Load(); in != nil && in.alive() {
			ri.mu.Unlock()
			return in, nil
		}
		if ri.stopped {
			ri.mu.Unlock()
			return nil, fmt.Errorf("revision %s is no longer serving", ri.key)
		}
		if ri.starting == nil {
			ri.starting = make(chan struct{})
			go ri.start(p)
		}
		ch := ri.starting
		ri.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ri.mu.Lock()
		in, err := ri.current.Load(), ri.startErr
		ri.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if in != nil && in.alive() {
			return in, nil
		}
	}
}

// start runs one cold start detached from any request, so a caller giving up
// does not kill an instance others are waiting for.
func (ri *revisionInstances) start(p *Pool) {
	spec := ri.spec
	spec.Logs = lineLogger{ri.log}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), spec.WithDefaults().StartupTimeout+5*time.Second)
	rin, err := p.cfg.Runtime.Start(ctx, spec)
	cancel()

	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.startErr = err
	if err == nil {
		in := &instance{Instance: rin, addr: rin.Addr()}
		if ri.stopped || p.closed.Load() {
			go rin.Stop(context.Background())
			ri.startErr = fmt.Errorf("revision %s is no longer serving", ri.key)
		} else {
			ri.current.Store(in)
			ri.log.Info("instance started", "instance", rin.ID(), "addr", in.addr, "cold_start", time.Since(begin).Round(time.Millisecond))
			go ri.supervise(p, in)
		}
	} else {
		ri.log.Warn("instance failed to start", "err", err)
	}
	close(ri.starting)
	ri.starting = nil
}

// supervise replaces an instance that exits on its own, so the revision keeps
// serving without waiting for the next request to pay a cold start.
func (ri *revisionInstances) supervise(p *Pool, in *instance) {
	<-in.Done()
	ri.mu.Lock()
	replace := !ri.stopped && !p.closed.Load() && ri.current.Load() == in
	ri.mu.Unlock()
	if !replace {
		return
	}
	ri.log.Warn("instance exited; replacing it", "instance", in.ID(), "err", in.Err())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ri.ensure(ctx, p); err != nil {
		ri.log.Warn("replacement failed; the next request retries", "err", err)
	}
}

func (ri *revisionInstances) stop(ctx context.Context) error {
	ri.mu.Lock()
	ri.stopped = true
	in := ri.current.Swap(nil)
	ri.mu.Unlock()
	if in == nil {
		return nil
	}
	return in.Stop(ctx)
}

// Start makes sure rev has a running instance (a deploy's readiness check).
func (p *Pool) Start(ctx context.Context, rev *apis.Revision) error {
	_, err := p.Acquire(ctx, Key(rev), rev)
	return err
}

// Retire stops the instances of revisions for which keep returns false.
func (p *Pool) Retire(ctx context.Context, keep func(key string) bool) {
	var wg sync.WaitGroup
	p.revisions.Range(func(k, v any) bool {
		if keep(k.(string)) {
			return true
		}
		p.revisions.Delete(k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := v.(*revisionInstances).stop(ctx); err != nil {
				p.cfg.Log.Warn("stopping instance", "revision", k, "err", err)
			}
		}()
		return true
	})
	wg.Wait()
}

// Close stops every instance (SIGTERM, then SIGKILL after the grace).
func (p *Pool) Close(ctx context.Context) {
	p.closed.Store(true)
	p.Retire(ctx, func(string) bool { return false })
}

// lineLogger records an instance's output, one log record per line (the
// runtime writes whole lines).
type lineLogger struct{ log *slog.Logger }

func (l lineLogger) Write(b []byte) (int, error) {
	l.log.Info(strings.TrimRight(string(b), "\r\n"), "stream", "instance")
	return len(b), nil
}
