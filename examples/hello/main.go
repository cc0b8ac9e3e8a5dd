// Command hello is the smallest Cloud Run service: it answers "Hello World!" on
// the port named by $PORT, the container contract every Usher instance follows.
// $NAME replaces "World"; so does the content of the file $NAME_FILE names
// (a secret mounted as a file, say), read at each request.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	name := os.Getenv("NAME")
	if name == "" {
		name = "World"
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	nameFile := os.Getenv("NAME_FILE")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := name
		if nameFile != "" {
			b, err := os.ReadFile(nameFile)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			n = string(b)
		}
		fmt.Fprintf(w, "Hello %s!\n", n)
	})
	log.Printf("hello: listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
