// Command testapp is the instance the runtime conformance suite
// (package runtimetest) runs. It follows the Cloud Run container contract:
// an HTTP server on $PORT.
//
// Endpoints:
//
//	/                     "ok"
//	/env                  JSON: env (map), environ, args, executable, cwd, pid
//	/exit?code=N          exits with status N
//	/log?msg=M&stream=S   prints M on stdout, or stderr if S is "stderr"
//	/alloc?mb=N           allocates and touches N MiB, keeps it, answers "ok"
//	/addrs                its IPv4 addresses but loopback, one a line
//	/spawn                starts a child copy of itself (TESTAPP_CHILD=1)
//	                      that ignores SIGTERM, and returns its pid
//
// Environment:
//
//	TESTAPP_BEACON=host:port  dial it, write "hello PID ROLE\n" and keep the
//	                          connection open while alive, so the suite can
//	                          tell when the process is gone; exit when
//	                          the suite closes it
//	TESTAPP_IGNORE_SIGTERM=1  ignore SIGTERM (else exit 0 on SIGTERM)
//	TESTAPP_NEVER_LISTEN=1    never listen
//	TESTAPP_EXIT_AT_START=1   print "boom" on stderr and exit 3 at once
//	TESTAPP_CHILD=1           child mode (see /spawn); exits when the
//	                          beacon connection closes
//
// It must never be used outside tests.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// beacon is kept referenced so the connection is never garbage collected
// (and closed) while the process lives.
var beacon net.Conn

// hoard keeps what /alloc allocated.
var hoard [][]byte

func main() {
	log.SetFlags(0)
	log.SetPrefix("testapp: ")
	role := "app"
	if os.Getenv("TESTAPP_CHILD") == "1" {
		role = "child"
		signal.Ignore(syscall.SIGTERM) // before saying hello to the beacon
	}
	if addr := os.Getenv("TESTAPP_BEACON"); addr != "" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			log.Fatalf("beacon: %v", err)
		}
		fmt.Fprintf(c, "hello %d %s\n", os.Getpid(), role)
		beacon = c
		if role == "app" {
			// Leave nothing behind when the suite is done, even if the
			// runtime under test failed to kill us.
			go func() {
				io.Copy(io.Discard, c)
				os.Exit(0)
			}()
		}
	}
	if role == "child" {
		fmt.Println("testapp child: started")
		if beacon != nil {
			io.Copy(io.Discard, beacon) // until the suite is done with us
		}
		return
	}
	if os.Getenv("TESTAPP_EXIT_AT_START") == "1" {
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(3)
	}

	var term chan os.Signal
	if os.Getenv("TESTAPP_IGNORE_SIGTERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		term = make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
	}

	if os.Getenv("TESTAPP_NEVER_LISTEN") == "1" {
		fmt.Println("testapp: never listening")
		for {
			select {
			case <-term: // nil (blocks) when ignoring SIGTERM
				fmt.Println("testapp: SIGTERM, exiting")
				os.Exit(0)
			case <-time.After(time.Hour):
			}
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		exe, _ := os.Executable()
		cwd, _ := os.Getwd()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"env":        env,
			"environ":    os.Environ(),
			"args":       os.Args,
			"executable": exe,
			"cwd":        cwd,
			"pid":        os.Getpid(),
		})
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "bad code", http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "bye")
		w.(http.Flusher).Flush()
		fmt.Printf("testapp: exiting with status %d\n", code)
		os.Exit(code)
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		out := os.Stdout
		if r.URL.Query().Get("stream") == "stderr" {
			out = os.Stderr
		}
		fmt.Fprintln(out, r.URL.Query().Get("msg"))
		fmt.Fprintln(w, "logged")
	})
	// What an attacker would try (sandbox tests): read a file, connect to
	// an address, GET a URL (with the metadata header), say who it runs as.
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.Close()
		fmt.Fprintln(w, "connected")
	})
	mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequest("GET", r.URL.Query().Get("url"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Header.Set("Metadata-Flavor", "Google")
		if h := r.URL.Query().Get("host"); h != "" {
			req.Host = h
		}
		if tok := r.URL.Query().Get("bearer"); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	// Probe tests: /ready answers 503 until TESTAPP_READY_AFTER (a
	// duration) has passed since the start; /healthz 200 until /sick is
	// called, then 500; /fail always 500.
	started := time.Now()
	readyAfter, _ := time.ParseDuration(os.Getenv("TESTAPP_READY_AFTER"))
	var sick atomic.Bool
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(started) < readyAfter {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "healthy")
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) {
		sick.Store(true)
		fmt.Fprintln(w, "sick now")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "failing", http.StatusInternalServerError)
	})
	// /write?path=P&bytes=N writes N bytes to P (volume tests): 507 when
	// it cannot, with the error.
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		if err := os.WriteFile(r.URL.Query().Get("path"), make([]byte, n), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
			return
		}
		fmt.Fprintln(w, "written")
	})
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		for range mb {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/addrs", func(w http.ResponseWriter, r *http.Request) {
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				fmt.Fprintln(w, ipn.IP)
			}
		}
	})
	mux.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d\n", os.Getuid(), os.Getgid())
	})
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		exe, err := os.Executable()
		if _, serr := os.Stat("/proc/self/exe"); serr == nil {
			// Its path may not exist where it runs (a sandbox).
			exe, err = "/proc/self/exe", nil
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "TESTAPP_CHILD=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		go cmd.Wait()
		fmt.Fprintln(w, cmd.Process.Pid)
	})

	// TESTAPP_LISTEN_HOST: listen on that address only (e.g. ::1), as a
	// program that binds "localhost" may.
	l, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("TESTAPP_LISTEN_HOST"), os.Getenv("PORT")))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("testapp: listening on %s\n", l.Addr())
	fmt.Fprintln(os.Stderr, "testapp: hello from stderr")
	srv := &http.Server{Handler: mux}
	if term != nil {
		go func() {
			<-term
			fmt.Println("testapp: SIGTERM, shutting down")
			srv.Close()
		}()
	}
	if err := srv.Serve(l); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	fmt.Println("testapp: bye")
}
