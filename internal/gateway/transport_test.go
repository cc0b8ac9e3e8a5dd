package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a real HTTP server that counts the connections it accepted.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func do(t *testing.T, tr http.RoundTripper, req *http.Request) (int, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip %s %s: %v", req.Method, req.URL, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func TestTransportReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/chunked":
			w.Write([]byte("part1 "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		default:
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
		}
	}))
	tr := newInstanceTransport()
	for i := range 20 {
		var req *http.Request
		switch i % 4 {
		case 0:
			req = httptest.NewRequest("GET", srv.URL+"/a", nil)
		case 1:
			req = httptest.NewRequest("POST", srv.URL+"/b", strings.NewReader("body"))
		case 2:
			req = httptest.NewRequest("HEAD", srv.URL+"/c", nil)
		case 3:
			req = httptest.NewRequest("GET", srv.URL+"/empty", nil)
		}
		req.RequestURI = ""
		if req.Method == "GET" && i%4 == 0 {
			req.Body = nil
		}
		code, body := do(t, tr, req)
		want := map[int]string{0: "GET /a ", 1: "POST /b body", 2: "", 3: ""}[i%4]
		if body != want || (code != 200 && code != 204) {
			t.Fatalf("request %d: got %d %q, want %q", i, code, body, want)
		}
	}
	req := httptest.NewRequest("GET", srv.URL+"/chunked", nil)
	req.RequestURI, req.Body = "", nil
	if _, body := do(t, tr, req); body != "part1 part2" {
		t.Errorf("chunked body = %q", body)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections for sequential requests, want 1 (keep-alive)", got)
	}
}

// TestTransportRetriesClosedIdleConnection: an instance that closed an idle
// connection costs the next request nothing.
func TestTransportRetriesClosedIdleConnection(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	tr := newInstanceTransport()
	get := func() (int, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		return do(t, tr, req)
	}
	get()
	srv.CloseClientConnections() // the instance drops the idle connection
	// The first attempt may or may not notice before writing; either way the
	// request must succeed.
	if code, body := get(); code != 200 || body != "ok" {
		t.Fatalf("after idle close: %d %q", code, body)
	}
	if conns.Load() != 2 {
		t.Errorf("connections = %d, want 2", conns.Load())
	}
}

func TestTransportAbandonedBodyClosesConnection(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 100_000)))
	}))
	tr := newInstanceTransport()
	for range 2 {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Read(make([]byte, 10))
		resp.Body.Close() // must not block draining, must not pool the connection
	}
	if conns.Load() != 2 {
		t.Errorf("connections = %d, want 2 (a half-read connection is never reused)", conns.Load())
	}
}

func TestTransportCancellation(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	}))
	defer close(release)
	tr := newInstanceTransport()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	<-started // the instance is working on it; the client gives up
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("RoundTrip after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip did not return after its context was cancelled")
	}
}

// TestTransportUpgrade: 101 Switching Protocols hands over the raw
// connection, including bytes the instance sent right after the response.
func TestTransportUpgrade(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello ")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	}))
	tr := newInstanceTransport()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("upgraded body %T is not an io.ReadWriteCloser (ReverseProxy needs one)", resp.Body)
	}
	defer rwc.Close()
	io.WriteString(rwc, "ping\n")
	got, _ := bufio.NewReader(rwc).ReadString('\n')
	if got != "hello echo:ping\n" {
		t.Errorf("upgraded stream = %q, want %q", got, "hello echo:ping\n")
	}
}
