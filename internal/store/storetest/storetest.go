// Package storetest is the conformance suite every store.Store backend must
// pass. Backends call Run from their own tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/store"
)

// timeout only guards against hangs; nothing waits for it on success.
const timeout = 10 * time.Second

// Run runs the suite. open must return a fresh, empty store for each call; the
// suite closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"CreateMustNotExist", testCreate},
		{"CreateExistingConflicts", testCreateExisting},
		{"CASUpdate", testCASUpdate},
		{"CASOnMissingKeyConflicts", testCASMissing},
		{"UnconditionalPut", testUnconditionalPut},
		{"Delete", testDelete},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"List", testList},
		{"WatchFromListRevision", testWatchFromList},
		{"WatchReplaysFromPastRevision", testWatchReplay},
		{"WatchPrefix", testWatchPrefix},
		{"WatchEndsOnCancel", testWatchCancel},
		{"ConcurrentCASCounter", testConcurrentCAS},
		{"ConcurrentWatchersAgree", testConcurrentWatchers},
		{"Close", testClose},
		{"NilValueStoredAsEmpty", testNilValue},
		{"InvalidArguments", testInvalidArguments},
		{"RecreateAfterDelete", testRecreate},
		{"CloseTwiceAndWatchAfterClose", testCloseTwice},
		{"TxnAllOrNothing", testTxn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
					t.Errorf("Close() = %v, want nil", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

func mustPut(t *testing.T, s store.Store, key, value string, expected int64) int64 {
	t.Helper()
	rev, err := s.Put(t.Context(), key, []byte(value), expected)
	if err != nil {
		t.Fatalf("Put(%q, %q, %d) = %v, want nil", key, value, expected, err)
	}
	return rev
}

func mustDelete(t *testing.T, s store.Store, key string, expected int64) int64 {
	t.Helper()
	rev, err := s.Delete(t.Context(), key, expected)
	if err != nil {
		t.Fatalf("Delete(%q, %d) = %v, want nil", key, expected, err)
	}
	return rev
}

func mustList(t *testing.T, s store.Store, prefix string) ([]store.Entry, int64) {
	t.Helper()
	entries, rev, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q) = %v, want nil", prefix, err)
	}
	return entries, rev
}

// wantEntry checks that key holds value at rev.
func wantEntry(t *testing.T, s store.Store, key, value string, rev int64) {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q) = %v, want nil", key, err)
	}
	if e.Key != key || string(e.Value) != value || e.Revision != rev {
		t.Fatalf("Get(%q) = {%q %q %d}, want {%q %q %d}", key, e.Key, e.Value, e.Revision, key, value, rev)
	}
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// ev is an event in comparable form.
type ev struct {
	typ   store.EventType
	key   string
	value string
	rev   int64
}

func (e ev) String() string { return fmt.Sprintf("%v %s=%q@%d", e.typ, e.key, e.value, e.rev) }

func toEv(e store.Event) ev {
	return ev{e.Type, e.Entry.Key, string(e.Entry.Value), e.Entry.Revision}
}

// collect reads exactly n events from ch, failing on an error response, an
// early close or the hang guard.
func collect(t *testing.T, ch <-chan store.WatchResponse, n int) []ev {
	t.Helper()
	var got []ev
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d events %v, want %d", len(got), got, n)
			}
			if resp.Err != nil {
				t.Fatalf("watch error after %d events: %v, want none", len(got), resp.Err)
			}
			for _, e := range resp.Events {
				got = append(got, toEv(e))
			}
		case <-deadline:
			t.Fatalf("watch got %d events %v after %v, want %d", len(got), got, timeout, n)
		}
	}
	if len(got) > n {
		t.Fatalf("watch got %d events %v, want %d", len(got), got, n)
	}
	return got
}

// wantOnly checks that the next event on ch is want. Written after changes the
// watch must not see, it proves they were filtered out without waiting.
func wantOnly(t *testing.T, ch <-chan store.WatchResponse, want ev) {
	t.Helper()
	got := collect(t, ch, 1)
	if got[0] != want {
		t.Fatalf("next watch event = %v, want %v", got[0], want)
	}
}

func wantClosed(t *testing.T, ch <-chan store.WatchResponse) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return
			}
			if len(resp.Events) > 0 {
				t.Fatalf("watch sent %d events after it should have ended, want close", len(resp.Events))
			}
		case <-deadline:
			t.Fatalf("watch still open after %v, want closed", timeout)
		}
	}
}

func testGetMissing(t *testing.T, s store.Store) {
	_, err := s.Get(t.Context(), "nope")
	wantErr(t, `Get("nope")`, err, store.ErrNotFound)
}

func testCreate(t *testing.T, s store.Store) {
	rev := mustPut(t, s, "a", "1", store.MustNotExist)
	if rev <= 0 {
		t.Fatalf("Put revision = %d, want > 0", rev)
	}
	wantEntry(t, s, "a", "1", rev)
}

func testCreateExisting(t *testing.T, s store.Store) {
	rev := mustPut(t, s, "a", "1", store.MustNotExist)
	_, err := s.Put(t.Context(), "a", []byte("2"), store.MustNotExist)
	wantErr(t, "second create", err, store.ErrConflict)
	wantEntry(t, s, "a", "1", rev)
}

func testCASUpdate(t *testing.T, s store.Store) {
	rev1 := mustPut(t, s, "a", "1", store.MustNotExist)
	rev2 := mustPut(t, s, "a", "2", rev1)
	if rev2 <= rev1 {
		t.Fatalf("update revision = %d, want > %d", rev2, rev1)
	}
	wantEntry(t, s, "a", "2", rev2)

	for _, stale := range []int64{rev1, rev2 + 100} {
		_, err := s.Put(t.Context(), "a", []byte("3"), stale)
		wantErr(t, fmt.Sprintf("Put with revision %d (have %d)", stale, rev2), err, store.ErrConflict)
	}
	wantEntry(t, s, "a", "2", rev2)
}

func testCASMissing(t *testing.T, s store.Store) {
	rev := mustPut(t, s, "other", "x", store.MustNotExist)
	_, err := s.Put(t.Context(), "a", []byte("1"), rev)
	wantErr(t, "Put on missing key with revision", err, store.ErrConflict)
	_, err = s.Get(t.Context(), "a")
	wantErr(t, "Get after failed Put", err, store.ErrNotFound)
}

func testUnconditionalPut(t *testing.T, s store.Store) {
	rev1 := mustPut(t, s, "a", "1", store.AnyRevision)
	wantEntry(t, s, "a", "1", rev1)
	rev2 := mustPut(t, s, "a", "2", store.AnyRevision)
	if rev2 <= rev1 {
		t.Fatalf("second revision = %d, want > %d", rev2, rev1)
	}
	wantEntry(t, s, "a", "2", rev2)
}

func testDelete(t *testing.T, s store.Store) {
	tests := []struct {
		name     string
		expected func(rev int64) int64
		wantErr  error
	}{
		{"RightRevision", func(rev int64) int64 { return rev }, nil},
		{"AnyRevision", func(int64) int64 { return store.AnyRevision }, nil},
		{"WrongRevision", func(rev int64) int64 { return rev + 100 }, store.ErrConflict},
		{"MustNotExist", func(int64) int64 { return store.MustNotExist }, store.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "del/" + tt.name
			rev := mustPut(t, s, key, "v", store.MustNotExist)
			drev, err := s.Delete(t.Context(), key, tt.expected(rev))
			if tt.wantErr != nil {
				wantErr(t, "Delete", err, tt.wantErr)
				wantEntry(t, s, key, "v", rev)
				return
			}
			if err != nil {
				t.Fatalf("Delete = %v, want nil", err)
			}
			if drev <= rev {
				t.Fatalf("delete revision = %d, want > %d", drev, rev)
			}
			_, err = s.Get(t.Context(), key)
			wantErr(t, "Get after Delete", err, store.ErrNotFound)
		})
	}
	t.Run("Missing", func(t *testing.T) {
		for _, expected := range []int64{store.AnyRevision, 5} {
			_, err := s.Delete(t.Context(), "del/missing", expected)
			wantErr(t, fmt.Sprintf("Delete missing with %d", expected), err, store.ErrNotFound)
		}
	})
}

func testRevisionsIncrease(t *testing.T, s store.Store) {
	var last int64
	step := func(what string, rev int64) {
		t.Helper()
		if rev <= last {
			t.Fatalf("%s revision = %d, want > %d", what, rev, last)
		}
		last = rev
	}
	for i := range 5 {
		step("put a", mustPut(t, s, "a", strconv.Itoa(i), store.AnyRevision))
		step("put b", mustPut(t, s, "b", strconv.Itoa(i), store.AnyRevision))
	}
	step("delete a", mustDelete(t, s, "a", store.AnyRevision))
	step("put c", mustPut(t, s, "c", "x", store.MustNotExist))
	if _, rev := mustList(t, s, ""); rev != last {
		t.Fatalf("List revision = %d, want %d (last write)", rev, last)
	}
}

func testList(t *testing.T, s store.Store) {
	revs := map[string]int64{}
	// Written out of order so sorting is the store's doing.
	for _, k := range []string{"svc/b", "svc/a", "svcx", "iam/x", "svc/c/d", "sv"} {
		revs[k] = mustPut(t, s, k, "v-"+k, store.MustNotExist)
	}
	last := mustPut(t, s, "svc/a", "v2", revs["svc/a"])
	revs["svc/a"] = last

	tests := []struct {
		prefix string
		want   []string
	}{
		{"svc/", []string{"svc/a", "svc/b", "svc/c/d"}},
		{"svc", []string{"svc/a", "svc/b", "svc/c/d", "svcx"}},
		{"", []string{"iam/x", "sv", "svc/a", "svc/b", "svc/c/d", "svcx"}},
		{"none/", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("prefix=%q", tt.prefix), func(t *testing.T) {
			entries, rev := mustList(t, s, tt.prefix)
			if rev != last {
				t.Errorf("List revision = %d, want %d", rev, last)
			}
			var keys []string
			for _, e := range entries {
				keys = append(keys, e.Key)
				want := "v-" + e.Key
				if e.Key == "svc/a" {
					want = "v2"
				}
				if string(e.Value) != want || e.Revision != revs[e.Key] {
					t.Errorf("entry %q = {%q %d}, want {%q %d}", e.Key, e.Value, e.Revision, want, revs[e.Key])
				}
			}
			if !slices.Equal(keys, tt.want) {
				t.Errorf("List keys = %q, want %q", keys, tt.want)
			}
		})
	}
}

func testWatchFromList(t *testing.T, s store.Store) {
	mustPut(t, s, "w/before", "0", store.MustNotExist)
	_, rev := mustList(t, s, "w/")
	ch := s.Watch(t.Context(), "w/", rev)

	r1 := mustPut(t, s, "w/a", "1", store.MustNotExist)
	r2 := mustPut(t, s, "w/a", "2", r1)
	r3 := mustDelete(t, s, "w/before", store.AnyRevision)
	r4 := mustDelete(t, s, "w/a", r2)
	want := []ev{
		{store.EventPut, "w/a", "1", r1},
		{store.EventPut, "w/a", "2", r2},
		{store.EventDelete, "w/before", "", r3},
		{store.EventDelete, "w/a", "", r4},
	}
	if got := collect(t, ch, len(want)); !slices.Equal(got, want) {
		t.Fatalf("watch events = %v, want %v", got, want)
	}
}

func testWatchReplay(t *testing.T, s store.Store) {
	r1 := mustPut(t, s, "r/a", "1", store.MustNotExist)
	r2 := mustPut(t, s, "r/b", "2", store.MustNotExist)
	r3 := mustPut(t, s, "r/a", "3", r1)
	// Watching from r1 must replay what came after it, then go live.
	ch := s.Watch(t.Context(), "r/", r1)
	r4 := mustDelete(t, s, "r/b", r2)
	want := []ev{
		{store.EventPut, "r/b", "2", r2},
		{store.EventPut, "r/a", "3", r3},
		{store.EventDelete, "r/b", "", r4},
	}
	if got := collect(t, ch, len(want)); !slices.Equal(got, want) {
		t.Fatalf("watch events = %v, want %v", got, want)
	}
}

func testWatchPrefix(t *testing.T, s store.Store) {
	_, rev := mustList(t, s, "")
	ch := s.Watch(t.Context(), "svc/", rev)
	mustPut(t, s, "svcx", "no", store.MustNotExist)
	mustPut(t, s, "iam/a", "no", store.MustNotExist)
	r := mustPut(t, s, "svc/a", "yes", store.MustNotExist)
	// svc/a is the first event the watch may deliver.
	wantOnly(t, ch, ev{store.EventPut, "svc/a", "yes", r})
}

func testWatchCancel(t *testing.T, s store.Store) {
	_, rev := mustList(t, s, "")
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Watch(ctx, "", rev)
	r := mustPut(t, s, "a", "1", store.MustNotExist)
	wantOnly(t, ch, ev{store.EventPut, "a", "1", r})
	cancel()
	wantClosed(t, ch)
	// The store keeps working for others.
	mustPut(t, s, "a", "2", r)
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	const workers, increments = 8, 25
	ctx := t.Context()
	incr := func() error {
		for {
			var n int
			expected := store.MustNotExist
			e, err := s.Get(ctx, "counter")
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return err
			default:
				if n, err = strconv.Atoi(string(e.Value)); err != nil {
					return err
				}
				expected = e.Revision
			}
			_, err = s.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), expected)
			if !errors.Is(err, store.ErrConflict) {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				if err := incr(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment = %v, want nil", err)
	}
	e, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatalf("Get(counter) = %v, want nil", err)
	}
	if got, want := string(e.Value), strconv.Itoa(workers*increments); got != want {
		t.Fatalf("counter = %s, want %s (lost updates)", got, want)
	}
}

func testConcurrentWatchers(t *testing.T, s store.Store) {
	const watchers, writers, writes = 4, 4, 20
	_, rev := mustList(t, s, "")
	chans := make([]<-chan store.WatchResponse, watchers)
	for i := range chans {
		chans[i] = s.Watch(t.Context(), "", rev)
	}

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				key := fmt.Sprintf("k%d/%d", w, i)
				if _, err := s.Put(t.Context(), key, []byte("v"), store.MustNotExist); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Put = %v, want nil", err)
	}

	first := collect(t, chans[0], writers*writes)
	for i := 1; i < len(first); i++ {
		if first[i].rev <= first[i-1].rev {
			t.Fatalf("watch event %d = %v after %v, want increasing revisions", i, first[i], first[i-1])
		}
	}
	for i, ch := range chans[1:] {
		if got := collect(t, ch, writers*writes); !slices.Equal(got, first) {
			t.Fatalf("watcher %d saw %v, want %v (same as watcher 0)", i+1, got, first)
		}
	}
}

func testClose(t *testing.T, s store.Store) {
	_, rev := mustList(t, s, "")
	ch := s.Watch(t.Context(), "", rev)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	wantClosed(t, ch)

	ctx := t.Context()
	_, err := s.Get(ctx, "a")
	wantErr(t, "Get after Close", err, store.ErrClosed)
	_, _, err = s.List(ctx, "")
	wantErr(t, "List after Close", err, store.ErrClosed)
	_, err = s.Put(ctx, "a", []byte("1"), store.AnyRevision)
	wantErr(t, "Put after Close", err, store.ErrClosed)
	_, err = s.Delete(ctx, "a", store.AnyRevision)
	wantErr(t, "Delete after Close", err, store.ErrClosed)
	// A watch on a closed store ends at once.
	wantClosed(t, s.Watch(ctx, "", rev))
}

// testNilValue: a nil value is stored, listed and watched as an empty,
// non-nil value.
func testNilValue(t *testing.T, s store.Store) {
	_, rev := mustList(t, s, "")
	ch := s.Watch(t.Context(), "", rev)
	r := mustPut(t, s, "nil", "", store.MustNotExist)
	if _, err := s.Put(t.Context(), "nil", nil, r); err != nil {
		t.Fatalf("Put(nil value) = %v, want nil", err)
	}
	check := func(what string, v []byte) {
		t.Helper()
		if v == nil || len(v) != 0 {
			t.Fatalf("%s value = %#v, want empty and non-nil", what, v)
		}
	}
	e, err := s.Get(t.Context(), "nil")
	if err != nil {
		t.Fatalf("Get = %v, want nil", err)
	}
	check("Get", e.Value)
	entries, _ := mustList(t, s, "")
	if len(entries) != 1 {
		t.Fatalf("List = %d entries, want 1", len(entries))
	}
	check("List", entries[0].Value)
	var evs []store.Event
	deadline := time.After(timeout)
	for len(evs) < 2 {
		select {
		case resp, ok := <-ch:
			if !ok || resp.Err != nil {
				t.Fatalf("watch ended (%v) after %d events, want 2", resp.Err, len(evs))
			}
			evs = append(evs, resp.Events...)
		case <-deadline:
			t.Fatalf("watch got %d events after %v, want 2", len(evs), timeout)
		}
	}
	for _, ev := range evs {
		check("watch event", ev.Entry.Value)
	}
}

// testInvalidArguments: an empty key or an expected revision below
// AnyRevision is a plain error (none of the sentinels) and writes nothing.
func testInvalidArguments(t *testing.T, s store.Store) {
	ctx := t.Context()
	rev := mustPut(t, s, "a", "1", store.MustNotExist)
	sentinel := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s = nil, want an error", what)
		}
		for _, e := range []error{store.ErrNotFound, store.ErrConflict, store.ErrCompacted, store.ErrClosed} {
			if errors.Is(err, e) {
				t.Fatalf("%s = %v, want a plain error, not %v", what, err, e)
			}
		}
	}
	_, err := s.Put(ctx, "", []byte("x"), store.AnyRevision)
	sentinel(`Put("")`, err)
	_, err = s.Put(ctx, "a", []byte("x"), -2)
	sentinel("Put(expected -2)", err)
	_, err = s.Delete(ctx, "", store.AnyRevision)
	sentinel(`Delete("")`, err)
	_, err = s.Delete(ctx, "a", -5)
	sentinel("Delete(expected -5)", err)
	wantEntry(t, s, "a", "1", rev)
	if _, last := mustList(t, s, ""); last != rev {
		t.Fatalf("List revision = %d after invalid calls, want %d (nothing written)", last, rev)
	}
}

// testRecreate: a deleted key is absent again: MustNotExist recreates it and
// its old revision no longer matches.
func testRecreate(t *testing.T, s store.Store) {
	r1 := mustPut(t, s, "a", "1", store.MustNotExist)
	dr := mustDelete(t, s, "a", r1)
	_, err := s.Put(t.Context(), "a", []byte("2"), r1)
	wantErr(t, "Put with the deleted key's revision", err, store.ErrConflict)
	_, err = s.Delete(t.Context(), "a", r1)
	wantErr(t, "Delete with the deleted key's revision", err, store.ErrNotFound)
	r2 := mustPut(t, s, "a", "3", store.MustNotExist)
	if r2 <= dr {
		t.Fatalf("recreate revision = %d, want > %d", r2, dr)
	}
	wantEntry(t, s, "a", "3", r2)
}

// testCloseTwice: a second Close is ErrClosed, and a Watch on a closed store
// sends ErrClosed, then closes.
func testCloseTwice(t *testing.T, s store.Store) {
	_, rev := mustList(t, s, "")
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	wantErr(t, "second Close()", s.Close(), store.ErrClosed)
	ch := s.Watch(t.Context(), "", rev)
	select {
	case resp, ok := <-ch:
		if !ok || !errors.Is(resp.Err, store.ErrClosed) || len(resp.Events) != 0 {
			t.Fatalf("Watch on a closed store: first response %+v (open %v), want only ErrClosed", resp, ok)
		}
	case <-time.After(timeout):
		t.Fatalf("Watch on a closed store: nothing after %v, want ErrClosed", timeout)
	}
	wantClosed(t, ch)
}

// testTxn: a transaction's ops commit together, in order, each checked as
// Put and Delete check; one failed check writes nothing and names its op.
func testTxn(t *testing.T, s store.Store) {
	a := mustPut(t, s, "t/a", "a0", store.MustNotExist)
	del := mustPut(t, s, "t/del", "x", store.MustNotExist)
	_, rev := mustList(t, s, "t/")
	ch := s.Watch(t.Context(), "t/", rev)

	revs, err := s.Txn(t.Context(), []store.Op{
		{Key: "t/a", Value: []byte("a1"), Expected: a},
		{Key: "t/new", Value: []byte("n"), Expected: store.MustNotExist},
		{Key: "t/del", Expected: del},
		{Key: "t/absent", Expected: store.AnyRevision}, // nothing to delete: no-op
		{Key: "t/any", Value: []byte{}, Expected: store.AnyRevision},
	})
	if err != nil {
		t.Fatalf("Txn = %v, want nil", err)
	}
	if len(revs) != 5 || revs[0] <= rev || revs[1] < revs[0] || revs[2] < revs[1] || revs[3] != 0 || revs[4] < revs[2] {
		t.Fatalf("Txn revisions = %v, want non-decreasing after %d, 0 for the no-op delete", revs, rev)
	}
	wantEntry(t, s, "t/a", "a1", revs[0])
	wantEntry(t, s, "t/new", "n", revs[1])
	wantEntry(t, s, "t/any", "", revs[4])
	_, err = s.Get(t.Context(), "t/del")
	wantErr(t, "Get(t/del) after the txn", err, store.ErrNotFound)
	want := []ev{
		{store.EventPut, "t/a", "a1", revs[0]},
		{store.EventPut, "t/new", "n", revs[1]},
		{store.EventDelete, "t/del", "", revs[2]},
		{store.EventPut, "t/any", "", revs[4]},
	}
	if got := collect(t, ch, len(want)); !slices.Equal(got, want) {
		t.Fatalf("watch events = %v, want %v", got, want)
	}

	for _, tt := range []struct {
		name  string
		ops   []store.Op
		index int
		want  error
	}{
		{"stale revision", []store.Op{{Key: "t/b", Value: []byte("b"), Expected: store.MustNotExist}, {Key: "t/a", Value: []byte("a2"), Expected: a}}, 1, store.ErrConflict},
		{"exists", []store.Op{{Key: "t/new", Value: []byte("n2"), Expected: store.MustNotExist}}, 0, store.ErrConflict},
		{"absent with a revision", []store.Op{{Key: "t/b", Value: []byte("b"), Expected: store.MustNotExist}, {Key: "t/gone", Value: []byte("g"), Expected: revs[0]}}, 1, store.ErrConflict},
		{"delete absent with a revision", []store.Op{{Key: "t/del", Expected: del}}, 0, store.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Txn(t.Context(), tt.ops)
			var te *store.TxnError
			if !errors.As(err, &te) || te.Index != tt.index || !errors.Is(err, tt.want) {
				t.Fatalf("Txn = %v, want a TxnError for op %d wrapping %v", err, tt.index, tt.want)
			}
			if _, err := s.Get(t.Context(), "t/b"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("after a failed txn, Get(t/b) = %v, want ErrNotFound: nothing may be written", err)
			}
			wantEntry(t, s, "t/a", "a1", revs[0])
		})
	}
}
