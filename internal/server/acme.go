package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// letsEncrypt is --acme-ca's default: Let's Encrypt's production directory.
const letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// acme holds automatic certificates (--acme-email): obtained on demand, at
// the first TLS handshake for a name, and only for names this server owns
// (the API host and hosts the routing table knows), so a client cannot make
// Usher ask the CA for arbitrary names. Certificates and the ACME account
// live in the store (certstore), shared by every node of a cluster.
type acme struct {
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

// newACME sets up certmagic. owns decides the names certificates may be
// obtained for; it must be cheap (it runs at handshakes for unknown names).
func newACME(cfg Config, storage certmagic.Storage, owns func(host string) bool) *acme {
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zap.NewNop(),
	})
	magic = certmagic.New(cache, certmagic.Config{
		Storage: storage,
		OnDemand: &certmagic.OnDemandConfig{DecisionFunc: func(_ context.Context, name string) error {
			if owns(strings.ToLower(name)) {
				return nil
			}
			return errors.New("usher: not a host of this server")
		}},
		Logger: zap.NewNop(),
	})
	ca := cfg.ACMECA
	if ca == "" {
		ca = letsEncrypt
	}
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:     ca,
		Email:  cfg.ACMEEmail,
		Agreed: true,
		// HTTP-01 on --http-addr when there is one; TLS-ALPN-01 on the
		// HTTPS listener always.
		DisableHTTPChallenge: cfg.HTTPAddr == "",
		Logger:               zap.NewNop(),
	})
	magic.Issuers = []certmagic.Issuer{issuer}
	return &acme{magic: magic, issuer: issuer}
}

// tlsConfig is the HTTPS listener's: certificates from certmagic, HTTP/2 and
// HTTP/1.1 by ALPN, and ACME's TLS-ALPN-01 challenge.
func (a *acme) tlsConfig() *tls.Config {
	c := a.magic.TLSConfig()
	c.NextProtos = append([]string{"h2", "http/1.1"}, c.NextProtos...)
	c.MinVersion = tls.VersionTLS12
	return c
}

// httpHandler answers HTTP-01 challenges on --http-addr and hands the rest
// to next.
func (a *acme) httpHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}
