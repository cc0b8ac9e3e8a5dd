// Package connlimit caps how many connections a listener holds open, per
// client address and in total, so that no client, and no crowd of them, can
// take every file descriptor and goroutine of a node.
//
// It sits under the HTTP server (and under TLS): a connection over a cap is
// answered and closed the moment it is accepted, before any of its bytes are
// read. It never blocks Accept on a slow client.
package connlimit

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the caps.
type Config struct {
	// Total caps open connections in all (0: no cap). Reaching it answers
	// 503 Service Unavailable.
	Total int
	// PerClient caps open connections from one client address (0: no cap);
	// IPv6 clients are counted per /64, the block one host usually holds.
	// Reaching it answers 429 Too Many Requests.
	PerClient int
	// PlainHTTP makes a refused connection get a minimal HTTP/1.1 answer
	// before it is closed. Leave it false under TLS: the client expects a
	// handshake, and a close is all it gets.
	PlainHTTP bool
	// Log receives one line when connections start being refused, then at
	// most one every LogEvery with the count refused meanwhile.
	Log      *slog.Logger
	LogEvery time.Duration
}

// Listener is a net.Listener that enforces Config.
type Listener struct {
	net.Listener
	cfg Config

	mu     sync.Mutex
	total  int
	client map[netip.Addr]int

	refused  atomic.Int64 // since the last log line
	logMu    sync.Mutex
	lastLog  time.Time
	inFlight atomic.Int64 // open connections, for metrics
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	return &Listener{Listener: ln, cfg: cfg, client: map[netip.Addr]int{}}
}

// Open reports how many accepted connections are open.
func (l *Listener) Open() int64 { return l.inFlight.Load() }

// Accept returns the next connection within the caps; connections over a
// cap are refused here and never reach the caller.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := ClientKey(c.RemoteAddr())
		if status := l.admit(addr); status != 0 {
			l.refuse(c, addr, status)
			continue
		}
		l.inFlight.Add(1)
		return &conn{Conn: c, l: l, addr: addr}, nil
	}
}

// admit counts a new connection from addr, or returns the status refusing it.
func (l *Listener) admit(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Total > 0 && l.total >= l.cfg.Total {
		return 503
	}
	if l.cfg.PerClient > 0 && l.client[addr] >= l.cfg.PerClient {
		return 429
	}
	l.total++
	l.client[addr]++
	return 0
}

func (l *Listener) release(addr netip.Addr) {
	l.inFlight.Add(-1)
	l.mu.Lock()
	l.total--
	if n := l.client[addr] - 1; n > 0 {
		l.client[addr] = n
	} else {
		delete(l.client, addr)
	}
	l.mu.Unlock()
}

var (
	answer429 = refusal(429, "Too Many Requests", "too many connections from your address")
	answer503 = refusal(503, "Service Unavailable", "this node is at its connection limit; retry")
)

func refusal(status int, text, body string) []byte {
	body += "\n"
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

func (l *Listener) refuse(c net.Conn, addr netip.Addr, status int) {
	if l.cfg.PlainHTTP {
		// A new socket's send buffer is empty: this write does not wait
		// on the client, and the deadline makes sure of it.
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if status == 429 {
			c.Write(answer429)
		} else {
			c.Write(answer503)
		}
	}
	c.Close()
	n := l.refused.Add(1)
	l.logMu.Lock()
	defer l.logMu.Unlock()
	now := time.Now()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < l.cfg.LogEvery {
		return
	}
	l.lastLog = now
	l.refused.Add(-n)
	reason := "total connection cap reached"
	if status == 429 {
		reason = "per-client connection cap reached"
	}
	l.cfg.Log.Warn("refusing connections", "reason", reason, "status", status, "client", addr.String(),
		"refused", n, "per_client_cap", l.cfg.PerClient, "total_cap", l.cfg.Total,
		"note", "logged at most once per "+l.cfg.LogEvery.String())
}

// ClientKey is the address a connection counts against: the peer's IP, and
// for IPv6 its /64.
func ClientKey(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr().Unmap()
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr().Unmap()
		}
	}
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

type conn struct {
	net.Conn
	l      *Listener
	addr   netip.Addr
	closed atomic.Bool
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.addr)
	}
	return c.Conn.Close()
}

// CloseWrite lets the HTTP server half-close before closing (it looks for
// this method), as it does on a bare TCP connection.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
