package metadata_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	gcemd "cloud.google.com/go/compute/metadata"
	"google.golang.org/api/idtoken"
)

// helperEnv makes the test binary act as an instance (see instanceMain).
const helperEnv = "USHER_METADATA_TEST_INSTANCE"

// instanceMain is an instance as a user would write it, using Google's
// libraries unchanged. At startup, before it listens (as apps that fetch
// their identity during init do), it asks the metadata server for its
// account; then it serves on $PORT:
//
//	/startup        the account fetched at startup (502: the error)
//	/token?aud=A    idtoken.NewTokenSource(A).Token()
//	/call?url=U     GET U with idtoken.NewClient(U): "STATUS BODY"
//	/raw?path=P[&host=H]  GET $GCE_METADATA_HOST/P (or H/P) with
//	                Metadata-Flavor on a fresh connection: "STATUS BODY"
//	/join?pgid=G&path=P  runs a child of the instance (joinMain) that moves
//	                into process group G, then does what /raw does:
//	                "STATUS BODY", or the child's error
func instanceMain() {
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
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		u := r.URL.Query().Get("url")
		hc, err := idtoken.NewClient(r.Context(), u)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		res, err := hc.Get(u)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		fmt.Fprintf(w, "%d %s", res.StatusCode, b)
	})
	mux.HandleFunc("/raw", func(w http.ResponseWriter, r *http.Request) {
		host := r.URL.Query().Get("host")
		if host == "" {
			host = os.Getenv("GCE_METADATA_HOST")
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+host+r.URL.Query().Get("path"), nil)
		req.Header.Set("Metadata-Flavor", "Google")
		res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		fmt.Fprintf(w, "%d %s", res.StatusCode, b)
	})
	mux.HandleFunc("/join", func(w http.ResponseWriter, r *http.Request) {
		exe, err := os.Executable()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		cmd := exec.CommandContext(r.Context(), exe)
		cmd.Env = append(os.Environ(), helperEnv+"=join", "JOIN_PGID="+r.URL.Query().Get("pgid"), "JOIN_PATH="+r.URL.Query().Get("path"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			fmt.Fprintf(w, "child: %v: %s", err, out)
			return
		}
		w.Write(out)
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	http.Serve(l, mux)
}
