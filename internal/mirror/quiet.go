package mirror

import "github.com/usher-run/usher/internal/store"

// Changes to keys the mirror does not keep (the audit trail's batches, say)
// still advance its revision, so WaitFor returns for them, but they rebuild
// nothing: OnChange is not called, and the objects map is not copied.

// touchesLocked reports whether any event not yet applied changes a kept
// object: a put that Decode keeps (or fails on), or any change to a kept key.
func (m *Mirror) touchesLocked(events []store.Event) bool {
	for _, ev := range events {
		if ev.Entry.Revision <= m.revision {
			continue
		}
		if _, kept := m.objects[ev.Entry.Key]; kept {
			return true
		}
		if ev.Type == store.EventPut {
			if _, ok, err := m.cfg.Decode(ev.Entry.Key, ev.Entry.Value); ok || err != nil {
				return true
			}
		}
	}
	return false
}

// advanceQuietlyLocked moves the applied revision to the newest event's
// without calling OnChange: nothing it was given has changed.
func (m *Mirror) advanceQuietlyLocked(events []store.Event) {
	rev := m.revision
	for _, ev := range events {
		rev = max(rev, ev.Entry.Revision)
	}
	if rev <= m.revision {
		return
	}
	m.revision = rev
	close(m.advanced)
	m.advanced = make(chan struct{})
}
