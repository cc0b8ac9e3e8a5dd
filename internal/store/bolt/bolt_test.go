package bolt

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/storetest"
)

// timeout only guards against hangs.
const timeout = 10 * time.Second

func openTest(t *testing.T, path string, opts options) *Store {
	t.Helper()
	s, err := open(path, opts)
	if err != nil {
		t.Fatalf("open(%s) = %v, want nil", path, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "usher.db"), defaultOptions())
	})
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usher.db")
	ctx := t.Context()
	s := openTest(t, path, defaultOptions())
	ra, _ := s.Put(ctx, "a", []byte("1"), store.MustNotExist)
	rb, _ := s.Put(ctx, "b", []byte("2"), store.MustNotExist)
	last, err := s.Delete(ctx, "b", rb)
	if err != nil {
		t.Fatalf("Delete = %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}

	s = openTest(t, path, defaultOptions())
	defer s.Close()
	e, err := s.Get(ctx, "a")
	if err != nil || string(e.Value) != "1" || e.Revision != ra {
		t.Fatalf("Get(a) after reopen = {%q %d} %v, want {%q %d} nil", e.Value, e.Revision, err, "1", ra)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(b) after reopen = %v, want ErrNotFound", err)
	}
	_, rev, err := s.List(ctx, "")
	if err != nil || rev != last {
		t.Fatalf("List revision after reopen = %d %v, want %d nil", rev, err, last)
	}

	// Nothing before Open is replayable, but watching from the listed
	// revision works with an empty ring.
	resp := <-s.Watch(ctx, "", rev-1)
	if !errors.Is(resp.Err, store.ErrCompacted) {
		t.Fatalf("Watch(after=%d) first response = %+v, want ErrCompacted", rev-1, resp)
	}
	ch := s.Watch(ctx, "", rev)
	next, err := s.Put(ctx, "c", []byte("3"), store.MustNotExist)
	if err != nil || next != last+1 {
		t.Fatalf("Put after reopen = %d %v, want %d nil", next, err, last+1)
	}
	select {
	case resp := <-ch:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].Entry.Revision != next {
			t.Fatalf("watch after reopen = %+v, want one event at %d", resp, next)
		}
	case <-time.After(timeout):
		t.Fatalf("no watch event after %v", timeout)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usher.db")
	s := openTest(t, path, defaultOptions())
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("file mode = %v, want no group/other access (0600)", perm)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usher.db")
	opts := defaultOptions()
	opts.lockTimeout = 50 * time.Millisecond
	s := openTest(t, path, opts)
	defer s.Close()

	// flock locks are per open file, so a second open in this process
	// contends exactly like another process would.
	s2, err := open(path, opts)
	if err == nil {
		s2.Close()
		t.Fatal("second open = nil error, want in-use error")
	}
	if !strings.Contains(err.Error(), "in use by another usher process") {
		t.Fatalf("second open = %v, want an in-use error", err)
	}
}

func TestWatchBeforeRingIsCompacted(t *testing.T) {
	opts := defaultOptions()
	opts.ringSize = 8
	s := openTest(t, filepath.Join(t.TempDir(), "usher.db"), opts)
	defer s.Close()
	ctx := t.Context()
	var last int64
	for i := range 20 {
		var err error
		if last, err = s.Put(ctx, fmt.Sprintf("k%02d", i), []byte("v"), store.MustNotExist); err != nil {
			t.Fatal(err)
		}
	}
	oldest := last - int64(opts.ringSize) // events after this are in the ring

	ch := s.Watch(ctx, "", oldest-1)
	if resp := <-ch; !errors.Is(resp.Err, store.ErrCompacted) || len(resp.Events) != 0 {
		t.Fatalf("Watch(after=%d) = %+v, want only ErrCompacted", oldest-1, resp)
	}
	if _, ok := <-ch; ok {
		t.Fatal("compacted watch still open, want closed")
	}

	select {
	case resp := <-s.Watch(ctx, "", oldest):
		if resp.Err != nil || len(resp.Events) != opts.ringSize {
			t.Fatalf("Watch(after=%d) = %d events, err %v, want %d events", oldest, len(resp.Events), resp.Err, opts.ringSize)
		}
		for i, ev := range resp.Events {
			if want := oldest + 1 + int64(i); ev.Entry.Revision != want {
				t.Fatalf("replayed event %d revision = %d, want %d", i, ev.Entry.Revision, want)
			}
		}
	case <-time.After(timeout):
		t.Fatalf("no replay after %v", timeout)
	}
}

func TestSlowWatcherDoesNotBlockWriters(t *testing.T) {
	opts := defaultOptions()
	opts.queueSize = 4
	s := openTest(t, filepath.Join(t.TempDir(), "usher.db"), opts)
	defer s.Close()
	ctx := t.Context()
	ch := s.Watch(ctx, "", 0) // never read until the writes are done

	const writes = 100
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			if _, err := s.Put(ctx, fmt.Sprintf("k%03d", i), []byte("v"), store.MustNotExist); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put = %v, want nil", err)
		}
	case <-time.After(timeout):
		t.Fatalf("writers blocked by a slow watcher for %v", timeout)
	}

	// The watcher may get a prefix of the events, in order, then must end
	// with ErrCompacted.
	var next int64 = 1
	deadline := time.After(timeout)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatal("watch closed without ErrCompacted")
			}
			for _, ev := range resp.Events {
				if ev.Entry.Revision != next {
					t.Fatalf("event revision = %d, want %d", ev.Entry.Revision, next)
				}
				next++
			}
			if resp.Err == nil {
				continue
			}
			if !errors.Is(resp.Err, store.ErrCompacted) {
				t.Fatalf("watch error = %v, want ErrCompacted", resp.Err)
			}
			if _, ok := <-ch; ok {
				t.Fatal("watch open after ErrCompacted, want closed")
			}
			if next > writes {
				t.Fatalf("watcher got all %d events, want it to overflow", writes)
			}
			s.mu.Lock()
			n := len(s.watchers)
			s.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d watchers registered after overflow, want 0", n)
			}
			return
		case <-deadline:
			t.Fatalf("no ErrCompacted after %v", timeout)
		}
	}
}

const crashEnv = "USHER_STORE_CRASH_CHILD"

func crashValue(key string) string { return "value-of-" + key }

// TestCrashChild is the child half of TestCrash: it writes until killed,
// printing an ACK line after each Put returns.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only runs as TestCrash's child")
	}
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; i < 1_000_000; i++ { // bounded in case the parent dies
		key := fmt.Sprintf("crash/%07d", i)
		if _, err := s.Put(t.Context(), key, []byte(crashValue(key)), store.MustNotExist); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the ACK leaves the process only after Put.
		fmt.Fprintf(os.Stdout, "ACK %s\n", key)
	}
	os.Exit(3)
}

// TestCrash SIGKILLs a writing child and checks every acknowledged write
// survived and the file is consistent.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "usher.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	const minAcks = 200
	var acked []string
	killed := false
	deadline := time.After(60 * time.Second)
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil // child is gone and every ACK it wrote is read
				continue
			}
			if key, ok := strings.CutPrefix(line, "ACK "); ok {
				acked = append(acked, key)
			}
			if len(acked) >= minAcks && !killed {
				// SIGKILL mid-write; ACKs already in the pipe still count.
				if err := cmd.Process.Kill(); err != nil {
					t.Fatalf("kill child: %v", err)
				}
				killed = true
			}
		case <-deadline:
			deadline = nil
			if !killed {
				cmd.Process.Kill()
				killed = true
				t.Errorf("child acked %d writes in 60s, want %d", len(acked), minAcks)
			}
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited on its own (%v) after %d acks; stderr:\n%s", err, len(acked), stderr.String())
	}
	if t.Failed() {
		t.Fatalf("child stderr:\n%s", stderr.String())
	}

	s, err := Open(path)
	if err != nil {
		t.Fatalf("reopen after crash = %v, want nil", err)
	}
	defer s.Close()
	err = s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt consistency check after crash = %v, want nil", err)
	}
	for _, key := range acked {
		e, err := s.Get(t.Context(), key)
		if err != nil {
			t.Fatalf("acked key %s after crash: %v, want present", key, err)
		}
		if got, want := string(e.Value), crashValue(key); got != want {
			t.Fatalf("acked key %s = %q, want %q", key, got, want)
		}
	}
	_, rev, err := s.List(t.Context(), "")
	if err != nil || rev < int64(len(acked)) {
		t.Fatalf("revision after crash = %d %v, want >= %d", rev, err, len(acked))
	}
	t.Logf("%d acked writes survived SIGKILL (revision %d)", len(acked), rev)
}
