package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// publicAddress is what URLs are made of: the issuer, the API, the console
// and every service URL take their scheme and port from it.
type publicAddress struct {
	Scheme string // http or https
	Host   string // without port
	Port   string // "" when the scheme's default
}

func (p publicAddress) String() string {
	if p.Port == "" {
		return p.Scheme + "://" + p.Host
	}
	return p.Scheme + "://" + net.JoinHostPort(p.Host, p.Port)
}

// resolvePublicURL reads --public-url, or makes the default from the
// listener: http://localhost:PORT, https:// when serving TLS.
func resolvePublicURL(raw string, tls bool, listenPort string) (publicAddress, error) {
	if raw == "" {
		p := publicAddress{Scheme: "http", Host: "localhost", Port: listenPort}
		if tls {
			p.Scheme = "https"
		}
		if (p.Scheme == "https" && p.Port == "443") || (p.Scheme == "http" && p.Port == "80") {
			p.Port = ""
		}
		return p, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return publicAddress{}, fmt.Errorf("--public-url %q: want scheme://host[:port], scheme http or https, no path", raw)
	}
	p := publicAddress{Scheme: u.Scheme, Host: strings.ToLower(u.Hostname()), Port: u.Port()}
	if (p.Scheme == "https" && p.Port == "443") || (p.Scheme == "http" && p.Port == "80") {
		p.Port = ""
	}
	return p, nil
}

// tlsFromFiles loads --tls-cert and --tls-key (a certificate for the API
// host and the service hosts: a wildcard *.REGION.DOMAIN or SANs).
func tlsFromFiles(certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// redirectToHTTPS answers --http-addr: every request is sent to the same
// host and path over HTTPS, on the public port.
func redirectToHTTPS(pub publicAddress) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/\\@ ") {
			http.Error(w, "usher: bad Host", http.StatusBadRequest)
			return
		}
		target := "https://" + host
		if pub.Port != "" {
			target += ":" + pub.Port
		}
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
