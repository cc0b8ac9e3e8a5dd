package server

import (
	"context"
	"strings"
	"testing"
)

// A node name is a segment of store keys: one with a '/' would put this
// node's metrics history under another node's prefix (node "a" lists and
// deletes "a/b"'s chunks as its own unreadable ones). Refused at start,
// before anything is opened or written.
func TestNodeNameWithSlashRefused(t *testing.T) {
	for _, name := range []string{"a/b", "a b"} {
		err := Run(context.Background(), Config{NodeName: name, DataDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "--node-name") {
			t.Errorf("node name %q: %v, want a --node-name error", name, err)
		}
	}
}
