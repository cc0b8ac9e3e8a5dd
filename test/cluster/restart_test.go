package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRollingRestart: with load flowing through nginx, each node in turn is
// stopped (SIGTERM: it stops accepting, drains in-flight requests, stops its
// instances) and started again on the same port; no request fails.
func TestRollingRestart(t *testing.T) {
	ns, lb, _ := startCluster(t)
	a := ns[0]
	a.mustCLI(t, "run", "deploy", "hello", "--image=file://"+helloBin, "--region="+region, "--allow-unauthenticated")
	url := a.serviceURL(t, "hello")
	for _, v := range append(ns, lb) {
		expectStatus(t, v, url, 200, 20*time.Second)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := lb.get(url)
				if err == nil && code == 200 {
					served.Add(1)
					continue
				}
				failed.Add(1)
				mu.Lock()
				if len(failures) < 10 {
					failures = append(failures, fmt.Sprintf("%d %v %.80q", code, err, body))
				}
				mu.Unlock()
			}
		}()
	}
	for _, n := range ns {
		before := served.Load()
		n.stop()
		n.launch(t)
		poll(t, 30*time.Second, "node "+n.name+" ready again", func() (bool, string) {
			return n.readyz() == 200, fmt.Sprint(n.readyz())
		})
		expectStatus(t, n, url, 200, 20*time.Second)
		// Load kept flowing through the restart.
		poll(t, 10*time.Second, "requests served after restarting "+n.name, func() (bool, string) {
			return served.Load() > before+20, fmt.Sprint(served.Load() - before)
		})
		t.Logf("node %s restarted; %d requests served through nginx meanwhile", n.name, served.Load()-before)
	}
	close(stop)
	wg.Wait()
	t.Logf("rolling restart of 3 nodes under load through nginx: %d served, %d failed", served.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed during the rolling restart, want 0; first: %v", failed.Load(), failures)
	}
}
