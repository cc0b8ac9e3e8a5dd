package api

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// accountIDRE is IAM's rule for service account IDs.
var accountIDRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)

func (a *API) listServiceAccounts(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermSAList)
	if err != nil {
		return err
	}
	accounts, _, err := state.List[apis.ServiceAccount](r.Context(), a.cfg.Store, state.ServiceAccountsPrefix+p.ProjectID+"/")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"accounts": accounts})
}

func (a *API) createServiceAccount(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := a.authorizeProject(r, c, iam.PermSACreate)
	if err != nil {
		return err
	}
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
	if !accountIDRE.MatchString(req.AccountID) {
		return invalidArgument("accountId %q must be 6-30 characters: lowercase letters, digits and dashes, starting with a letter and not ending with a dash", req.AccountID)
	}
	sa := newServiceAccount(p, req.AccountID, req.ServiceAccount.DisplayName, req.ServiceAccount.Description)
	_, err = state.Put(r.Context(), a.cfg.Store, state.ServiceAccountKey(p.ProjectID, sa.Email), &sa, store.MustNotExist)
	if errors.Is(err, store.ErrConflict) {
		return alreadyExists("Service account %s already exists within project projects/%s.", req.AccountID, p.ProjectID)
	}
	if err != nil {
		return err
	}
	a.audit(r.Context(), c, audit.KindServiceAccountCreate, iam.PermSACreate, apis.ServiceAccountResource(p.ProjectID, sa.Email), &audit.Details{Email: sa.Email})
	return writeJSON(w, http.StatusOK, sa)
}

// newServiceAccount builds the record of a user-managed service account.
func newServiceAccount(p state.Project, accountID, displayName, description string) apis.ServiceAccount {
	email := apis.ServiceAccountEmail(accountID, p.ProjectID)
	return serviceAccountRecord(p, email, displayName, description)
}

func serviceAccountRecord(p state.Project, email, displayName, description string) apis.ServiceAccount {
	sum := sha256.Sum256([]byte(email))
	uid := fmt.Sprintf("1%020d", binary.BigEndian.Uint64(sum[:8]))
	return apis.ServiceAccount{
		Name:           apis.ServiceAccountResource(p.ProjectID, email),
		ProjectID:      p.ProjectID,
		UniqueID:       uid,
		Email:          email,
		DisplayName:    displayName,
		Description:    description,
		OAuth2ClientID: uid,
		Etag:           "MDEwMjE5MjA=",
	}
}

// DefaultServiceAccountRecord is the project's default runtime identity,
// created with the project.
func DefaultServiceAccountRecord(p state.Project) apis.ServiceAccount {
	return serviceAccountRecord(p, apis.DefaultServiceAccount(p.ProjectID), "Default compute service account", "")
}

// findServiceAccount resolves a service account by email (or unique ID) in
// project ("-" for any project, as IAM allows).
func (a *API) findServiceAccount(r *http.Request, project, ref string) (apis.ServiceAccount, string, error) {
	var sa apis.ServiceAccount
	if project == "-" {
		if p := apis.ServiceAccountProject(ref); p != "" {
			project = p
		} else {
			projects, _, err := state.List[state.Project](r.Context(), a.cfg.Store, state.ProjectsPrefix)
			if err != nil {
				return sa, "", err
			}
			for _, p := range projects {
				if _, err := state.Get(r.Context(), a.cfg.Store, state.ServiceAccountKey(p.ProjectID, ref), &sa); err == nil {
					return sa, p.ProjectID, nil
				}
			}
			return sa, "", notFound("Service account %s does not exist.", ref)
		}
	} else {
		p, err := a.findProject(r.Context(), project)
		if err != nil {
			return sa, "", err
		}
		project = p.ProjectID
	}
	_, err := state.Get(r.Context(), a.cfg.Store, state.ServiceAccountKey(project, ref), &sa)
	if errors.Is(err, store.ErrNotFound) {
		accounts, _, lerr := state.List[apis.ServiceAccount](r.Context(), a.cfg.Store, state.ServiceAccountsPrefix+project+"/")
		if lerr != nil {
			return sa, "", lerr
		}
		for _, acc := range accounts {
			if acc.UniqueID == ref {
				return acc, project, nil
			}
		}
		return sa, "", notFound("Service account projects/%s/serviceAccounts/%s does not exist.", project, ref)
	}
	return sa, project, err
}

func (a *API) serviceAccountTarget(r *http.Request, project string, sa apis.ServiceAccount) (*policyTarget, error) {
	proj, err := a.projectLevel(r.Context(), project)
	if err != nil {
		return nil, err
	}
	return &policyTarget{
		key:      state.ServiceAccountPolicyKey(project, sa.Email),
		resource: apis.ServiceAccountResource(project, sa.Email),
		parents:  []iam.Level{proj},
		getPerm:  iam.PermSAGetIamPolicy,
		setPerm:  iam.PermSASetIamPolicy,
		scope:    iam.ScopeService,
	}, nil
}

func (a *API) serviceAccountGetOrPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	ref, method := splitMethod(r.PathValue("sa"))
	sa, project, err := a.findServiceAccount(r, r.PathValue("project"), ref)
	if err != nil {
		return err
	}
	t, err := a.serviceAccountTarget(r, project, sa)
	if err != nil {
		return err
	}
	switch method {
	case "":
		own, _, err := a.readPolicy(r.Context(), t.key)
		if err != nil {
			return err
		}
		if err := a.check(c, iam.PermSAGet, t.resource, t.levels(own)...); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, sa)
	case "getIamPolicy":
		return a.getPolicy(w, r, c, t)
	}
	return notFound("no method %q on serviceAccounts", method)
}

func (a *API) serviceAccountMethod(w http.ResponseWriter, r *http.Request, c *caller) error {
	ref, method := splitMethod(r.PathValue("sa"))
	sa, project, err := a.findServiceAccount(r, r.PathValue("project"), ref)
	if err != nil {
		return err
	}
	t, err := a.serviceAccountTarget(r, project, sa)
	if err != nil {
		return err
	}
	switch method {
	case "getIamPolicy":
		return a.getPolicy(w, r, c, t)
	case "setIamPolicy":
		return a.setPolicy(w, r, c, t)
	case "testIamPermissions":
		return a.testPermissions(w, r, c, t)
	case "generateIdToken":
		return a.generateIDToken(w, r, c, t, sa)
	case "generateAccessToken":
		return a.generateAccessToken(w, r, c, t, sa)
	}
	return notFound("no method %q on serviceAccounts", method)
}

func (a *API) deleteServiceAccount(w http.ResponseWriter, r *http.Request, c *caller) error {
	sa, project, err := a.findServiceAccount(r, r.PathValue("project"), r.PathValue("sa"))
	if err != nil {
		return err
	}
	t, err := a.serviceAccountTarget(r, project, sa)
	if err != nil {
		return err
	}
	own, _, err := a.readPolicy(r.Context(), t.key)
	if err != nil {
		return err
	}
	if err := a.check(c, iam.PermSADelete, t.resource, t.levels(own)...); err != nil {
		return err
	}
	if _, err := a.cfg.Store.Delete(r.Context(), state.ServiceAccountKey(project, sa.Email), store.AnyRevision); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if _, err := a.cfg.Store.Delete(r.Context(), t.key, store.AnyRevision); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	a.audit(r.Context(), c, audit.KindServiceAccountDelete, iam.PermSADelete, t.resource, &audit.Details{Email: sa.Email})
	return writeJSON(w, http.StatusOK, map[string]any{})
}

// generateIDToken is IAM Credentials' generateIdToken: an identity token for
// the service account, for holders of getOpenIdToken on it (Service Account
// Token Creator).
func (a *API) generateIDToken(w http.ResponseWriter, r *http.Request, c *caller, t *policyTarget, sa apis.ServiceAccount) error {
	var req struct {
		Audience     string   `json:"audience"`
		IncludeEmail bool     `json:"includeEmail"`
		Delegates    []string `json:"delegates"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := a.checkImpersonation(r, c, t, iam.PermSAGetOpenIDToken, req.Delegates); err != nil {
		return err
	}
	if strings.TrimSpace(req.Audience) == "" {
		return invalidArgument("audience is required")
	}
	tok, err := a.cfg.Minter.Mint(issuer.Claims{Subject: sa.UniqueID, Email: sa.Email, EmailVerified: true, Audience: []string{req.Audience}})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func (a *API) generateAccessToken(w http.ResponseWriter, r *http.Request, c *caller, t *policyTarget, sa apis.ServiceAccount) error {
	var req struct {
		Scope     []string `json:"scope"`
		Lifetime  string   `json:"lifetime"`
		Delegates []string `json:"delegates"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := a.checkImpersonation(r, c, t, iam.PermSAGetAccessToken, req.Delegates); err != nil {
		return err
	}
	lifetime := issuer.MaxTokenLifetime
	if req.Lifetime != "" {
		d, err := time.ParseDuration(req.Lifetime)
		if err != nil || d <= 0 || d > issuer.MaxTokenLifetime {
			return invalidArgument("lifetime %q must be a duration like \"3600s\", at most 1h", req.Lifetime)
		}
		lifetime = d
	}
	exp := a.cfg.Now().Add(lifetime)
	tok, err := a.mintAccessToken(sa.UniqueID, sa.Email, strings.Join(req.Scope, " "), exp)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"accessToken": tok, "expireTime": exp.UTC().Format(time.RFC3339)})
}

func (a *API) checkImpersonation(r *http.Request, c *caller, t *policyTarget, perm string, delegates []string) error {
	if len(delegates) > 0 {
		return invalidArgument("delegation chains are not supported; call with the account directly")
	}
	own, _, err := a.readPolicy(r.Context(), t.key)
	if err != nil {
		return err
	}
	return a.check(c, perm, t.resource, t.levels(own)...)
}

func (a *API) mintAccessToken(subject, email, scope string, exp time.Time) (string, error) {
	return MintAccessToken(a.cfg.Minter, subject, email, scope, exp)
}

// MintAccessToken mints an access token for this API (audience
// AccessTokenAudience) for the principal email.
func MintAccessToken(m Minter, subject, email, scope string, exp time.Time) (string, error) {
	if scope == "" {
		scope = "https://www.googleapis.com/auth/cloud-platform"
	}
	return m.Mint(issuer.Claims{
		Subject: subject, Email: email, EmailVerified: true,
		Audience: []string{AccessTokenAudience}, Expiry: exp,
		Extra: map[string]any{"scope": scope, "token_use": "access"},
	})
}

// HashCredential is how credentials are keyed in the store.
func HashCredential(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
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
	if gt := r.PostForm.Get("grant_type"); gt != "refresh_token" {
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token")
		return
	}
	secret := r.PostForm.Get("refresh_token")
	var cred state.Credential
	if secret == "" {
		oauthErr(http.StatusBadRequest, "invalid_grant", "refresh_token is required")
		return
	}
	if _, err := state.Get(r.Context(), a.cfg.Store, state.CredentialKey(HashCredential(secret)), &cred); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.cfg.Log.Error("token: reading credential", "err", err)
			if errors.Is(err, store.ErrUnavailable) { // retryable (issue 13)
				oauthErr(http.StatusServiceUnavailable, "temporarily_unavailable", "the state store did not answer in time; retry")
				return
			}
			oauthErr(http.StatusInternalServerError, "server_error", "internal error")
			return
		}
		oauthErr(http.StatusBadRequest, "invalid_grant", "the credential is not valid; run `usher serve` once to write a fresh configuration")
		return
	}
	exp := a.cfg.Now().Add(issuer.MaxTokenLifetime)
	access, err := a.mintAccessToken(cred.Email, cred.Email, r.PostForm.Get("scope"), exp)
	if err != nil {
		oauthErr(http.StatusInternalServerError, "server_error", "minting failed")
		return
	}
	aud := r.PostForm.Get("audience")
	if aud == "" {
		aud = CLIClientID
	}
	id, err := a.cfg.Minter.Mint(issuer.Claims{Subject: cred.Email, Email: cred.Email, EmailVerified: true, Audience: []string{aud}, Expiry: exp})
	if err != nil {
		oauthErr(http.StatusInternalServerError, "server_error", "minting failed")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(issuer.MaxTokenLifetime / time.Second), "id_token": id,
	})
}
