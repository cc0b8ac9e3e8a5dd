package grpcapi

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		code int
		body string
		want codes.Code
	}{
		{403, `{"error":{"code":403,"message":"no","status":"PERMISSION_DENIED"}}`, codes.PermissionDenied},
		{400, `{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}`, codes.InvalidArgument},
		{409, `{"error":{"code":409,"message":"etag","status":"ABORTED"}}`, codes.Aborted},
		{409, `{"error":{"code":409,"message":"exists","status":"ALREADY_EXISTS"}}`, codes.AlreadyExists},
		{401, `{"error":{"code":401,"message":"who","status":"UNAUTHENTICATED"}}`, codes.Unauthenticated},
		{503, `{"error":{"code":503,"message":"later","status":"UNAVAILABLE"}}`, codes.Unavailable},
		{404, `not json`, codes.NotFound},
		{500, ``, codes.Unknown},
	} {
		if got := status.Code(statusOf(tc.code, []byte(tc.body))); got != tc.want {
			t.Errorf("statusOf(%d, %s) = %v, want %v", tc.code, tc.body, got, tc.want)
		}
	}
}

// FuzzResource: a name from a request either is refused or can be placed
// in a REST path as is: it climbs nowhere and adds no query.
func FuzzResource(f *testing.F) {
	for _, s := range []string{"projects/p/locations/r/services/s", "../v1", "a?b", "a%2f", "/abs", "a b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := resource("name", name)
		if err != nil {
			return
		}
		r, perr := http.NewRequest(http.MethodGet, "/v2/"+n, nil)
		if perr != nil {
			return
		}
		if r.URL.RawQuery != "" || r.URL.Fragment != "" || strings.Contains(r.URL.Path, "/../") || strings.HasSuffix(r.URL.Path, "/..") || !strings.HasPrefix(r.URL.Path, "/v2/") {
			t.Fatalf("resource(%q) = %q leads to %q", name, n, r.URL)
		}
	})
}
