package api

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/store"
)

func (a *API) listServiceAccounts(w http.ResponseWriter, r *http.Request, c *caller) error {
	accounts, err := a.cfg.Core.ListServiceAccounts(r.Context(), c, r.PathValue("project"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"accounts": accounts})
}

func (a *API) createServiceAccount(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		AccountID      string `json:"accountId"`
		ServiceAccount struct {
			DisplayName string `json:"displayName"`
			Description string `json:"description"`
		} `json:"serviceAccount"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	sa, err := a.cfg.Core.CreateServiceAccount(r.Context(), c, r.PathValue("project"), req.AccountID, req.ServiceAccount.DisplayName, req.ServiceAccount.Description)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sa)
}

func (a *API) serviceAccountGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	ref, method := splitMethod(r.PathValue("sa"))
	if method == "" {
		sa, err := a.cfg.Core.GetServiceAccount(r.Context(), c, r.PathValue("project"), ref)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, sa)
	}
	return a.serviceAccountMethod(w, r, c)
}

// patchServiceAccount answers PATCH …/serviceAccounts/SA (gcloud iam
// service-accounts update): {serviceAccount: {displayName, description},
// updateMask}.
func (a *API) patchServiceAccount(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		ServiceAccount struct {
			DisplayName string `json:"displayName"`
			Description string `json:"description"`
		} `json:"serviceAccount"`
		UpdateMask string `json:"updateMask"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	var mask []string
	for f := range strings.SplitSeq(req.UpdateMask, ",") {
		if f = strings.TrimSpace(f); f != "" {
			mask = append(mask, f)
		}
	}
	sa, err := a.cfg.Core.UpdateServiceAccount(r.Context(), c, r.PathValue("project"), r.PathValue("sa"), req.ServiceAccount.DisplayName, req.ServiceAccount.Description, mask)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sa)
}

func (a *API) serviceAccountMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	project := r.PathValue("project")
	ref, method := splitMethod(r.PathValue("sa"))
	switch method {
	case "getIamPolicy", "setIamPolicy", "testIamPermissions":
		return a.policyMethod(w, r, c, method, func() (*admin.Target, error) {
			t, _, err := a.cfg.Core.ServiceAccountTarget(ctx, project, ref)
			return t, err
		})
	case "disable", "enable":
		if _, err := a.cfg.Core.SetServiceAccountDisabled(ctx, c, project, ref, method == "disable"); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, struct{}{})
	case "undelete":
		sa, err := a.cfg.Core.UndeleteServiceAccount(ctx, c, project, ref)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"restoredAccount": sa})
	case "signBlob":
		var req struct {
			Payload   []byte   `json:"payload"` // base64, as JSON bytes are
			Delegates []string `json:"delegates"`
		}
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		kid, sig, err := a.cfg.Core.SignBlob(ctx, c, project, ref, req.Payload, req.Delegates)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"keyId": kid, "signedBlob": sig})
	case "signJwt":
		var req struct {
			Payload   string   `json:"payload"`
			Delegates []string `json:"delegates"`
		}
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		kid, jwt, err := a.cfg.Core.SignJWT(ctx, c, project, ref, req.Payload, req.Delegates)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]string{"keyId": kid, "signedJwt": jwt})
	case "generateIdToken":
		var req struct {
			Audience     string   `json:"audience"`
			IncludeEmail bool     `json:"includeEmail"`
			Delegates    []string `json:"delegates"`
		}
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		tok, err := a.cfg.Core.GenerateIDToken(ctx, c, project, ref, req.Audience, req.Delegates)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]string{"token": tok})
	case "generateAccessToken":
		var req struct {
			Scope     []string `json:"scope"`
			Lifetime  string   `json:"lifetime"`
			Delegates []string `json:"delegates"`
		}
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		var lifetime time.Duration
		if req.Lifetime != "" {
			d, err := time.ParseDuration(req.Lifetime)
			if err != nil || d <= 0 || d > issuer.MaxTokenLifetime {
				return invalidArgument("lifetime %q must be a duration like \"3600s\", at most 1h", req.Lifetime)
			}
			lifetime = d
		}
		tok, exp, err := a.cfg.Core.GenerateAccessToken(ctx, c, project, ref, req.Scope, lifetime, req.Delegates)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]string{"accessToken": tok, "expireTime": exp.UTC().Format(time.RFC3339)})
	}
	return notFound("no method %q on serviceAccounts", method)
}

func (a *API) deleteServiceAccount(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.Core.DeleteServiceAccount(r.Context(), c, r.PathValue("project"), r.PathValue("sa")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{})
}

// handleToken exchanges a long-lived CLI credential for a short-lived access
// token and an identity token (OAuth 2.0 refresh_token grant).
func (a *API) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	oauthErr := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(http.StatusBadRequest, "invalid_request", "the body must be a form")
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "refresh_token":
	case jwtBearerGrant:
		a.exchangeAssertion(w, r)
		return
	default:
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token or "+jwtBearerGrant)
		return
	}
	secret := r.PostForm.Get("refresh_token")
	if secret == "" {
		oauthErr(http.StatusBadRequest, "invalid_grant", "refresh_token is required")
		return
	}
	tokens, err := a.cfg.Core.ExchangeCredential(r.Context(), secret, r.PostForm.Get("scope"), r.PostForm.Get("audience"))
	var ae *admin.Error
	switch {
	case errors.Is(err, admin.ErrBadCredential):
		oauthErr(http.StatusBadRequest, "invalid_grant", "the credential is not valid; run `usher serve` once to write a fresh configuration")
		return
	case errors.As(err, &ae):
		oauthErr(http.StatusBadRequest, "invalid_request", ae.Message)
		return
	case errors.Is(err, store.ErrUnavailable): // retryable
		a.cfg.Log.Warn("token: the store did not answer", "status", "UNAVAILABLE", "err", err)
		oauthErr(http.StatusServiceUnavailable, "temporarily_unavailable", "the state store did not answer in time; retry")
		return
	case err != nil:
		a.cfg.Log.Error("token: exchanging credential", "err", err)
		oauthErr(http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tokens.Access, "token_type": "Bearer", "expires_in": int(time.Until(tokens.Expiry).Round(time.Second) / time.Second), "id_token": tokens.Identity,
	})
}

// jwtBearerGrant is RFC 7523's grant: a JWT signed with a service-account
// key (Google's key files).
const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// exchangeAssertion answers the JWT-bearer grant: an access token, or an
// identity token when the JWT carries target_audience (as Google's token
// endpoint does for key files).
func (a *API) exchangeAssertion(w http.ResponseWriter, r *http.Request) {
	tokens, err := a.cfg.Core.ExchangeAssertion(r.Context(), r.PostForm.Get("assertion"))
	switch {
	case errors.Is(err, admin.ErrBadAssertion):
		a.cfg.Log.Info("token: refused a JWT-bearer assertion", "err", err)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "Invalid JWT: the key, its account or the token's claims are not valid."})
		return
	case err != nil:
		var ae *admin.Error
		if errors.As(err, &ae) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": ae.Message})
			return
		}
		a.cfg.Log.Error("token: exchanging an assertion", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "internal error"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	expires := int(time.Until(tokens.Expiry).Round(time.Second) / time.Second)
	if tokens.Identity != "" {
		writeJSON(w, http.StatusOK, map[string]any{"id_token": tokens.Identity, "token_type": "Bearer", "expires_in": expires})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tokens.Access, "token_type": "Bearer", "expires_in": expires})
}

// HashCredential is how credentials are keyed in the store.
func HashCredential(secret string) string { return admin.HashCredential(secret) }

// accountKeysJWK answers GET /service_accounts/v1/metadata/jwk/EMAIL: the
// account's signing keys as a JWK set, public, as Google publishes them.
func (a *API) accountKeysJWK(w http.ResponseWriter, r *http.Request) {
	keys, err := a.cfg.Core.AccountSigningKeys(r.Context(), r.PathValue("email"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	set := []map[string]string{}
	for _, k := range keys {
		set = append(set, map[string]string{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": k.KeyID,
			"n": base64.RawURLEncoding.EncodeToString(k.Key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.Key.E)).Bytes())})
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": set})
}

// accountKeysX509 answers GET /service_accounts/v1/metadata/x509/EMAIL:
// {kid: PEM certificate}, public.
func (a *API) accountKeysX509(w http.ResponseWriter, r *http.Request) {
	keys, err := a.cfg.Core.AccountSigningKeys(r.Context(), r.PathValue("email"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := map[string]string{}
	for _, k := range keys {
		out[k.KeyID] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Certificate}))
	}
	writeJSON(w, http.StatusOK, out)
}
