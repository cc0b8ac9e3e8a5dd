package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iap"
)

// trustedIssuers reads --trusted-issuers (a JSON or YAML list of
// {issuer, groupsClaim, clientID, clientSecret, name}) and appends the repeatable --trusted-issuer URLs.
func (c *Config) trustedIssuers() ([]authn.ExternalIssuer, error) {
	var list []authn.ExternalIssuer
	if c.TrustedIssuersFile != "" {
		b, err := os.ReadFile(c.TrustedIssuersFile)
		if err != nil {
			return nil, fmt.Errorf("--trusted-issuers: %w", err)
		}
		if err := yaml.UnmarshalStrict(b, &list); err != nil {
			return nil, fmt.Errorf("--trusted-issuers %s: want a list of {issuer: URL, groupsClaim: NAME}: %w", c.TrustedIssuersFile, err)
		}
		for i, is := range list {
			if is.Issuer == "" {
				return nil, fmt.Errorf("--trusted-issuers %s: entry %d has no issuer", c.TrustedIssuersFile, i)
			}
		}
	}
	for _, u := range c.TrustedIssuers {
		list = append(list, authn.ExternalIssuer{Issuer: u})
	}
	return list, nil
}

// gatewayVerifier is the verifier the gateway uses: Usher's own when no
// external issuer is trusted, else a Multi verifier whose issuers are
// discovered in the background (their tokens are refused until then).
func gatewayVerifier(ctx context.Context, cfg Config, own *authn.Verifier, log *slog.Logger) (gateway.Verifier, error) {
	list, err := cfg.trustedIssuers()
	if err != nil || len(list) == 0 {
		return own, err
	}
	m, err := authn.NewMulti(own, authn.ExternalConfig{Issuers: list, Log: log})
	if err != nil {
		return nil, err
	}
	m.Start(ctx)
	return m, nil
}

// iapProviders are the trusted issuers with a client ID: the identity-aware
// proxy offers them for browser sign-in.
func (c *Config) iapProviders() ([]iap.Provider, error) {
	list, err := c.trustedIssuers()
	if err != nil {
		return nil, err
	}
	var out []iap.Provider
	for _, is := range list {
		if is.ClientID != "" {
			out = append(out, iap.Provider{Issuer: is.Issuer, ClientID: is.ClientID, ClientSecret: is.ClientSecret, Name: is.Name})
		}
	}
	return out, nil
}
