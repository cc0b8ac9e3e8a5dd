// Command frontend is a test service that calls another service the way a
// Cloud Run service does: with an identity token for the backend's URL from
// the metadata server (google.golang.org/api/idtoken, unchanged). GET /call
// answers "STATUS BODY" of the backend's answer.
//
// Service hosts (*.run.localhost) do not resolve inside a Go program, so
// connections go to $USHER_ADDR with the backend's URL as the Host.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"google.golang.org/api/idtoken"
)

func main() {
	backend := os.Getenv("BACKEND_URL")
	dial := os.Getenv("USHER_ADDR")
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dial)
		},
	}}
	http.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		ts, err := idtoken.NewTokenSource(r.Context(), backend)
		if err != nil {
			http.Error(w, "token source: "+err.Error(), 500)
			return
		}
		tok, err := ts.Token()
		if err != nil {
			http.Error(w, "token: "+err.Error(), 500)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "GET", backend, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "calling backend: "+err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	})
	// /metadata-without-flavor asks the metadata server without the
	// Metadata-Flavor header and answers its status code.
	http.HandleFunc("/metadata-without-flavor", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get("http://" + os.Getenv("GCE_METADATA_HOST") + "/computeMetadata/v1/instance/service-accounts/default/email")
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		resp.Body.Close()
		fmt.Fprint(w, resp.StatusCode)
	})
	http.HandleFunc("/metadata-host", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv("GCE_METADATA_HOST"))
	})
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
