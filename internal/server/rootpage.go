package server

import (
	"html/template"
	"net/http"
	"strings"
)

// rootPage answers GET / for browsers with a short page pointing at the
// console; API clients (anything that does not ask for HTML first) get the
// API's own answer, a JSON error.
func rootPage(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !prefersHTML(r.Header.Get("Accept")) {
			api.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		rootTmpl.Execute(w, nil)
	})
}

// prefersHTML: the first media type the client lists is text/html, as
// browsers send it for a page.
func prefersHTML(accept string) bool {
	first, _, _ := strings.Cut(accept, ",")
	first, _, _ = strings.Cut(first, ";")
	return strings.TrimSpace(strings.ToLower(first)) == "text/html"
}

var rootTmpl = template.Must(template.New("root").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Usher</title></head>
<body>
<h1>Usher</h1>
<p>This is Usher's API. People want the <a href="/console/">web console</a>.</p>
<p>Command line: <code>usher run services list</code>, or gcloud after <code>usher gcloud configure</code>.</p>
</body></html>
`))
