package mirror

import (
	"slices"
	"testing"

	"github.com/usher-run/usher/internal/store"
)

// TestAppliesEventsSharingARevision: an etcd transaction's writes share one
// revision and arrive in one batch; every one of them is applied, not only
// the first.
func TestAppliesEventsSharingARevision(t *testing.T) {
	var keys []string
	m := New(nil, Config{
		Decode:  func(_ string, v []byte) (any, bool, error) { return string(v), true, nil },
		Changed: func(_ map[string]Object, k []string, _ int64) { keys = slices.Clone(k) },
	})
	m.apply([]store.Event{
		{Type: store.EventPut, Entry: store.Entry{Key: "services/a", Value: []byte("a"), Revision: 7}},
		{Type: store.EventPut, Entry: store.Entry{Key: "policies/a", Value: []byte("p"), Revision: 7}},
		{Type: store.EventPut, Entry: store.Entry{Key: "audit/x", Value: []byte("r"), Revision: 7}},
	})
	for _, k := range []string{"services/a", "policies/a", "audit/x"} {
		if _, ok := m.objects[k]; !ok {
			t.Errorf("%s not applied; objects %v", k, m.objects)
		}
	}
	if want := []string{"services/a", "policies/a", "audit/x"}; !slices.Equal(keys, want) {
		t.Errorf("Changed keys %v, want %v", keys, want)
	}
	if m.Revision() != 7 {
		t.Errorf("revision %d, want 7", m.Revision())
	}
	// A redelivered batch changes nothing.
	keys = nil
	m.apply([]store.Event{{Type: store.EventDelete, Entry: store.Entry{Key: "services/a", Revision: 7}}})
	if _, ok := m.objects["services/a"]; !ok || keys != nil {
		t.Errorf("a redelivered event was applied again (keys %v)", keys)
	}
}
