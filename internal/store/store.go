// Package store defines the durable, versioned key-value store that holds all of
// Usher's state (services, revisions, IAM policies, signing keys, credentials).
//
// Every write is compare-and-swap on the key's revision and is durable before it
// returns; every change is observable through Watch, in revision order. Backends
// (bolt/, etcd/) must pass the conformance suite in storetest/. Callers never see
// a backend's own types.
package store

import (
	"context"
	"errors"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the key's revision is not the expected one (compare-and-swap lost).
	ErrConflict = errors.New("store: revision conflict")
	// ErrCompacted: a watch asked for revisions the store can no longer replay;
	// the watcher must List again and watch from the listed revision.
	ErrCompacted = errors.New("store: revision compacted")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable: the store did not answer in time (no quorum, a frozen
	// or partitioned member, a leader election). For a write, the outcome is
	// unknown: it may or may not have been committed. Callers answer 503 and
	// clients retry idempotently (a compare-and-swap on the revision they
	// read).
	ErrUnavailable = errors.New("store: unavailable")
)

// Expected revisions for Put and Delete besides a key's actual revision.
const (
	// MustNotExist makes Put create the key only if it is absent.
	MustNotExist int64 = 0
	// AnyRevision makes Put or Delete unconditional.
	AnyRevision int64 = -1
)

// Entry is a key's value as of its last modification.
type Entry struct {
	Key   string
	Value []byte
	// Revision is the store revision at which the key was last written (> 0).
	Revision int64
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return "UNKNOWN"
}

// Event is one change. For EventDelete, Entry.Value is nil and Entry.Revision is
// the revision of the deletion.
type Event struct {
	Type  EventType
	Entry Entry
}

// WatchResponse carries events in revision order, or a terminal error after
// which the channel is closed.
type WatchResponse struct {
	Events []Event
	Err    error
}

// Store is the state backend. Revisions are a single counter per store that
// increases with every write; a key's Revision is the counter value of its last
// write.
type Store interface {
	// Get returns the key's entry or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// List returns every entry whose key starts with prefix, sorted by key, and
	// the store revision the listing reflects (use it to start a Watch).
	List(ctx context.Context, prefix string) ([]Entry, int64, error)
	// Put writes value if the key's current revision equals expected
	// (MustNotExist: absent; AnyRevision: unconditional), else ErrConflict.
	// It returns the new revision once the write is durable.
	Put(ctx context.Context, key string, value []byte, expected int64) (int64, error)
	// Delete removes the key if its revision equals expected (or AnyRevision);
	// ErrNotFound if absent, ErrConflict on mismatch. Returns the deletion's revision.
	Delete(ctx context.Context, key string, expected int64) (int64, error)
	// Txn applies ops all together or not at all, in one durable commit:
	// each is checked as Put or Delete would check it (a Delete with
	// AnyRevision of an absent key does nothing), and if one check fails
	// nothing is written and the error is a *TxnError naming that op. It
	// returns each op's revision (ops may share one; a no-op delete's is 0).
	// Watchers see the ops in order.
	Txn(ctx context.Context, ops []Op) ([]int64, error)
	// Watch streams every change to keys under prefix with revision > after, in
	// order, until ctx ends (the channel is then closed). If those revisions can
	// no longer be replayed the first response carries ErrCompacted.
	Watch(ctx context.Context, prefix string, after int64) <-chan WatchResponse
	// Close releases the store; pending watches end.
	Close() error
}

// Op is one write of a Txn: a Put of Value (a nil Value deletes Key) if the
// key's revision is Expected.
type Op struct {
	Key      string
	Value    []byte // nil: delete
	Expected int64
}

// TxnError is a Txn's failed check: op Index's Err (wrapping ErrConflict or
// ErrNotFound, as Put and Delete report them).
type TxnError struct {
	Index int
	Err   error
}

func (e *TxnError) Error() string { return e.Err.Error() }
func (e *TxnError) Unwrap() error { return e.Err }
