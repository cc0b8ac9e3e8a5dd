// Command grpchealth is a gRPC test service for Usher's end-to-end tests: it
// serves the standard health service (grpc.health.v1) on $PORT over h2c, as
// a Cloud Run service deployed with --use-http2 does. Service "toggling"
// flips between SERVING and NOT_SERVING every 100ms, so Watch (a
// server-streaming call) has a stream of answers to send.
package main

import (
	"log"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	go func() {
		serving := true
		for range time.Tick(100 * time.Millisecond) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if serving {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("toggling", st)
			serving = !serving
		}
	}()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	log.Printf("grpchealth: listening on :%s", port)
	log.Fatal(srv.Serve(ln))
}
