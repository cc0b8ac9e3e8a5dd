package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/usher-run/usher/internal/connlimit"
)

// Limits that keep a hostile client from holding a node's connections,
// goroutines and file descriptors (README: "Limits").
const (
	// readHeaderTimeout bounds the wait for a request's headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a keep-alive connection with no request.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes caps a request's header block (request line included).
	// Identity tokens are a few KiB; Cloud Run's own limit is 64 KiB too.
	maxHeaderBytes = 64 << 10
	// defaultBodyIdleTimeout ends a request whose body stalls this long
	// between two reads; a slow but moving upload is never cut.
	defaultBodyIdleTimeout = 30 * time.Second
	// defaultMaxConnsPerClient caps connections from one address (or IPv6
	// /64): enough for an office behind one NAT, far below what the node has.
	defaultMaxConnsPerClient = 1000
	// fdReserve is what the total connection cap leaves of the file
	// descriptor limit for the store, instances, their sockets and logs.
	fdReserve = 1024
)

// limitListener applies --max-conns and --max-conns-per-client. The total
// defaults to what the descriptor limit leaves after fdReserve (Go raises the
// soft limit to the hard one at start).
func limitListener(ln net.Listener, cfg Config, plainHTTP bool, log *slog.Logger) *connlimit.Listener {
	total := cfg.MaxConns
	if total == 0 {
		total = defaultMaxConns()
	}
	perClient := cfg.MaxConnsPerClient
	if perClient == 0 {
		perClient = defaultMaxConnsPerClient
	}
	if total < 0 {
		total = 0 // no cap
	}
	if perClient < 0 {
		perClient = 0
	}
	return connlimit.New(ln, connlimit.Config{Total: total, PerClient: perClient, PlainHTTP: plainHTTP, Log: log})
}

func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 100000
	}
	if n := int(lim.Cur) - fdReserve; n > 64 {
		return n
	}
	return 64
}

// bodyIdle ends the read of an HTTP/1 request body that stalls for longer
// than d between two reads: each read gets a fresh deadline. Requests without
// a body pay nothing. HTTP/2 is left alone: a stalled stream holds no
// connection (the HTTP/2 server bounds streams per connection), and gRPC
// streams may rightly be quiet for long; timeoutSeconds bounds them.
func bodyIdle(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody {
			r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: d}
		}
		h.ServeHTTP(w, r)
	})
}

type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.d))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The body is done. The server now reads in the background to
		// notice a client leaving, and a timeout there would cancel the
		// request: the rest of it is bounded by timeoutSeconds instead.
		// (Any other error leaves the deadline passed, so that the server
		// does not wait on this client to drain the rest either.)
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
