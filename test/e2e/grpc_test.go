package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A gRPC service deployed with --use-http2 is callable with a gRPC client
// through the gateway (h2c on both sides), a unary call and a
// server-streaming one, and it is private by default like everything else.
func TestGRPCThroughTheGateway(t *testing.T) {
	s := startServer(t)
	u := s.deploy(t, "grpc-health", grpcBin, "--use-http2")
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+s.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(pu.Host))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	tok := s.idToken(t, s.createSA(t, "grpc-caller"), u)

	ctx := func(t *testing.T, token string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		t.Cleanup(cancel)
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		return ctx
	}

	t.Run("no token: Unauthenticated", func(t *testing.T) {
		_, err := client.Check(ctx(t, ""), &healthpb.HealthCheckRequest{})
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Errorf("Check without a token: got %v (%v), want Unauthenticated", got, err)
		}
	})
	t.Run("token without invoker: PermissionDenied", func(t *testing.T) {
		_, err := client.Check(ctx(t, tok), &healthpb.HealthCheckRequest{})
		if got := status.Code(err); got != codes.PermissionDenied {
			t.Errorf("Check before the grant: got %v (%v), want PermissionDenied", got, err)
		}
	})
	s.grant(t, "grpc-health", "serviceAccount:"+saEmail("grpc-caller"), "roles/run.invoker")
	t.Run("unary with a token", func(t *testing.T) {
		resp, err := client.Check(ctx(t, tok), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check: got %v, %v; want SERVING", resp, err)
		}
	})
	t.Run("server streaming with a token", func(t *testing.T) {
		stream, err := client.Watch(ctx(t, tok), &healthpb.HealthCheckRequest{Service: "toggling"})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[healthpb.HealthCheckResponse_ServingStatus]bool{}
		for i := 0; i < 4; i++ {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("Watch message %d: %v", i, err)
			}
			seen[resp.GetStatus()] = true
		}
		if !seen[healthpb.HealthCheckResponse_SERVING] || !seen[healthpb.HealthCheckResponse_NOT_SERVING] {
			t.Errorf("Watch: got statuses %v, want both SERVING and NOT_SERVING streamed", seen)
		}
	})
}
