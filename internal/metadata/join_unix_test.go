//go:build unix

package metadata_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
)

// joinMain is a process of an instance that tries to pass for another
// instance: it moves into that instance's process group (JOIN_PGID), as
// setpgid(2) allows within one session, then asks the metadata server for
// JOIN_PATH on a fresh connection and prints "STATUS BODY".
func joinMain() {
	pgid, err := strconv.Atoi(os.Getenv("JOIN_PGID"))
	if err != nil {
		fmt.Print("bad JOIN_PGID")
		os.Exit(2)
	}
	if err := syscall.Setpgid(0, pgid); err != nil {
		fmt.Printf("setpgid refused: %v", err)
		return
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+os.Getenv("GCE_METADATA_HOST")+os.Getenv("JOIN_PATH"), nil)
	req.Header.Set("Metadata-Flavor", "Google")
	res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		fmt.Printf("request failed: %v", err)
		return
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	fmt.Printf("%d %s", res.StatusCode, b)
}
