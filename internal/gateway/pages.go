package gateway

import (
	"net/http"
	"strconv"
)

// Small static HTML bodies, like Google's front end answers with. They never
// echo request data, so they cannot reflect an attacker's markup.
func page(status int, title, detail string) []byte {
	return []byte("<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>" + strconv.Itoa(status) + " " + title +
		"</title><body><h1>" + strconv.Itoa(status) + " " + title + "</h1><p>" + detail + "</p></body></html>\n")
}

var (
	pageUnauthorized   = page(401, "Unauthorized", "Your client does not have permission to the requested URL: it must present a valid identity token for this service.")
	pageForbidden      = page(403, "Forbidden", "Your client does not have permission to get the requested URL from this server.")
	pageNotFound       = page(404, "Not Found", "The requested URL was not found on this server.")
	pageUnavailable    = page(503, "Service Unavailable", "The service is not available right now. Please try again.")
	pageNoRevision     = page(503, "Service Unavailable", "The service has no ready revision yet.")
	pageRateLimited    = page(429, "Too Many Requests", "Too many anonymous requests from your address. Please retry later, or call with credentials.")
	pageOverloaded     = page(429, "Too Many Requests", "The service is at its maximum number of instances and its queue is full. Please retry.")
	pageBadGateway     = page(502, "Bad Gateway", "The service's instance failed to answer.")
	pageGatewayTimeout = page(504, "Gateway Timeout", "The service's instance did not answer in time.")
)

// pageStale answers every request while the node's routing table may be out
// of date (Config.Fresh): it fails closed rather than apply revoked access.
var pageStale = page(503, "Service Unavailable", "this node cannot confirm its access policies are current; retry, or use another node.")

func writeStale(w http.ResponseWriter) {
	w.Header()["Retry-After"] = []string{"1"}
	writePage(w, http.StatusServiceUnavailable, pageStale)
}

var htmlContentType = []string{"text/html; charset=utf-8"}
var noSniff = []string{"nosniff"}

func writePage(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = htmlContentType
	h["X-Content-Type-Options"] = noSniff
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}
