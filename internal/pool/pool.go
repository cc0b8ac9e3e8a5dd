// Package pool keeps the instances that serve each revision and scales them
// the way Cloud Run does: by in-flight requests. Each instance takes at most
// the revision's concurrency; when every instance is full and the revision is
// below its maximum, a new instance starts and the request waits for it (a
// bounded queue with a bounded wait, like Knative's activator) instead of
// failing. Idle instances above the minimum stop after a grace period (scale to
// zero); an instance that dies is dropped and replaced on demand, or at once
// while the revision is below its minimum.
//
// The gateway's hot path is Acquire on a revision with a free slot: one
// sync.Map load and one per-revision mutex, no global lock, no I/O, no
// allocation. The pool never decides who may call.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/runtime"
)

// Errors Acquire returns; the gateway maps them to status codes.
var (
	ErrClosed = errors.New("pool: closed")
	// ErrOverloaded: the revision is at its maximum instances and its queue
	// is full (429, retry later).
	ErrOverloaded = errors.New("pool: revision at capacity and its queue is full")
	// ErrQueueTimeout: no slot freed up within the queue timeout (503).
	ErrQueueTimeout = errors.New("pool: no instance became available in time")
	// ErrRetired: the revision no longer serves.
	ErrRetired = errors.New("pool: revision is no longer serving")
)

// Defaults, Cloud Run's where it has one.
const (
	DefaultMaxInstances     = 100
	DefaultScaleToZeroGrace = 15 * time.Minute
	DefaultQueueTimeout     = 60 * time.Second
	DefaultMaxQueue         = 1000
)

// Config wires a pool.
type Config struct {
	Runtime runtime.Runtime
	// ExtraEnv is added to every instance's environment.
	ExtraEnv []runtime.EnvVar
	// Identity, if set, is called once per revision before its first
	// instance starts; the env it returns is added to that revision's
	// instances (GCE_METADATA_HOST) and release is called when the revision
	// is retired.
	Identity func(rev *apis.Revision) (env []runtime.EnvVar, release func(), err error)
	// SecretValue, if set, reads a secret's version of a project ("latest":
	// the newest enabled one) as the revision's runtime service account,
	// for an instance whose env references it; it is called at every
	// start, so a new instance sees a new latest version and a revoked
	// grant. Unset: such instances fail to start.
	SecretValue    func(ctx context.Context, project, serviceAccount, secret, version string) ([]byte, error)
	StartupTimeout time.Duration
	StopGrace      time.Duration
	// ScaleToZeroGrace is how long an idle instance above the minimum lives.
	ScaleToZeroGrace time.Duration
	// QueueTimeout bounds how long a request waits for a slot.
	QueueTimeout time.Duration
	// MaxQueue bounds how many requests may wait per revision.
	MaxQueue int
	// Output, if set, receives every line instances print, keyed by
	// service (PROJECT/REGION/SERVICE).
	Output *logs.Book[logs.Entry]
	// OnOutput, if set, is also told of every line, with its service key
	// (durable logs). It is called on the instance's output goroutine and
	// must not block: a slow one slows the instance down.
	OnOutput func(serviceKey string, e logs.Entry)
	Log      *slog.Logger
	// OnColdStart, if set, is told of every instance that started, with
	// its service (PROJECT/REGION/SERVICE), revision and start duration
	// (per-service metrics). It is called with no lock held.
	OnColdStart func(serviceKey, revision string, took time.Duration)
	// Dial, if set, connects to an instance's address for probes (the
	// gateway's DialInstance: sandboxed instances listen only inside their
	// network namespace); default a plain TCP dial.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Pool holds instances per revision.
type Pool struct {
	cfg       Config
	revisions sync.Map // revision key → *revisionPool
	closed    atomic.Bool
	stopReap  chan struct{}
	reapOnce  sync.Once
}

// New returns an empty pool; call Close to stop its instances.
func New(cfg Config) *Pool {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ScaleToZeroGrace <= 0 {
		cfg.ScaleToZeroGrace = DefaultScaleToZeroGrace
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = DefaultQueueTimeout
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	p := &Pool{cfg: cfg, stopReap: make(chan struct{})}
	go p.reapLoop()
	return p
}

// Key identifies a revision across projects and regions: PROJECT/REGION/NAME.
func Key(rev *apis.Revision) string {
	return runtime.RevisionKey(rev.Metadata.Namespace, rev.Metadata.Labels[apis.LabelLocation], rev.Metadata.Name)
}

// Lease is one request's slot on an instance; Release it when the request ends.
type Lease struct {
	in *instance
}

// Addr is the instance's address.
func (l *Lease) Addr() string { return l.in.addr }

// Release frees the slot for the next request.
func (l *Lease) Release() { l.in.rp.release(l.in) }

// instance is one running instance and its load.
type instance struct {
	runtime.Instance
	rp    *revisionPool
	addr  string
	lease Lease // handed out by pointer: leases allocate nothing

	// Guarded by rp.mu.
	inflight int
	lastUsed time.Time
	gone     bool // exited or being stopped: takes no new requests
	// busySince is when inflight last went from 0 to 1: billable time
	// runs while an instance holds at least one request, as Cloud Run bills.
	busySince time.Time
}

// beginLocked takes a slot on in.
func (in *instance) beginLocked() {
	if in.inflight == 0 {
		in.busySince = time.Now()
	}
	in.inflight++
}

// waiter is a request queued for a slot.
type waiter struct {
	ready chan *instance // buffered(1): the slot handed over
}

// revisionPool is the instances of one revision.
type revisionPool struct {
	p          *Pool
	key        string
	serviceKey string // PROJECT/REGION/SERVICE, for its logs
	spec       runtime.InstanceSpec
	// secretEnv are env vars whose values are secrets, read at each start.
	secretEnv []apis.EnvVar
	// secretVolumes are the spec's volumes (by index) that hold secrets'
	// versions as files, read at each start.
	secretVolumes map[int]*apis.SecretVolumeSource
	project       string
	runAs         string // the runtime service account
	log           *slog.Logger

	concurrency int // per instance; > 0
	// billable is the instance time that ended: the sum, over instances,
	// of the periods each held at least one request (guarded by mu).
	billable time.Duration
	minScale int
	maxScale int
	// startup (httpGet only: tcpSocket is the runtime's own check) and
	// liveness probes (probe.go); nil when none.
	startup, liveness *probe

	mu        sync.Mutex
	instances []*instance
	starting  int
	waiters   []*waiter
	retired   bool
	lastErr   error // the last start failure, for requests that waited on it
	// releaseIdentity ends the revision's runtime identity (Config.Identity).
	releaseIdentity func()
}

// Acquire returns a lease on an instance of rev (whose Key is key) with a free
// slot, starting instances as needed and queueing until one is free.
func (p *Pool) Acquire(ctx context.Context, key string, rev *apis.Revision) (*Lease, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	rp, err := p.revisionFor(key, rev)
	if err != nil {
		return nil, err
	}
	return rp.acquire(ctx)
}

func (p *Pool) revisionFor(key string, rev *apis.Revision) (*revisionPool, error) {
	if v, ok := p.revisions.Load(key); ok {
		return v.(*revisionPool), nil
	}
	rp := p.newRevisionPool(key, rev)
	v, loaded := p.revisions.LoadOrStore(key, rp)
	if loaded {
		return v.(*revisionPool), nil
	}
	if p.cfg.Identity != nil {
		env, release, err := p.cfg.Identity(rev)
		if err != nil {
			p.revisions.Delete(key)
			return nil, fmt.Errorf("revision %s: runtime identity: %w", rev.Metadata.Name, err)
		}
		rp.mu.Lock()
		rp.spec.ExtraEnv = append(append([]runtime.EnvVar(nil), rp.spec.ExtraEnv...), env...)
		rp.releaseIdentity = release
		rp.mu.Unlock()
	}
	return rp, nil
}

func (p *Pool) newRevisionPool(key string, rev *apis.Revision) *revisionPool {
	c := rev.Spec.Containers[0]
	spec := runtime.InstanceSpec{
		Image:          c.Image,
		Command:        c.Command,
		Args:           c.Args,
		WorkingDir:     c.WorkingDir,
		Service:        rev.Metadata.Labels[apis.LabelService],
		Revision:       rev.Metadata.Name,
		Configuration:  rev.Metadata.Labels[apis.LabelConfiguration],
		Key:            key,
		ExtraEnv:       p.cfg.ExtraEnv,
		StartupTimeout: p.cfg.StartupTimeout,
		StopGrace:      p.cfg.StopGrace,
	}
	var secretEnv []apis.EnvVar
	for _, e := range c.Env {
		if _, _, ok := e.SecretRef(); ok {
			secretEnv = append(secretEnv, e)
			continue
		}
		spec.Env = append(spec.Env, runtime.EnvVar{Name: e.Name, Value: e.Value})
	}
	if c.Resources != nil {
		spec.CPU, spec.Memory = c.Resources.Limits["cpu"], c.Resources.Limits["memory"]
	}
	var secretVolumes map[int]*apis.SecretVolumeSource
	spec.Volumes, secretVolumes = volumesOf(rev)
	rp := &revisionPool{
		secretVolumes: secretVolumes,
		p:             p,
		key:           key,
		serviceKey:    rev.Metadata.Namespace + "/" + rev.Metadata.Labels[apis.LabelLocation] + "/" + spec.Service,
		spec:          spec,
		secretEnv:     secretEnv,
		project:       rev.Metadata.Namespace,
		runAs:         rev.Spec.ServiceAccountName,
		log:           p.cfg.Log.With("service", spec.Service, "revision", spec.Revision),
		concurrency:   apis.DefaultContainerConcurrency,
		minScale:      scaleAnnotation(rev, apis.AnnotationMinScale, 0),
		maxScale:      scaleAnnotation(rev, apis.AnnotationMaxScale, DefaultMaxInstances),
	}
	if cc := rev.Spec.ContainerConcurrency; cc != nil {
		// 0 means "no limit" in Knative; Cloud Run caps at 1000.
		rp.concurrency = int(*cc)
		if rp.concurrency == 0 {
			rp.concurrency = apis.MaxContainerConcurrency
		}
	}
	if rp.maxScale <= 0 {
		rp.maxScale = DefaultMaxInstances
	}
	if sp := c.StartupProbe; sp != nil && (sp.HTTPGet != nil || sp.GRPC != nil) {
		rp.startup = newProbe(sp, p.cfg.Dial)
	}
	if c.LivenessProbe != nil {
		rp.liveness = newProbe(c.LivenessProbe, p.cfg.Dial)
	}
	return rp
}

func scaleAnnotation(rev *apis.Revision, key string, def int) int {
	v := rev.Metadata.Annotations[key]
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return def
	}
	return n
}

func (rp *revisionPool) acquire(ctx context.Context) (*Lease, error) {
	rp.mu.Lock()
	if rp.retired {
		rp.mu.Unlock()
		return nil, ErrRetired
	}
	if in := rp.freeLocked(); in != nil {
		in.beginLocked()
		rp.mu.Unlock()
		return &in.lease, nil
	}
	if len(rp.waiters) >= rp.p.cfg.MaxQueue {
		rp.mu.Unlock()
		return nil, ErrOverloaded
	}
	w := &waiter{ready: make(chan *instance, 1)}
	rp.waiters = append(rp.waiters, w)
	rp.scaleUpLocked()
	rp.mu.Unlock()

	timer := time.NewTimer(rp.p.cfg.QueueTimeout)
	defer timer.Stop()
	var err error
	select {
	case in, ok := <-w.ready:
		if ok {
			return &in.lease, nil
		}
		// Woken without a slot: every start failed, or the revision retired.
		rp.mu.Lock()
		err, retired := rp.lastErr, rp.retired
		rp.mu.Unlock()
		if retired || err == nil {
			return nil, ErrRetired
		}
		return nil, err
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = ErrQueueTimeout
	}
	// Give up: leave the queue, or, if a slot was handed over meanwhile,
	// pass it on.
	rp.mu.Lock()
	for i, x := range rp.waiters {
		if x == w {
			rp.waiters = append(rp.waiters[:i], rp.waiters[i+1:]...)
			break
		}
	}
	startErr := rp.lastErr
	rp.mu.Unlock()
	select {
	case in, ok := <-w.ready:
		if ok {
			rp.release(in)
		}
	default:
	}
	if errors.Is(err, ErrQueueTimeout) && startErr != nil {
		err = fmt.Errorf("%w: %w", err, startErr)
	}
	return nil, err
}

// freeLocked returns the least-loaded live instance with a free slot.
func (rp *revisionPool) freeLocked() *instance {
	var best *instance
	for _, in := range rp.instances {
		if in.gone || in.inflight >= rp.concurrency {
			continue
		}
		if best == nil || in.inflight < best.inflight {
			best = in
		}
	}
	return best
}

// scaleUpLocked starts instances so that, once started, every waiter has a
// slot, within the maximum.
func (rp *revisionPool) scaleUpLocked() {
	live := 0
	for _, in := range rp.instances {
		if !in.gone {
			live++
		}
	}
	// Slots coming from instances already starting.
	pending := len(rp.waiters) - rp.starting*rp.concurrency
	for pending > 0 && live+rp.starting < rp.maxScale {
		rp.starting++
		pending -= rp.concurrency
		go rp.start()
	}
}

// start runs one cold start detached from any request, so a caller giving up
// does not kill an instance others are waiting for.
func (rp *revisionPool) start() {
	spec := rp.spec
	out := &lineLogger{log: rp.log, book: rp.p.cfg.Output, also: rp.p.cfg.OnOutput, key: rp.serviceKey, service: spec.Service, revision: spec.Revision}
	errOut := &lineLogger{log: rp.log, book: rp.p.cfg.Output, also: rp.p.cfg.OnOutput, key: rp.serviceKey, service: spec.Service, revision: spec.Revision, stderr: true}
	spec.Logs, spec.ErrLogs = out, errOut
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), spec.WithDefaults().StartupTimeout+5*time.Second)
	var rin runtime.Instance
	env, err := rp.resolveSecrets(ctx)
	if err == nil {
		spec.Env = append(slices.Clip(spec.Env), env...)
		spec.Volumes, err = rp.resolveSecretVolumes(ctx, spec.Volumes)
	}
	if err == nil {
		rin, err = rp.p.cfg.Runtime.Start(ctx, spec)
	}
	cancel()
	if err == nil {
		out.instance.Store(rin.ID())
		errOut.instance.Store(rin.ID())
		if rp.startup != nil {
			// Listening is not enough: the startup probe decides.
			if err = rp.startup.untilReady(rin); err != nil {
				err = fmt.Errorf("instance %s: startup probe: %w", rin.ID(), err)
				rin.Stop(context.Background())
			}
		}
	}

	rp.mu.Lock()
	rp.starting--
	if err != nil {
		rp.lastErr = err
		rp.log.Warn("instance failed to start", "err", err)
		// Waiters keep waiting (another start or a release may serve
		// them) until their timeout; without any instance or start left,
		// fail them now with the cause.
		if len(rp.instances) == 0 && rp.starting == 0 {
			rp.failWaitersLocked()
		}
		rp.mu.Unlock()
		return
	}
	in := &instance{Instance: rin, rp: rp, addr: rin.Addr(), lastUsed: time.Now()}
	in.lease.in = in
	if rp.retired || rp.p.closed.Load() {
		rp.mu.Unlock()
		rin.Stop(context.Background())
		return
	}
	rp.lastErr = nil
	rp.instances = append(rp.instances, in)
	took := time.Since(begin)
	rp.log.Info("instance started", "instance", rin.ID(), "addr", in.addr,
		"cold_start", took.Round(time.Millisecond), "instances", len(rp.instances))
	rp.handOffLocked(in)
	rp.mu.Unlock()
	if f := rp.p.cfg.OnColdStart; f != nil {
		f(rp.serviceKey, spec.Revision, took)
	}
	go rp.supervise(in)
	if rp.liveness != nil {
		go rp.keepAlive(in)
	}
}

// keepAlive probes a live instance until it is gone; after the liveness
// probe's failureThreshold failures in a row it stops the instance, which
// supervise then replaces.
func (rp *revisionPool) keepAlive(in *instance) {
	if err := rp.liveness.untilDead(in.Instance); err != nil {
		rp.log.Warn("instance failed its liveness probe: restarting it", "instance", in.ID(), "err", err)
		rp.mu.Lock()
		if !in.gone { // no new requests while it stops; a replacement as supervise would start one
			rp.removeLocked(in)
			if !rp.retired && !rp.p.closed.Load() {
				rp.ensureMinLocked()
				rp.scaleUpLocked()
			}
		}
		rp.mu.Unlock()
		in.Stop(context.Background())
	}
}

// resolveSecrets reads the values of the revision's secret env vars.
func (rp *revisionPool) resolveSecrets(ctx context.Context) ([]runtime.EnvVar, error) {
	if len(rp.secretEnv) == 0 {
		return nil, nil
	}
	if rp.p.cfg.SecretValue == nil {
		return nil, errors.New("pool: the revision's env references secrets and this pool cannot read them")
	}
	out := make([]runtime.EnvVar, 0, len(rp.secretEnv))
	for _, e := range rp.secretEnv {
		secret, version, _ := e.SecretRef()
		v, err := rp.p.cfg.SecretValue(ctx, rp.project, rp.runAs, secret, version)
		if err != nil {
			return nil, fmt.Errorf("env %s: secret %s version %s: %w", e.Name, secret, version, err)
		}
		out = append(out, runtime.EnvVar{Name: e.Name, Value: string(v)})
	}
	return out, nil
}

// resolveSecretVolumes returns vols with the secret volumes' files read
// now, as the runtime account may read them now (vols is not modified).
func (rp *revisionPool) resolveSecretVolumes(ctx context.Context, vols []runtime.Volume) ([]runtime.Volume, error) {
	if len(rp.secretVolumes) == 0 {
		return vols, nil
	}
	if rp.p.cfg.SecretValue == nil {
		return nil, errors.New("pool: the revision mounts secrets and this pool cannot read them")
	}
	out := slices.Clone(vols)
	for i, src := range rp.secretVolumes {
		files := []runtime.VolumeFile{}
		for _, f := range src.SecretFiles() {
			v, err := rp.p.cfg.SecretValue(ctx, rp.project, rp.runAs, src.SecretName, f.Version)
			if err != nil {
				return nil, fmt.Errorf("volume at %s: secret %s version %s: %w", out[i].Path, src.SecretName, f.Version, err)
			}
			files = append(files, runtime.VolumeFile{Name: f.Path, Data: v, Mode: uint32(f.Mode) & 0o777})
		}
		out[i].Files = files
	}
	return out, nil
}

// failWaitersLocked wakes every waiter with no slot: they see the start error.
func (rp *revisionPool) failWaitersLocked() {
	for _, w := range rp.waiters {
		close(w.ready)
	}
	rp.waiters = nil
}

// handOffLocked gives in's free slots to queued requests, oldest first.
func (rp *revisionPool) handOffLocked(in *instance) {
	for len(rp.waiters) > 0 && !in.gone && in.inflight < rp.concurrency {
		w := rp.waiters[0]
		rp.waiters = rp.waiters[1:]
		in.beginLocked()
		w.ready <- in
	}
}

func (rp *revisionPool) release(in *instance) {
	rp.mu.Lock()
	in.inflight--
	in.lastUsed = time.Now()
	if in.inflight == 0 {
		rp.billable += in.lastUsed.Sub(in.busySince)
	}
	rp.handOffLocked(in)
	rp.mu.Unlock()
}

// supervise drops an instance that exits on its own; the revision gets a new
// one at once if it is below its minimum, else on the next request.
func (rp *revisionPool) supervise(in *instance) {
	<-in.Done()
	rp.mu.Lock()
	wasLive := !in.gone
	rp.removeLocked(in)
	if wasLive && !rp.retired && !rp.p.closed.Load() {
		rp.log.Warn("instance exited", "instance", in.ID(), "err", in.Err())
		rp.ensureMinLocked()
		rp.scaleUpLocked()
	}
	rp.mu.Unlock()
}

func (rp *revisionPool) removeLocked(in *instance) {
	in.gone = true
	for i, x := range rp.instances {
		if x == in {
			rp.instances = append(rp.instances[:i], rp.instances[i+1:]...)
			return
		}
	}
}

// ensureMinLocked starts instances up to the revision's minimum.
func (rp *revisionPool) ensureMinLocked() {
	for len(rp.instances)+rp.starting < rp.minScale {
		rp.starting++
		go rp.start()
	}
}

// reapLoop stops idle instances above each revision's minimum.
func (p *Pool) reapLoop() {
	tick := time.NewTicker(max(p.cfg.ScaleToZeroGrace/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stopReap:
			return
		case <-tick.C:
		}
		now := time.Now()
		p.revisions.Range(func(_, v any) bool {
			v.(*revisionPool).reap(now)
			return true
		})
	}
}

func (rp *revisionPool) reap(now time.Time) {
	rp.mu.Lock()
	var idle []*instance
	for _, in := range rp.instances {
		if len(rp.instances)-len(idle) <= rp.minScale {
			break
		}
		if in.inflight == 0 && now.Sub(in.lastUsed) >= rp.p.cfg.ScaleToZeroGrace {
			idle = append(idle, in)
		}
	}
	for _, in := range idle {
		rp.removeLocked(in)
	}
	rp.ensureMinLocked()
	rp.mu.Unlock()
	for _, in := range idle {
		rp.log.Info("idle instance stopped (scale down)", "instance", in.ID())
		go in.Stop(context.Background())
	}
}

// retire stops every instance, letting in-flight requests finish first
// (bounded by ctx).
func (rp *revisionPool) retire(ctx context.Context) {
	rp.mu.Lock()
	rp.retired = true
	instances := rp.instances
	rp.instances = nil
	for _, in := range instances {
		in.gone = true
	}
	rp.failWaitersLocked()
	release := rp.releaseIdentity
	rp.releaseIdentity = nil
	rp.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rp.drain(ctx, in)
			if err := in.Stop(ctx); err != nil {
				rp.log.Warn("stopping instance", "instance", in.ID(), "err", err)
			}
		}()
	}
	wg.Wait()
	if release != nil {
		release()
	}
}

// drain waits until in has no request in flight, or ctx ends.
func (rp *revisionPool) drain(ctx context.Context, in *instance) {
	for {
		rp.mu.Lock()
		n := in.inflight
		rp.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-in.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Start makes sure rev has a running instance (a deploy's readiness check),
// and starts its minimum instances.
func (p *Pool) Start(ctx context.Context, rev *apis.Revision) error {
	lease, err := p.Acquire(ctx, Key(rev), rev)
	if err != nil {
		return err
	}
	lease.Release()
	if v, ok := p.revisions.Load(Key(rev)); ok {
		rp := v.(*revisionPool)
		rp.mu.Lock()
		rp.ensureMinLocked()
		rp.mu.Unlock()
	}
	return nil
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
			v.(*revisionPool).retire(ctx)
		}()
		return true
	})
	wg.Wait()
}

// Close stops every instance (SIGTERM, then SIGKILL after the grace).
func (p *Pool) Close(ctx context.Context) {
	p.closed.Store(true)
	p.reapOnce.Do(func() { close(p.stopReap) })
	p.Retire(ctx, func(string) bool { return false })
}

// Stats is a revision's load, for tests, metrics and the console.
type Stats struct {
	Instances []InstanceStats
	Starting  int
	Queued    int
	// Billable is the revision's billable instance time so far on this
	// node: seconds its instances held at least one request.
	Billable time.Duration
}

// InstanceStats is one instance's load.
type InstanceStats struct {
	ID       string
	Addr     string
	InFlight int
}

// Stats reports the load of the revision with key.
func (p *Pool) Stats(key string) Stats {
	v, ok := p.revisions.Load(key)
	if !ok {
		return Stats{}
	}
	rp := v.(*revisionPool)
	rp.mu.Lock()
	defer rp.mu.Unlock()
	s := Stats{Starting: rp.starting, Queued: len(rp.waiters), Billable: rp.billable}
	now := time.Now()
	for _, in := range rp.instances {
		if in.inflight > 0 {
			s.Billable += now.Sub(in.busySince)
		}
		s.Instances = append(s.Instances, InstanceStats{ID: in.ID(), Addr: in.addr, InFlight: in.inflight})
	}
	return s
}

// InstanceUsage is one instance's CPU time and memory, as its runtime reads
// them from the kernel.
type InstanceUsage struct {
	ID string
	runtime.Usage
}

// Usage reads the usage of the revision's instances whose runtime reports
// it (runtime.UsageReporter); the files are read outside the revision's
// lock, which requests take.
func (p *Pool) Usage(key string) []InstanceUsage {
	v, ok := p.revisions.Load(key)
	if !ok {
		return nil
	}
	rp := v.(*revisionPool)
	rp.mu.Lock()
	live := make([]runtime.Instance, 0, len(rp.instances))
	for _, in := range rp.instances {
		live = append(live, in.Instance)
	}
	rp.mu.Unlock()
	var out []InstanceUsage
	for _, in := range live {
		if r, ok := in.(runtime.UsageReporter); ok {
			if u, err := r.Usage(); err == nil {
				out = append(out, InstanceUsage{ID: in.ID(), Usage: u})
			}
		}
	}
	return out
}

// lineLogger records an instance's output, one log record per line (the
// runtime writes whole lines), in the server log and the service's logs.
type lineLogger struct {
	log                    *slog.Logger
	book                   *logs.Book[logs.Entry]
	also                   func(serviceKey string, e logs.Entry)
	key, service, revision string
	stderr                 bool         // the lines are the instance's stderr
	instance               atomic.Value // string, once started
}

func (l *lineLogger) Write(b []byte) (int, error) {
	text := strings.TrimRight(string(b), "\r\n")
	id, _ := l.instance.Load().(string)
	if id == "" {
		id = "starting"
	}
	stream := "stdout"
	if l.stderr {
		stream = "stderr"
	}
	l.log.Info(text, "stream", stream, "instance", id)
	e := logs.Entry{Time: time.Now(), Service: l.service, Revision: l.revision, Instance: id, Text: text, Stderr: l.stderr}
	if l.book != nil {
		l.book.Add(l.key, e)
	}
	if l.also != nil {
		l.also(l.key, e)
	}
	return len(b), nil
}

// volumesOf turns a revision's mounted volumes into the runtime's, and
// says which of them (by index) hold secrets, whose files are read at each
// start. A size limit validation refused never gets here; were one to, the
// mount would not start unbounded: it gets the smallest tmpfs (1 byte:
// unusable).
func volumesOf(rev *apis.Revision) ([]runtime.Volume, map[int]*apis.SecretVolumeSource) {
	var out []runtime.Volume
	var secrets map[int]*apis.SecretVolumeSource
	for _, m := range rev.Spec.Containers[0].VolumeMounts {
		for _, v := range rev.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret != nil {
				if secrets == nil {
					secrets = map[int]*apis.SecretVolumeSource{}
				}
				secrets[len(out)] = v.Secret
				out = append(out, runtime.Volume{Path: m.MountPath, Files: []runtime.VolumeFile{}})
				continue
			}
			if v.EmptyDir == nil {
				continue
			}
			vol := runtime.Volume{Path: m.MountPath}
			if l := v.EmptyDir.SizeLimit; l != "" {
				n, err := runtime.ParseMemory(l)
				if err != nil {
					n = 1
				}
				vol.SizeBytes = n
			}
			out = append(out, vol)
		}
	}
	return out, secrets
}
