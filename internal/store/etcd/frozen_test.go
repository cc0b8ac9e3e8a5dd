package etcd

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/usher-run/usher/internal/store"
)

// TestFrozenMemberUnavailable: a frozen (SIGSTOP, not dead) member costs a
// read or write at most the request timeout, and the caller gets
// store.ErrUnavailable (outcome unknown, retryable), not a hang or an opaque
// error; once the member resumes, writes succeed again.
func TestFrozenMemberUnavailable(t *testing.T) {
	c := startCluster(t, 1, nil, nil)
	s := openStore(t, Config{Endpoints: c.endpoints(), Prefix: "/frozen/"})
	m := c.members[0]
	rev := mustPut(t, s, "k", "v1", store.MustNotExist)

	m.cmd.Process.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { m.cmd.Process.Signal(syscall.SIGCONT) })
	ops := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { _, err := s.Put(t.Context(), "k", []byte("v2"), rev); return err }},
		{"Get", func() error { _, err := s.Get(t.Context(), "k"); return err }},
		{"List", func() error { _, _, err := s.List(t.Context(), ""); return err }},
		{"Delete", func() error { _, err := s.Delete(t.Context(), "k", rev); return err }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.do()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a frozen member = %v, want store.ErrUnavailable", op.name, err)
		}
		t.Logf("%s on a frozen member answered %v after %s (request timeout %s)", op.name, err, time.Since(start).Round(time.Millisecond), DefaultRequestTimeout)
	}

	m.cmd.Process.Signal(syscall.SIGCONT)
	deadline := time.Now().Add(timeout)
	for {
		e, err := s.Get(t.Context(), "k")
		if errors.Is(err, store.ErrNotFound) {
			break // the timed-out Delete landed once the member resumed: outcome unknown indeed
		}
		if err == nil {
			// The timed-out Put's outcome was unknown: either value is valid.
			if v := string(e.Value); v != "v1" && v != "v2" {
				t.Fatalf("after the freeze k = %q, want v1 or v2", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get after the member resumed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClientLogsGoToSlog: the etcd client's zap logs come out of Usher's
// slog handler, tagged component=etcd-client, debug chatter dropped.
func TestClientLogsGoToSlog(t *testing.T) {
	var buf bytes.Buffer
	log := zapToSlog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log.Debug("chatter")
	log.With(zap.String("endpoint", "127.0.0.1:2379")).Named("balancer").Warn("retrying of unary invoker failed", zap.Int("attempt", 2))
	got := buf.String()
	for _, want := range []string{"level=WARN", `msg="retrying of unary invoker failed"`, "component=etcd-client", "endpoint=127.0.0.1:2379", "attempt=2", "logger=balancer"} {
		if !strings.Contains(got, want) {
			t.Errorf("slog output %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "chatter") {
		t.Errorf("slog output %q has the client's debug line", got)
	}
}
