// Package controller reconciles what users asked for with what runs: for each
// service whose spec changed it creates the immutable revision, starts an
// instance to prove the revision can serve, and writes the status Cloud Run
// clients poll for (Ready, observedGeneration, latestReadyRevisionName,
// traffic, url). It retires instances of revisions no longer serving.
//
// It writes only status and revisions, always compare-and-swap, so a user's
// concurrent change is never overwritten; it never decides who may invoke.
package controller

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/pool"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Instances starts and retires revision instances.
type Instances interface {
	Start(ctx context.Context, rev *apis.Revision) error
	Retire(ctx context.Context, keep func(key string) bool)
}

// Config wires a controller.
type Config struct {
	Store      store.Store
	Instances  Instances
	ServiceURL func(project, region, name string) string
	// ReadyTimeout bounds a revision's first start.
	ReadyTimeout time.Duration
	Now          func() time.Time
	Log          *slog.Logger
}

// Controller reconciles services.
type Controller struct {
	cfg Config

	mu      sync.Mutex
	running map[string]bool // service keys being reconciled
	dirty   map[string]bool // changed again while running
	// starting holds revisions from the start of their first instance until
	// the mirror shows them serving (or abandoned), so a retire working from
	// a snapshot older than our own status write never stops them.
	starting map[string]string   // revision key → service key
	serving  map[string]int      // revision keys that should keep instances: how many services name each
	servedBy map[string][]string // service key → the revision keys it counts in serving
	ctx      context.Context
}

// New returns a controller; call Start, then feed it with Observe.
func New(cfg Config) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 90 * time.Second
	}
	return &Controller{cfg: cfg, running: map[string]bool{}, dirty: map[string]bool{}, starting: map[string]string{}, serving: map[string]int{}, servedBy: map[string][]string{}}
}

// Start sets the context reconciles run under.
func (c *Controller) Start(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
}

// Observe is called with every new state (from the mirror). It must not
// block: work is handed to goroutines.
func (c *Controller) Observe(objects map[string]mirror.Object) { c.ObserveKeys(objects, nil) }

// ObserveKeys is Observe for a state that differs from the last one only in
// keys (nil: anything may have changed). Only the services among keys are
// looked at, so a service's create or delete costs the same whatever the
// number of others.
func (c *Controller) ObserveKeys(objects map[string]mirror.Object, keys []string) {
	type seen struct {
		key  string
		revs []string // revision keys the service serves; nil: no service
		todo bool
	}
	var services []seen
	look := func(key string, obj mirror.Object, present bool) {
		s, ok := obj.Value.(*apis.Service)
		if !present || !ok || s == nil || !state.ProjectServes(objects[state.ProjectKey(s.Metadata.Namespace)].Value) {
			// Absent, or in a project being deleted: nothing of it runs.
			services = append(services, seen{key: key})
			return
		}
		services = append(services, seen{key: key, revs: servingRevisions(s), todo: s.Status.ObservedGeneration != s.Metadata.Generation})
	}
	if keys == nil {
		for key, obj := range objects {
			if _, ok := obj.Value.(*apis.Service); ok {
				look(key, obj, true)
			}
		}
	} else {
		for _, key := range keys {
			if strings.HasPrefix(key, state.ServicesPrefix) {
				obj, ok := objects[key]
				look(key, obj, ok)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		return
	}
	if keys == nil {
		c.serving, c.servedBy = map[string]int{}, map[string][]string{}
	}
	for _, sv := range services {
		for _, r := range c.servedBy[sv.key] {
			if c.serving[r]--; c.serving[r] <= 0 {
				delete(c.serving, r)
			}
		}
		if sv.revs == nil {
			delete(c.servedBy, sv.key)
		} else {
			c.servedBy[sv.key] = sv.revs
		}
		for _, r := range sv.revs {
			c.serving[r]++
		}
	}
	for revKey, svcKey := range c.starting {
		obj, ok := objects[svcKey]
		s, _ := obj.Value.(*apis.Service)
		settled := s != nil && s.Status.ObservedGeneration == s.Metadata.Generation
		if c.serving[revKey] > 0 || !ok || s == nil || settled {
			delete(c.starting, revKey)
		}
	}
	for _, sv := range services {
		if sv.todo {
			c.enqueueLocked(sv.key)
		}
	}
	go c.retire()
}

// servingRevisions are the revision keys (PROJECT/REGION/NAME) whose
// instances s needs: its latest ready revision and those its traffic names.
func servingRevisions(s *apis.Service) []string {
	prefix := s.Metadata.Namespace + "/" + s.Metadata.Labels[apis.LabelLocation] + "/"
	revs := []string{}
	if n := s.Status.LatestReadyRevisionName; n != "" {
		revs = append(revs, prefix+n)
	}
	for _, t := range s.Status.Traffic {
		if t.Percent > 0 || t.Tag != "" {
			revs = append(revs, prefix+t.RevisionName)
		}
	}
	return revs
}

func (c *Controller) enqueueLocked(key string) {
	if c.running[key] {
		c.dirty[key] = true
		return
	}
	c.running[key] = true
	go c.loop(key)
}

func (c *Controller) loop(key string) {
	for {
		c.mu.Lock()
		ctx := c.ctx
		c.mu.Unlock()
		err := c.reconcile(ctx, key)
		if err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("reconcile failed; retrying", "service", key, "err", err)
		}
		c.mu.Lock()
		again := c.dirty[key] || (err != nil && ctx.Err() == nil)
		delete(c.dirty, key)
		if !again {
			delete(c.running, key)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if err != nil {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

// retire stops instances of revisions that no longer serve and are not starting.
func (c *Controller) retire() {
	c.mu.Lock()
	ctx := c.ctx
	c.mu.Unlock()
	c.cfg.Instances.Retire(ctx, func(key string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, starting := c.starting[key]
		return c.serving[key] > 0 || starting
	})
}

// revisionName is NAME-00001-xyz: the generation, and a suffix derived from
// the service's UID so retries name the same revision.
func revisionName(s *apis.Service) string {
	if n := s.Spec.Template.Metadata.Name; n != "" {
		return n
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", s.Metadata.UID, s.Metadata.Generation)))
	const letters = "abcdefghijklmnopqrstuvwxyz"
	suffix := []byte{letters[sum[0]%26], letters[sum[1]%26], letters[sum[2]%26]}
	return fmt.Sprintf("%s-%05d-%s", s.Metadata.Name, s.Metadata.Generation, suffix)
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	var s apis.Service
	rev, err := state.Get(ctx, c.cfg.Store, key, &s)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if s.Status.ObservedGeneration == s.Metadata.Generation {
		return nil
	}
	project, region := s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation]
	now := c.cfg.Now()

	// Only a changed template makes a revision: a traffic or service-level
	// change (update-traffic, invoker check, labels) keeps the latest one.
	if latest, err := c.unchangedTemplate(ctx, &s); err != nil {
		return err
	} else if latest != nil && revisionReady(latest) {
		return c.finish(ctx, key, &s, rev, latest.Metadata.Name, nil, now)
	}

	revName := revisionName(&s)
	revKey := state.RevisionKey(project, region, revName)
	revision, err := c.ensureRevision(ctx, &s, revKey, revName)
	if err != nil {
		var conflict *revisionConflict
		if errors.As(err, &conflict) {
			c.markFailed(&s, revName, "RevisionFailed", conflict.Error(), now)
			_, err = state.Put(ctx, c.cfg.Store, key, &s, rev)
			return ignoreConflict(err)
		}
		return err
	}

	// Tell clients which revision is coming before the (slow) start.
	if s.Status.LatestCreatedRevisionName != revName {
		s.Status.LatestCreatedRevisionName = revName
		s.Status.Conditions = apis.SetCondition(s.Status.Conditions, apis.Condition{Type: apis.ConditionReady, Status: apis.StatusUnknown, Reason: "Deploying", Message: "Starting revision " + revName + "."}, now)
		rev, err = state.Put(ctx, c.cfg.Store, key, &s, rev)
		if err != nil {
			return ignoreConflict(err)
		}
	}

	c.mu.Lock()
	c.starting[pool.Key(revision)] = key
	c.mu.Unlock()
	startCtx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	startErr := c.cfg.Instances.Start(startCtx, revision)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	now = c.cfg.Now()
	if startErr != nil {
		msg := fmt.Sprintf("Revision '%s' is not ready and cannot serve traffic. The user-provided container failed to start and listen on the port defined by the PORT environment variable: %v", revName, startErr)
		revision.Status.Conditions = apis.SetCondition(revision.Status.Conditions, apis.Condition{Type: apis.ConditionReady, Status: apis.StatusFalse, Reason: "ContainerMissing", Message: msg}, now)
		if _, err := state.Put(ctx, c.cfg.Store, revKey, revision, store.AnyRevision); err != nil {
			return err
		}
		c.markFailed(&s, revName, "RevisionFailed", msg, now)
	} else {
		revision.Status.ObservedGeneration = 1
		for _, t := range []string{apis.ConditionReady, apis.ConditionContainerHealthy, apis.ConditionResourcesAvailable} {
			revision.Status.Conditions = apis.SetCondition(revision.Status.Conditions, apis.Condition{Type: t, Status: apis.StatusTrue}, now)
		}
		if _, err := state.Put(ctx, c.cfg.Store, revKey, revision, store.AnyRevision); err != nil {
			return err
		}
	}
	return c.finish(ctx, key, &s, rev, revName, startErr, now)
}

// finish writes the outcome of a reconcile: Ready with the resolved traffic
// when revName serves, or the failure (the previous revisions keep serving).
func (c *Controller) finish(ctx context.Context, key string, s *apis.Service, rev int64, revName string, startErr error, now time.Time) error {
	if startErr == nil {
		if err := c.markReady(ctx, s, revName, now); err != nil {
			c.markFailed(s, revName, "RevisionMissing", err.Error(), now)
		}
	}
	_, err := state.Put(ctx, c.cfg.Store, key, s, rev)
	if err == nil {
		c.cfg.Log.Info("service reconciled", "service", s.Metadata.Name, "project", s.Metadata.Namespace,
			"region", s.Metadata.Labels[apis.LabelLocation], "revision", revName, "ready", s.Ready())
	}
	return ignoreConflict(err)
}

// templateHash identifies a revision template, to tell a new template from a
// change elsewhere in the service.
func templateHash(s *apis.Service) string {
	b, _ := json.Marshal(s.Spec.Template)
	return fmt.Sprintf("%x", sha256.Sum256(b))[:32]
}

// unchangedTemplate returns the latest created revision when the service's
// template is the one it was made from.
func (c *Controller) unchangedTemplate(ctx context.Context, s *apis.Service) (*apis.Revision, error) {
	name := s.Status.LatestCreatedRevisionName
	if name == "" {
		return nil, nil
	}
	var r apis.Revision
	_, err := state.Get(ctx, c.cfg.Store, state.RevisionKey(s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation], name), &r)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.Metadata.Annotations[annotationTemplateHash] != templateHash(s) {
		return nil, nil
	}
	return &r, nil
}

func revisionReady(r *apis.Revision) bool {
	for _, c := range r.Status.Conditions {
		if c.Type == apis.ConditionReady {
			return c.Status == apis.StatusTrue
		}
	}
	return false
}

// annotationTemplateHash records on a revision the template it was made from.
const annotationTemplateHash = "usher.dev/template-hash"

// ignoreConflict treats a lost compare-and-swap as "someone changed the
// service meanwhile": the mirror will call us again with the new version.
func ignoreConflict(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

type revisionConflict struct{ name string }

func (e *revisionConflict) Error() string {
	return fmt.Sprintf("Revision named '%s' with different configuration already exists.", e.name)
}

// ensureRevision creates the revision for the service's generation, or returns
// the existing one if a previous attempt created it.
func (c *Controller) ensureRevision(ctx context.Context, s *apis.Service, key, name string) (*apis.Revision, error) {
	var existing apis.Revision
	_, err := state.Get(ctx, c.cfg.Store, key, &existing)
	if err == nil {
		if existing.Metadata.Labels[apis.LabelService] != s.Metadata.Name ||
			existing.Metadata.Labels[apis.LabelConfigurationGeneration] != fmt.Sprint(s.Metadata.Generation) ||
			existing.Metadata.Annotations["usher.dev/service-uid"] != s.Metadata.UID {
			return nil, &revisionConflict{name}
		}
		return &existing, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	region := s.Metadata.Labels[apis.LabelLocation]
	r := &apis.Revision{
		APIVersion: apis.ServingAPIVersion,
		Kind:       apis.KindRevision,
		Metadata: apis.ObjectMeta{
			Name:              name,
			Namespace:         s.Metadata.Namespace,
			UID:               fmt.Sprintf("%x", sha256.Sum256([]byte(s.Metadata.UID+name)))[:32],
			Generation:        1,
			CreationTimestamp: c.cfg.Now().UTC().Format(time.RFC3339),
			Labels: map[string]string{
				apis.LabelService:                 s.Metadata.Name,
				apis.LabelConfiguration:           s.Metadata.Name,
				apis.LabelConfigurationGeneration: fmt.Sprint(s.Metadata.Generation),
				apis.LabelLocation:                region,
			},
			Annotations: map[string]string{
				annotationTemplateHash:  templateHash(s),
				"usher.dev/service-uid": s.Metadata.UID,
				apis.AnnotationCreator:  s.Metadata.Annotations[apis.AnnotationLastModifier],
			},
		},
		Spec: s.Spec.Template.Spec,
	}
	for k, v := range s.Spec.Template.Metadata.Annotations {
		r.Metadata.Annotations[k] = v
	}
	for k, v := range s.Spec.Template.Metadata.Labels {
		if _, reserved := r.Metadata.Labels[k]; !reserved {
			r.Metadata.Labels[k] = v
		}
	}
	r.Status.Conditions = []apis.Condition{{Type: apis.ConditionReady, Status: apis.StatusUnknown, Reason: "Deploying", LastTransitionTime: r.Metadata.CreationTimestamp}}
	if _, err := state.Put(ctx, c.cfg.Store, key, r, store.MustNotExist); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return c.ensureRevision(ctx, s, key, name)
		}
		return nil, err
	}
	return r, nil
}

// markReady marks s Ready with revName as its latest ready revision and its
// traffic resolved from spec.traffic. It fails if a named revision is missing.
func (c *Controller) markReady(ctx context.Context, s *apis.Service, revName string, now time.Time) error {
	url := c.cfg.ServiceURL(s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation], s.Metadata.Name)
	var traffic []apis.TrafficTarget
	for _, t := range s.Spec.Traffic {
		out := apis.TrafficTarget{RevisionName: t.RevisionName, Percent: t.Percent, Tag: t.Tag, LatestRevision: t.LatestRevision}
		if t.LatestRevision != nil && *t.LatestRevision {
			out.RevisionName = revName
		} else if err := c.revisionExists(ctx, s, t.RevisionName); err != nil {
			return err
		}
		if t.Tag != "" {
			out.URL = apis.TagURL(url, t.Tag)
		}
		traffic = append(traffic, out)
	}
	st := &s.Status
	st.ObservedGeneration = s.Metadata.Generation
	st.LatestCreatedRevisionName = revName
	st.LatestReadyRevisionName = revName
	for _, t := range []string{apis.ConditionReady, apis.ConditionConfigurationsReady, apis.ConditionRoutesReady} {
		st.Conditions = apis.SetCondition(st.Conditions, apis.Condition{Type: t, Status: apis.StatusTrue}, now)
	}
	st.Traffic = traffic
	st.URL = url
	st.Address = &apis.Addressable{URL: url}
	return nil
}

func (c *Controller) revisionExists(ctx context.Context, s *apis.Service, name string) error {
	var r apis.Revision
	_, err := state.Get(ctx, c.cfg.Store, state.RevisionKey(s.Metadata.Namespace, s.Metadata.Labels[apis.LabelLocation], name), &r)
	if errors.Is(err, store.ErrNotFound) || (err == nil && r.Metadata.Labels[apis.LabelService] != s.Metadata.Name) {
		return fmt.Errorf("Revision '%s' referenced in traffic not found.", name)
	}
	return err
}

func (c *Controller) markFailed(s *apis.Service, revName, reason, msg string, now time.Time) {
	st := &s.Status
	st.ObservedGeneration = s.Metadata.Generation
	st.LatestCreatedRevisionName = revName
	st.Conditions = apis.SetCondition(st.Conditions, apis.Condition{Type: apis.ConditionReady, Status: apis.StatusFalse, Reason: reason, Message: msg}, now)
	st.Conditions = apis.SetCondition(st.Conditions, apis.Condition{Type: apis.ConditionConfigurationsReady, Status: apis.StatusFalse, Reason: reason, Message: msg}, now)
}
