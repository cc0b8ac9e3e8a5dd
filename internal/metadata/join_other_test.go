//go:build !unix

package metadata_test

import (
	"fmt"
	"os"
)

// joinMain: process groups are a Unix notion.
func joinMain() {
	fmt.Print("process groups are not supported here")
	os.Exit(2)
}
