// Command containerapp is an instance for the metadata server's Docker tests
// (built into a FROM scratch image), using Google's libraries unchanged. At
// startup, before it listens, it asks the metadata server for its account;
// then it serves on $PORT:
//
//	/startup        the account fetched at startup (502: the error)
//	/token?aud=A    idtoken.NewTokenSource(A).Token()
//	/raw?path=P[&host=H][&flavor=0]  GET $GCE_METADATA_HOST/P (or H/P), with
//	                Metadata-Flavor: Google unless flavor=0, on a fresh
//	                connection: "STATUS BODY"
//	/netraw         whether the container may open raw sockets: "allowed"
//	                or the error
//
// It must never be used outside tests.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	gcemd "cloud.google.com/go/compute/metadata"
	"google.golang.org/api/idtoken"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	startup, startupErr := gcemd.NewClient(&http.Client{}).EmailWithContext(ctx, "")
	cancel()

	mux := http.NewServeMux()
	mux.HandleFunc("/startup", func(w http.ResponseWriter, r *http.Request) {
		if startupErr != nil {
			http.Error(w, startupErr.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, startup)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		ts, err := idtoken.NewTokenSource(r.Context(), r.URL.Query().Get("aud"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tok, err := ts.Token()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, tok.AccessToken)
	})
	mux.HandleFunc("/raw", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		host := q.Get("host")
		if host == "" {
			host = os.Getenv("GCE_METADATA_HOST")
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+host+q.Get("path"), nil)
		if q.Get("flavor") != "0" {
			req.Header.Set("Metadata-Flavor", "Google")
		}
		res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		fmt.Fprintf(w, "%d %s", res.StatusCode, b)
	})
	mux.HandleFunc("/netraw", func(w http.ResponseWriter, r *http.Request) {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_TCP)
		if err != nil {
			io.WriteString(w, err.Error())
			return
		}
		syscall.Close(fd)
		io.WriteString(w, "allowed")
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
