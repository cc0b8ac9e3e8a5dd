package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/runtime"
)

// Probe defaults, Kubernetes' (and Cloud Run's) where the probe sets none.
const (
	defaultProbeTimeout   = time.Second
	defaultProbePeriod    = 10 * time.Second
	defaultProbeFailures  = 3
	probeBodyLimit        = 64 << 10 // read and dropped, so the connection is reused
	probeUserAgent        = "Usher-Probe/1"
	probeSuccessFloor     = 200
	probeSuccessCeilingEx = 400
)

// probe is a revision's startup or liveness check of one instance: a TCP
// connection to its address, a GET of path there that must answer 2xx or
// 3xx, or a gRPC health check (over h2c) that must answer SERVING, each
// within timeout.
type probe struct {
	path         string // "" for TCP
	grpc         bool   // a gRPC health check of grpcService
	grpcService  string
	initialDelay time.Duration
	timeout      time.Duration
	period       time.Duration
	failures     int
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	client       *http.Client
}

func newProbe(p *apis.Probe, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *probe {
	pr := &probe{
		initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		timeout:      defaultProbeTimeout,
		period:       defaultProbePeriod,
		failures:     defaultProbeFailures,
		dial:         dial,
	}
	if p.TimeoutSeconds > 0 {
		pr.timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.PeriodSeconds > 0 {
		pr.period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if p.FailureThreshold > 0 {
		pr.failures = int(p.FailureThreshold)
	}
	if p.GRPC != nil {
		pr.grpc, pr.grpcService = true, p.GRPC.Service
	}
	if p.HTTPGet != nil {
		pr.path = p.HTTPGet.Path
		if pr.path == "" {
			pr.path = "/"
		}
		pr.client = &http.Client{
			Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 1, DisableCompression: true},
			// A redirect is success (3xx): never followed elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return pr
}

// once checks in once.
func (p *probe) once(in runtime.Instance) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if p.grpc {
		return p.checkGRPC(ctx, in)
	}
	if p.path == "" {
		c, err := p.dial(ctx, "tcp", in.Addr())
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Addr()+p.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", probeUserAgent)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, probeBodyLimit))
	resp.Body.Close()
	if resp.StatusCode < probeSuccessFloor || resp.StatusCode >= probeSuccessCeilingEx {
		return fmt.Errorf("GET %s: %s", p.path, resp.Status)
	}
	return nil
}

// errGone: the instance exited while being probed.
var errGone = errors.New("the instance exited")

// wait sleeps d, or returns errGone when in exits first.
func wait(in runtime.Instance, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-in.Done():
		return errGone
	}
}

// untilReady runs a startup probe: after the initial delay, up to failures
// attempts, period apart; nil on the first success.
func (p *probe) untilReady(in runtime.Instance) error {
	if err := wait(in, p.initialDelay); err != nil {
		return err
	}
	var last error
	for i := 0; i < p.failures; i++ {
		if i > 0 {
			if err := wait(in, p.period); err != nil {
				return err
			}
		}
		if last = p.once(in); last == nil {
			return nil
		}
	}
	return fmt.Errorf("failed %d times, last: %w", p.failures, last)
}

// untilDead runs a liveness probe for in's life: nil when in exits, the
// last error after failures failed checks in a row.
func (p *probe) untilDead(in runtime.Instance) error {
	if err := wait(in, p.initialDelay); err != nil {
		return nil
	}
	failed := 0
	for {
		if err := wait(in, p.period); err != nil {
			return nil
		}
		err := p.once(in)
		if err == nil {
			failed = 0
			continue
		}
		if failed++; failed >= p.failures {
			return fmt.Errorf("failed %d times in a row, last: %w", failed, err)
		}
	}
}

// checkGRPC asks the instance's grpc.health.v1.Health service about
// grpcService, over h2c through the pool's dialer, on a connection of its
// own (closed after).
func (p *probe) checkGRPC(ctx context.Context, in runtime.Instance) error {
	conn, err := grpc.NewClient("passthrough:///"+in.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return p.dial(ctx, "tcp", addr) }),
		grpc.WithUserAgent(probeUserAgent))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: p.grpcService})
	if err != nil {
		return fmt.Errorf("gRPC health check: %w", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("gRPC health check of %q: %s", p.grpcService, resp.GetStatus())
	}
	return nil
}
