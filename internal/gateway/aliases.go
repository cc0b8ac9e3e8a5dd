package gateway

// Header aliases. Many servers and frameworks fold "_" and "." into "-" and
// ignore case when they read a request header (CGI and WSGI turn every one of
// them into HTTP_X_GOOG_AUTHENTICATED_USER_EMAIL; nginx, Rack, PHP and others
// do likewise), so an app behind the gateway may read a client's
// "X_Goog_Authenticated_User_Email" as the identity header the gateway just
// removed. isProtectedAlias finds such spellings of every header the gateway
// strips or owns, so they never reach an instance either.

// stripAliases removes every alias of a protected header from h.
func stripAliases(h map[string][]string) {
	for k := range h {
		if isProtectedAlias(k) {
			delete(h, k)
		}
	}
}

// protectedHeaders are the headers whose aliases are removed: every spoofable
// header plus the one the gateway itself forwards a verified token in. All
// are lowercase with "-" separators: the folded form.
var protectedHeaders = []string{
	"forwarded",
	"x-real-ip",
	"x-forwarded-host",
	"x-forwarded-proto",
	"x-forwarded-for",
	"x-goog-authenticated-user-email",
	"x-goog-authenticated-user-id",
	"x-goog-iap-jwt-assertion",
	"x-usher-principal",
	"x-serverless-authorization",
}

// protectedPrefix covers the rest of the forwarding family (X-Forwarded-Port,
// X-Forwarded-Prefix, ...) in its alias spellings.
const protectedPrefix = "x-forwarded-"

// isProtectedAlias reports whether the header key k, as it arrived, is an
// alias of a protected header: it contains "_" or "." and reads as that
// header once "_" and "." become "-" and case is ignored. Exact names are not
// aliases (the spoofable loop and the credential rewrite handle them). It does
// not allocate; a key without "_" or "." costs one scan.
func isProtectedAlias(k string) bool {
	aliased := false
	for i := 0; i < len(k); i++ {
		if k[i] == '_' || k[i] == '.' {
			aliased = true
			break
		}
	}
	if !aliased {
		return false
	}
	if len(k) >= len(protectedPrefix) && foldedEqual(k[:len(protectedPrefix)], protectedPrefix) {
		return true
	}
	for _, p := range protectedHeaders {
		if foldedEqual(k, p) {
			return true
		}
	}
	return false
}

// foldedEqual reports whether k equals the folded name p (lowercase, "-")
// once k's "_" and "." read as "-" and its ASCII letters as lowercase.
func foldedEqual(k, p string) bool {
	if len(k) != len(p) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_' || c == '.':
			c = '-'
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}
