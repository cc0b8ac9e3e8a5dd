package connlimit_test

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/connlimit"
)

// accepted runs an accept loop and hands each connection over.
func accepted(t *testing.T, cfg connlimit.Config) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(ln, cfg)
	t.Cleanup(func() { l.Close() })
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	return ln.Addr().String(), ch
}

func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantAccepted(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("connection within the caps was not accepted")
		return nil
	}
}

func wantRefused(t *testing.T, c net.Conn, want int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	if resp.StatusCode != want {
		t.Errorf("refusal status = %d, want %d", resp.StatusCode, want)
	}
}

func TestCaps(t *testing.T) {
	tests := []struct {
		name      string
		cfg       connlimit.Config
		want      int
		otherAddr bool // does another client still get in?
	}{
		{"per client", connlimit.Config{PerClient: 2, PlainHTTP: true}, 429, true},
		{"total", connlimit.Config{Total: 2, PlainHTTP: true}, 503, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ch := accepted(t, tt.cfg)
			dialFrom(t, "127.0.0.2", addr)
			first := wantAccepted(t, ch)
			dialFrom(t, "127.0.0.2", addr)
			wantAccepted(t, ch)
			wantRefused(t, dialFrom(t, "127.0.0.2", addr), tt.want)

			other := dialFrom(t, "127.0.0.3", addr)
			if tt.otherAddr {
				wantAccepted(t, ch)
			} else {
				wantRefused(t, other, tt.want)
			}
			// A closed connection frees its place.
			first.Close()
			dialFrom(t, "127.0.0.2", addr)
			wantAccepted(t, ch)
		})
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::"},
	}
	for _, tt := range tests {
		a, err := net.ResolveTCPAddr("tcp", tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := connlimit.ClientKey(a).String(); got != tt.want {
			t.Errorf("ClientKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
