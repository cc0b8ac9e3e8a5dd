package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// notHanging bounds the waits below: far above any answer a healthy node
// gives, far below "held until the client gives up". It proves only that
// the node did not wait on the client.
const notHanging = 10 * time.Second

// rawRequest opens a connection to the server from local (an address in
// 127.0.0.0/8: each counts as its own client), writes head, and returns the
// connection.
func rawRequest(t *testing.T, s *server, local, head string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: notHanging}
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if head != "" {
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func hostOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}

// A refused request is answered without the node reading its body, and its
// connection is closed: a client that announces a body and never sends it
// cannot hold the connection (the attack in issue 12).
func TestRefusalDoesNotWaitForTheBody(t *testing.T) {
	s := startServer(t)
	private := hostOf(t, s.deploy(t, "stalled-private", echoBin))
	unknown := "nosuch-123.us-central1.run.localhost"
	tests := []struct {
		name       string
		host       string
		extra      string // more header lines
		length     int
		wantStatus int
	}{
		{"private service, no credentials", private, "", 100000, 401},
		{"private service, bad token", private, "Authorization: Bearer a.b.c\r\n", 100000, 401},
		{"private service, body over 256 KiB", private, "", 10 << 20, 401},
		{"unknown service host", unknown, "", 100000, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawRequest(t, s, "127.0.0.1", fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\nthe start of a body that never ends",
				tt.host, tt.extra, tt.length))
			c.SetReadDeadline(time.Now().Add(notHanging))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("got %v, want an answer while the body stalls", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if !resp.Close {
				t.Errorf("Connection header: got %q, want close", resp.Header.Get("Connection"))
			}
			// The node closes its side: a read ends with EOF (or a reset),
			// not with our deadline.
			_, err = br.ReadByte()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("connection still open after the refusal: read got %v, want EOF", err)
			}
		})
	}
}

// raiseFileLimit makes sure this process may hold n more descriptors.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("ulimit -n hard limit %d is below the %d descriptors this test needs", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("raising ulimit -n to %d: %v", n, err)
	}
}

// Thousands of connections that stall (in their headers, or in the body of
// a request to a public service) do not stop a legitimate client from being
// served; one address alone is held to its cap and gets 429, and the node
// says so in its log.
func TestStalledConnectionsDoNotStopTheNode(t *testing.T) {
	const stalled = 2000
	raiseFileLimit(t, stalled+1024)
	s := startServerWith(t, "--max-conns-per-client", "100", "--body-idle-timeout", "2s")
	public := s.deploy(t, "stalled-public", echoBin, "--allow-unauthenticated")
	host := hostOf(t, public)
	if r := s.get(t, public); r.status != 200 {
		t.Fatalf("before the attack: GET %s: got %d, want 200", public, r.status)
	}

	// 20 addresses × 100 connections: each address at its cap, every
	// connection accepted and stalled.
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		errs  = make(chan error, stalled)
	)
	for a := 0; a < 20; a++ {
		wg.Add(1)
		go func(local string) {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: notHanging}
			for i := 0; i < stalled/20; i++ {
				c, err := d.Dial("tcp", s.Addr())
				if err != nil {
					errs <- err
					return
				}
				head := "GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Stall: " // headers never end
				if i%2 == 1 {
					head = "POST / HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 100000\r\n\r\nabc" // body never ends
				}
				io.WriteString(c, head)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}(fmt.Sprintf("127.0.1.%d", a+1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening the stalled connections: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})

	t.Run("a legitimate request is served", func(t *testing.T) {
		if r := s.get(t, public); r.status != 200 || r.body != "echo\n" {
			t.Errorf("GET %s during the attack: got %d %q, want 200 \"echo\\n\"", public, r.status, r.body)
		}
	})

	t.Run("one address over its cap gets 429", func(t *testing.T) {
		// A fresh address opens 150 silent connections at once: the first
		// 100 are held (until the header timeout), the rest are refused
		// with 429 as they are accepted.
		offset := int64(len(s.Log()))
		conns := make([]net.Conn, 150)
		for i := range conns {
			conns[i] = rawRequest(t, s, "127.0.2.1", "")
		}
		statuses := make(chan int, len(conns))
		for _, c := range conns[100:] {
			go func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(notHanging))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					statuses <- 0
					return
				}
				statuses <- resp.StatusCode
			}(c)
		}
		refused := 0
		for range conns[100:] {
			if <-statuses == http.StatusTooManyRequests {
				refused++
			}
		}
		if refused == 0 {
			t.Errorf("150 connections from one address with --max-conns-per-client 100: got no 429, want the ones over the cap refused")
		}
		poll(t, notHanging, "a log line about refused connections", func() (bool, string) {
			l := s.LogSince(offset)
			return strings.Contains(l, "refusing connections") && strings.Contains(l, "per-client connection cap"), l
		})
	})

	t.Run("a stalled body is cut after --body-idle-timeout", func(t *testing.T) {
		c := rawRequest(t, s, "127.0.0.1", "POST / HTTP/1.1\r\nHost: "+host+"\r\nContent-Length: 100000\r\n\r\nabc")
		c.SetReadDeadline(time.Now().Add(notHanging))
		_, err := io.Copy(io.Discard, c) // an answer, then the node closes
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("connection with a stalled body still open after %v: got %v, want it closed", notHanging, err)
		}
	})
}

// A request to a revision with timeoutSeconds gets 504 after it, and the
// instance's slot is free again for the next request.
func TestSlowInstanceCutAtTimeout(t *testing.T) {
	s := startServer(t)
	u := s.deploy(t, "slow", echoBin, "--allow-unauthenticated", "--timeout", "2", "--concurrency", "1", "--max-instances", "1")
	client := &http.Client{Timeout: 60 * time.Second}
	client.Transport = s.HTTP.Transport
	resp, err := client.Get(u + "/slow?for=120s")
	if err != nil {
		t.Fatalf("GET /slow: got %v, want a 504 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("GET /slow past timeoutSeconds: got %d, want 504", resp.StatusCode)
	}
	// One instance, one slot: only a freed slot can serve this.
	if r := s.get(t, u); r.status != 200 {
		t.Errorf("GET / after the timeout: got %d %q, want 200 (the slot freed)", r.status, r.body)
	}
}

// Headers past 64 KiB are refused with 431 before any routing.
func TestOversizeHeaders(t *testing.T) {
	s := startServer(t)
	c := rawRequest(t, s, "127.0.0.1", "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: "+strings.Repeat("a", 100<<10)+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(notHanging))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("got %v, want a 431 answer", err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: got %d, want 431", resp.StatusCode)
	}
}
