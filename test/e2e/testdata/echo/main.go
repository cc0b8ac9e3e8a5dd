// Command echo is a test service for Usher's end-to-end tests: it listens on
// $PORT, answers "echo" on / and, on GET /headers, the request's Host and
// headers as JSON, so tests can see exactly what reached the instance. It logs
// every request it receives ("echo: METHOD PATH") so tests can tell, from
// Usher's log, which requests reached it.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

// Seen is what GET /headers answers.
type Seen struct {
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(Seen{Host: r.Host, Headers: r.Header}); err != nil {
			log.Printf("echo: writing answer: %v", err)
		}
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("for"))
		time.Sleep(d)
		fmt.Fprintln(w, "slow done")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "echo")
	})
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("echo: %s %s", r.Method, r.URL.Path)
		mux.ServeHTTP(w, r)
	})
	log.Printf("echo: listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, logged))
}
