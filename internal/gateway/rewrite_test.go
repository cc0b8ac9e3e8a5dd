package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestSpoofableHeadersAreCanonical(t *testing.T) {
	for _, h := range spoofable {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("spoofable header %q is not canonical (%q): it would never be deleted", h, c)
		}
	}
}

func TestProtectedHeadersCoverSpoofable(t *testing.T) {
	for _, h := range append(slices.Clone(spoofable), headerServerlessAuthz) {
		if !slices.Contains(protectedHeaders, strings.ToLower(h)) {
			t.Errorf("%s is stripped but its aliases are not: add %q to protectedHeaders", h, strings.ToLower(h))
		}
	}
}

func TestIsProtectedAlias(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"X_Goog_Authenticated_User_Email", true},
		{"X.Goog.Authenticated.User.Email", true},
		{"x_goog_authenticated_user_email", true},
		{"X-Goog_Authenticated-User.Email", true},
		{"X_goog_iap_jwt_assertion", true},
		{"x_serverless_authorization", true},
		{"X.Serverless.Authorization", true},
		{"X_Forwarded_For", true},
		{"X_Forwarded_Port", true},
		{"x.forwarded.prefix", true},
		{"X_Real_Ip", true},
		{"X_Usher_Principal", true},
		// Exact names are handled elsewhere (stripped, or the verified token).
		{"X-Goog-Authenticated-User-Email", false},
		{"X-Serverless-Authorization", false},
		{"X-Forwarded-For", false},
		// Unrelated headers stay.
		{"Authorization", false},
		{"Content-Type", false},
		{"X_Custom_Header", false},
		{"X_Goog_Authenticated_User_Emails", false},
		{"X__Goog_Authenticated_User_Email", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isProtectedAlias(tt.key); got != tt.want {
			t.Errorf("isProtectedAlias(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestIsProtectedAliasDoesNotAllocate(t *testing.T) {
	keys := []string{"Content-Type", "X_Goog_Authenticated_User_Email", "X_Custom_Header", "Accept-Encoding"}
	if n := testing.AllocsPerRun(100, func() {
		for _, k := range keys {
			isProtectedAlias(k)
		}
	}); n != 0 {
		t.Errorf("isProtectedAlias allocates %v times per run, want 0", n)
	}
}

// referenceFold is the plain, allocating form of the folding a CGI-style app
// does: "_" and "." read as "-", case ignored.
func referenceFold(k string) string {
	return strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(k))
}

func FuzzIsProtectedAlias(f *testing.F) {
	for _, s := range []string{"X_Goog_Authenticated_User_Email", "X.Forwarded.For", "x_forwarded_", "Content-Type", "X-Serverless-Authorization", "\xc4\xb0_x", "x_forwarded-\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		folded := referenceFold(k)
		aliased := strings.ContainsAny(k, "_.")
		want := aliased && (slices.Contains(protectedHeaders, folded) ||
			(len(k) >= len(protectedPrefix) && referenceFold(k[:len(protectedPrefix)]) == protectedPrefix))
		if got := isProtectedAlias(k); got != want {
			t.Fatalf("isProtectedAlias(%q) = %v, want %v (folds to %q)", k, got, want, folded)
		}
	})
}

func TestStripAliasesDoesNotAllocate(t *testing.T) {
	h := http.Header{"Content-Type": {"a"}, "Accept": {"b"}, "User-Agent": {"c"}, "X-Serverless-Authorization": {"d"}}
	if n := testing.AllocsPerRun(100, func() { stripAliases(h) }); n != 0 {
		t.Errorf("stripAliases allocates %v times per run on a request without aliases, want 0", n)
	}
}
