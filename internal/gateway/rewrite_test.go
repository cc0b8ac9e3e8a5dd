package gateway

import (
	"net/http"
	"testing"
)

func TestSpoofableHeadersAreCanonical(t *testing.T) {
	for _, h := range spoofable {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("spoofable header %q is not canonical (%q): it would never be deleted", h, c)
		}
	}
}
