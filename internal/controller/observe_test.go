package controller

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/state"
)

// noInstances retires nothing and starts nothing: the test looks only at
// which revisions the controller says must keep instances.
type noInstances struct{}

func (noInstances) Start(context.Context, *apis.Revision) error   { return nil }
func (noInstances) Retire(context.Context, func(key string) bool) {}

// After any sequence of service writes and deletes, what ObserveKeys keeps
// as serving (told only the changed keys) equals what a full Observe of
// the same state computes.
func TestObserveKeysEqualsFullObserve(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := t.Context()
	incremental := New(Config{Instances: noInstances{}})
	incremental.Start(ctx)
	objects := map[string]mirror.Object{}
	// Other kinds of objects are ignored by both.
	objects["policies/p/us-central1/x"] = mirror.Object{Value: "not a service"}
	for step := range 500 {
		name := fmt.Sprintf("s%d", rng.IntN(20))
		key := state.ServiceKey("p", "us-central1", name)
		if rng.IntN(4) == 0 {
			delete(objects, key)
		} else {
			s := &apis.Service{}
			s.Metadata.Name, s.Metadata.Namespace = name, "p"
			s.Metadata.Labels = map[string]string{apis.LabelLocation: "us-central1"}
			// Settled services only: nothing is reconciled.
			s.Metadata.Generation, s.Status.ObservedGeneration = 1, 1
			if rng.IntN(3) > 0 {
				s.Status.LatestReadyRevisionName = fmt.Sprintf("%s-%05d", name, rng.IntN(3))
			}
			for range rng.IntN(3) {
				s.Status.Traffic = append(s.Status.Traffic, apis.TrafficTarget{
					RevisionName: fmt.Sprintf("s%d-%05d", rng.IntN(20), rng.IntN(3)), // may name another's
					Percent:      int64(rng.IntN(2) * 50),
					Tag:          []string{"", "blue"}[rng.IntN(2)],
				})
			}
			objects[key] = mirror.Object{Key: key, Value: s}
		}
		incremental.ObserveKeys(objects, []string{key, "policies/p/us-central1/x"})

		full := New(Config{Instances: noInstances{}})
		full.Start(ctx)
		full.Observe(maps.Clone(objects))
		incremental.mu.Lock()
		got := maps.Clone(incremental.serving)
		incremental.mu.Unlock()
		full.mu.Lock()
		want := full.serving
		full.mu.Unlock()
		if !maps.Equal(got, want) {
			t.Fatalf("step %d: incremental serving %v, full %v", step, got, want)
		}
	}
}
