package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// instanceTransport is the RoundTripper from the gateway to instances on this
// machine: HTTP/1.1 over pooled keep-alive connections, with the request
// written and the response read on the calling goroutine.
//
// Why not http.Transport: it hands every request to two goroutines per
// connection (writeLoop, readLoop) and back over channels; on loopback those
// wake-ups cost more than the proxying itself (measured in bench/README.md).
// This transport does only what an instance needs: plain HTTP/1.1 to a known
// address, keep-alive, protocol upgrades (WebSocket), and cancellation.
//
// A pooled connection may have been closed by the instance while idle; that
// shows as an error before any response byte arrives, and such a request is
// retried once on a fresh connection when it carries no body (it cannot have
// been processed).
type instanceTransport struct {
	dialer      net.Dialer
	dial        func(ctx context.Context, network, addr string) (net.Conn, error) // if set, instead of dialer
	maxIdle     int                                                               // per address
	idleTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*instanceConn
}

type instanceConn struct {
	net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	idleFrom time.Time
}

func newInstanceTransport() *instanceTransport {
	return &instanceTransport{
		dialer:      net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle:     256,
		idleTimeout: 90 * time.Second,
		idle:        map[string][]*instanceConn{},
	}
}

var errRetryable = errors.New("gateway: idle connection closed by the instance")

// RoundTrip implements http.RoundTripper.
func (t *instanceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, errors.New("gateway: instances speak plain http")
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := t.roundTrip(c, req)
		if err == nil {
			return resp, nil
		}
		c.Close()
		if reused && attempt == 0 && errors.Is(err, errRetryable) && req.Body == nil && req.Context().Err() == nil {
			continue
		}
		return nil, err
	}
}

func (t *instanceTransport) roundTrip(c *instanceConn, req *http.Request) (*http.Response, error) {
	// Cancellation: a request whose client went away unblocks our read or
	// write by expiring the connection's deadline.
	stop := context.AfterFunc(req.Context(), func() { c.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(c.bw); err != nil {
		stop()
		return nil, t.classify(req, err, false)
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, t.classify(req, err, false)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		stop()
		return nil, t.classify(req, err, c.br.Buffered() == 0)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection now belongs to the upgraded protocol; ReverseProxy
		// copies both ways through this body.
		stop()
		resp.Body = &upgradedConn{instanceConn: c}
		return resp, nil
	}
	resp.Body = &pooledBody{ReadCloser: resp.Body, t: t, c: c, stop: stop,
		reusable: !resp.Close && !req.Close, addr: req.URL.Host,
		eof: resp.Body == http.NoBody} // nothing to read: ReverseProxy may never call Read
	return resp, nil
}

// classify marks errors on a reused connection before any response arrived
// as retryable; the request's own context error wins.
func (t *instanceTransport) classify(req *http.Request, err error, nothingRead bool) error {
	if ctxErr := req.Context().Err(); ctxErr != nil {
		return ctxErr
	}
	if nothingRead && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)) {
		return errors.Join(errRetryable, err)
	}
	return err
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// conn returns an idle connection to addr or dials one.
func (t *instanceTransport) conn(ctx context.Context, addr string) (*instanceConn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for list := t.idle[addr]; len(list) > 0; list = t.idle[addr] {
		c := list[len(list)-1]
		t.idle[addr] = list[:len(list)-1]
		if now.Sub(c.idleFrom) < t.idleTimeout {
			t.mu.Unlock()
			return c, true, nil
		}
		c.Close()
	}
	t.mu.Unlock()
	var nc net.Conn
	var err error
	if t.dial != nil {
		dctx, cancel := context.WithTimeout(ctx, t.dialer.Timeout)
		nc, err = t.dial(dctx, "tcp", addr)
		cancel()
	} else {
		nc, err = t.dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, false, err
	}
	return &instanceConn{Conn: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}, false, nil
}

func (t *instanceTransport) put(addr string, c *instanceConn) {
	c.SetDeadline(time.Time{})
	c.idleFrom = time.Now()
	t.mu.Lock()
	if len(t.idle[addr]) < t.maxIdle {
		t.idle[addr] = append(t.idle[addr], c)
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// CloseIdleConnections closes pooled connections (instances going away).
func (t *instanceTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*instanceConn{}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.Close()
		}
	}
}

// pooledBody returns the connection to the pool once the body has been read
// to the end and closed; a body abandoned early closes the connection.
type pooledBody struct {
	io.ReadCloser
	t        *instanceTransport
	c        *instanceConn
	stop     func() bool
	addr     string
	reusable bool
	eof      bool
	closed   bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	cancelled := !b.stop() // the AfterFunc already ran: the deadline is spent
	if !b.eof {
		// Abandoned mid-body (the client left, or a stream): close the
		// connection first so closing the body does not drain the rest.
		b.c.Close()
		b.ReadCloser.Close()
		return nil
	}
	err := b.ReadCloser.Close()
	if b.reusable && !cancelled && err == nil && b.c.br.Buffered() == 0 {
		b.t.put(b.addr, b.c)
		return nil
	}
	b.c.Close()
	return err
}

// upgradedConn is the connection after 101 Switching Protocols: reads drain
// what the response reader had buffered first.
type upgradedConn struct {
	*instanceConn
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.br.Read(p) }
func (u *upgradedConn) Write(p []byte) (int, error) {
	return u.Conn.Write(p)
}
func (u *upgradedConn) Close() error { return u.Conn.Close() }

// byProtocol sends a request to its instance over HTTP/1.1 (instanceTransport)
// or, for revisions deployed with --use-http2, over h2c: HTTP/2 with prior
// knowledge, which gRPC needs (streams, trailers).
type byProtocol struct {
	h1  *instanceTransport
	h2c *http.Transport
}

func (t byProtocol) RoundTrip(req *http.Request) (*http.Response, error) {
	if p, ok := req.Context().Value(proxiedKey{}).(*proxied); ok && p.h2c {
		return t.h2c.RoundTrip(req)
	}
	return t.h1.RoundTrip(req)
}

func newH2CTransport() *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols:           &protocols,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
}
