// Package api is Usher's admin API in the shapes Google's clients call: Cloud
// Run's Knative serving.knative.dev/v1 resources, IAM policy methods on
// services, Resource Manager project policies, IAM service accounts and IAM
// Credentials token minting, plus the token endpoint the CLI signs in with.
//
// Every call is authenticated (a Bearer access token from Usher's issuer) and
// authorized through package iam before anything is read or written; errors use
// Google's JSON shape. Policy writes are compare-and-swap on the etag and are
// durable, and in force at the gateway, before the API answers. The API never
// touches the gateway or instances directly: it writes state, and the rest
// follows the store.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/store"
)

// Audiences of the tokens Usher mints (package issuer reserves them).
const (
	// AccessTokenAudience marks access tokens for this API; the gateway never
	// accepts them, and the API accepts nothing else.
	AccessTokenAudience = issuer.AdminAudience
	// CLIClientID is the audience of identity tokens the CLI mints for a user
	// without --audiences (as gcloud's own client id is on Google).
	CLIClientID = issuer.CLIClientID
)

// Verifier verifies tokens.
type Verifier interface {
	Verify(token string) (*authn.Identity, error)
}

// Config wires the API.
type Config struct {
	// Core runs every operation; the API only decodes and encodes.
	Core     *admin.Core
	Verifier Verifier
	Log      *slog.Logger
}

// API serves the admin API.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New builds the API and its routes.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.routes()
	return a
}

// ServeHTTP serves API hosts.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) routes() {
	m := a.mux
	m.HandleFunc("POST /token", a.handleToken)

	// Knative serving v1, as gcloud calls it on regional hosts.
	const kn = "/apis/serving.knative.dev/v1/namespaces/{ns}"
	m.Handle("GET "+kn+"/services", a.authed(a.listServices))
	m.Handle("POST "+kn+"/services", a.authed(a.createService))
	m.Handle("GET "+kn+"/services/{name}", a.authed(a.getService))
	m.Handle("PUT "+kn+"/services/{name}", a.authed(a.replaceService))
	m.Handle("DELETE "+kn+"/services/{name}", a.authed(a.deleteService))
	m.Handle("GET "+kn+"/revisions", a.authed(a.listRevisions))
	m.Handle("GET "+kn+"/revisions/{name}", a.authed(a.getRevision))
	m.Handle("DELETE "+kn+"/revisions/{name}", a.authed(a.deleteRevision))
	m.Handle("GET "+kn+"/configurations", a.authed(a.listConfigurations)) // views.go
	m.Handle("GET "+kn+"/configurations/{name}", a.authed(a.getConfiguration))
	m.Handle("GET "+kn+"/routes", a.authed(a.listRoutes))
	m.Handle("GET "+kn+"/routes/{name}", a.authed(a.getRoute))

	// Cloud Run v1 projects.locations.*: the same resources addressed by
	// region in the path, plus IAM methods (":getIamPolicy" is a suffix of
	// the last segment, so it is dispatched by hand).
	const loc = "/v1/projects/{ns}/locations/{region}"
	m.Handle("GET "+loc+"/services", a.authed(a.listServices))
	m.Handle("POST "+loc+"/services", a.authed(a.createService))
	m.Handle("GET "+loc+"/services/{name}", a.authed(a.serviceGetOrPolicy))
	m.Handle("POST "+loc+"/services/{name}", a.authed(a.servicePolicyMethod))
	m.Handle("PUT "+loc+"/services/{name}", a.authed(a.replaceService))
	m.Handle("DELETE "+loc+"/services/{name}", a.authed(a.deleteService))
	m.Handle("GET "+loc+"/revisions", a.authed(a.listRevisions))
	m.Handle("GET "+loc+"/revisions/{name}", a.authed(a.getRevision))
	m.Handle("DELETE "+loc+"/revisions/{name}", a.authed(a.deleteRevision))
	m.Handle("GET "+loc+"/configurations", a.authed(a.listConfigurations))
	m.Handle("GET "+loc+"/configurations/{name}", a.authed(a.getConfiguration))
	m.Handle("GET "+loc+"/routes", a.authed(a.listRoutes))
	m.Handle("GET "+loc+"/routes/{name}", a.authed(a.getRoute))

	// Resource Manager v1 and IAM v1.
	m.Handle("GET /v1/projects/{project}", a.authed(a.projectGetOrPolicy))
	m.Handle("POST /v1/projects/{project}", a.authed(a.projectPolicyMethod))
	m.Handle("GET /v1/projects/{project}/serviceAccounts", a.authed(a.listServiceAccounts))
	m.Handle("POST /v1/projects/{project}/serviceAccounts", a.authed(a.createServiceAccount))
	m.Handle("GET /v1/projects/{project}/serviceAccounts/{sa}", a.authed(a.serviceAccountGetOrPolicy))
	m.Handle("POST /v1/projects/{project}/serviceAccounts/{sa}", a.authed(a.serviceAccountMethod))
	m.Handle("DELETE /v1/projects/{project}/serviceAccounts/{sa}", a.authed(a.deleteServiceAccount))
	m.Handle("PATCH /v1/projects/{project}/serviceAccounts/{sa}", a.authed(a.patchServiceAccount))
	// Accounts' signing keys, public, for whoever verifies a signBlob or
	// signJwt (as www.googleapis.com/service_accounts/v1/metadata/…).
	m.HandleFunc("GET /service_accounts/v1/metadata/jwk/{email}", a.accountKeysJWK)
	m.HandleFunc("GET /service_accounts/v1/metadata/x509/{email}", a.accountKeysX509)
	m.Handle("GET /v1/projects/{project}/serviceAccounts/{sa}/keys", a.authed(a.listServiceAccountKeys)) // keys.go
	m.Handle("POST /v1/projects/{project}/serviceAccounts/{sa}/keys", a.authed(a.createServiceAccountKey))
	m.Handle("DELETE /v1/projects/{project}/serviceAccounts/{sa}/keys/{key}", a.authed(a.deleteServiceAccountKey))

	// Service Usage (platform.go): gcloud asks whether run.googleapis.com is
	// enabled; quickstarts enable it.
	// Secret Manager v1 (secrets.go).
	m.Handle("GET /v1/projects/{project}/secrets", a.authed(a.listSecrets))
	m.Handle("POST /v1/projects/{project}/secrets", a.authed(a.createSecret))
	m.Handle("GET /v1/projects/{project}/secrets/{secret}", a.authed(a.secretGetOrPolicy))
	m.Handle("POST /v1/projects/{project}/secrets/{secret}", a.authed(a.secretMethod))
	m.Handle("DELETE /v1/projects/{project}/secrets/{secret}", a.authed(a.deleteSecret))
	m.Handle("GET /v1/projects/{project}/secrets/{secret}/versions", a.authed(a.listSecretVersions))
	m.Handle("GET /v1/projects/{project}/secrets/{secret}/versions/{version}", a.authed(a.secretVersionGetOrAccess))
	m.Handle("GET /v1/projects/{project}/services", a.authed(a.listServiceUsage))
	m.Handle("GET /v1/projects/{project}/services/{api}", a.authed(a.getServiceUsage))
	m.Handle("POST /v1/projects/{project}/services/{api}", a.authed(a.serviceUsageMethod))
	m.Handle("POST /v1/projects/{project}/{method}", a.authed(a.batchEnable))
	m.Handle("GET /v1/projects/{project}/locations", a.authed(a.listLocations))

	// IAP API v1: a Cloud Run service's policy as gcloud's `iap web` names
	// it, projects/NUMBER/iap_web/cloud_run-REGION/services/NAME. It is the
	// service's IAM policy: roles/iap.httpsResourceAccessor is granted there.
	m.Handle("POST /v1/projects/{ns}/iap_web/{web}/services/{name}", a.authed(a.iapPolicyMethod))

	// Cloud Run Admin API v2 (v2.go).
	a.routesV2()
	a.routesRoles() // IAM v1 custom roles, predefined roles, testable permissions (roles.go)
	// Audit log and policy troubleshooter (audit.go, troubleshoot.go).
	a.routesAudit()
	a.routesLogging()     // Cloud Logging API v2: entries.list (logging.go)
	a.routesOrgPolicies() // Org Policy API v2: guardrails (orgpolicies.go)
	a.routesJobs()        // Cloud Run jobs, executions, tasks (jobs.go)
	a.routesBuilds()      // deploying from source (builds.go)
	a.routesProjects()    // Resource Manager v1 and v3 projects (projects.go)

	m.Handle("/", a.authed(func(w http.ResponseWriter, r *http.Request, _ *caller) error {
		return notFound("no API method at %s %s", r.Method, r.URL.Path)
	}))
}

// caller is the authenticated principal of an API request.
type caller = admin.Caller

type handlerFunc func(w http.ResponseWriter, r *http.Request, c *caller) error

// authed authenticates the request and maps any returned error to Google's
// JSON error shape.
func (a *API) authed(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.authenticate(r)
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			a.writeError(w, r, err)
		}
	})
}

func (a *API) authenticate(r *http.Request) (*caller, error) {
	tok, ok := authn.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, unauthenticated("Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
	}
	id, err := a.cfg.Verifier.Verify(tok)
	// Only an access token of Usher's issuer, for this API: an identity
	// token, whatever its audience, is refused.
	if err != nil || !id.IsAccessToken() || !id.HasAudience(AccessTokenAudience) || id.Email == "" {
		return nil, unauthenticated("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
	}
	return &caller{Principal: iam.NewPrincipal(id.Email), Via: "api"}, nil
}

// Error is an admin error: what the client sees (Code, Status, Message) and
// what only the log keeps (Err).
type Error = admin.Error

// FieldViolation is one bad field of a request.
type FieldViolation = admin.FieldViolation

var (
	newError         = admin.Errorf
	invalidArgument  = admin.InvalidArgument
	invalidField     = admin.InvalidField
	notFound         = admin.NotFound
	alreadyExists    = admin.AlreadyExists
	aborted          = admin.Aborted
	unauthenticated  = admin.Unauthenticated
	unimplemented    = admin.Unimplemented
	permissionDenied = admin.PermissionDenied
)

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		switch {
		case errors.Is(err, store.ErrUnavailable):
			e = &Error{Code: http.StatusServiceUnavailable, Status: "UNAVAILABLE", Message: "The state store did not answer in time; the write may or may not have been applied. Read and retry.", Err: err}
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			e = &Error{Code: http.StatusServiceUnavailable, Status: "UNAVAILABLE", Message: "The request was cancelled or timed out.", Err: err}
		default:
			e = &Error{Code: http.StatusInternalServerError, Status: "INTERNAL", Message: "Internal error.", Err: err}
		}
	}
	level := slog.LevelInfo
	if e.Code >= 500 {
		level = slog.LevelError
	}
	a.cfg.Log.Log(r.Context(), level, "api error", "method", r.Method, "path", r.URL.Path, "code", e.Code, "status", e.Status, "err", e.Error())
	if e.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="usher"`)
	}
	// Every detail carries its @type: gcloud drops details without one.
	details := []any{map[string]any{
		"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
		"reason": e.Status,
		"domain": errorDomain(r.URL.Path),
	}}
	if len(e.Violations) > 0 {
		details = append(details, map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": e.Violations,
		})
	}
	writeJSON(w, e.Code, map[string]any{"error": map[string]any{
		"code": e.Code, "message": e.Message, "status": e.Status, "details": details,
	}})
}

// errorDomain names the Google API a path belongs to, for ErrorInfo (gcloud
// treats a 404 without domain run.googleapis.com on deploy as "wrong region").
func errorDomain(path string) string {
	switch {
	case strings.Contains(path, "/serviceAccounts"):
		return "iam.googleapis.com"
	case strings.HasPrefix(path, "/apis/serving.knative.dev/"), strings.HasPrefix(path, "/apis/run.googleapis.com/"), strings.Contains(path, "/locations/"):
		return "run.googleapis.com"
	case strings.Contains(path, "/services/") && !strings.Contains(path, "/locations/"):
		return "serviceusage.googleapis.com"
	case strings.Contains(path, "/roles"), strings.HasPrefix(path, "/v1/permissions"):
		return "iam.googleapis.com"
	}
	return "cloudresourcemanager.googleapis.com"
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// maxBody bounds request bodies; Usher's resources are small.
const maxBody = 1 << 20

// decodeBody reads a JSON request body strictly enough to catch mistakes while
// tolerating fields clients send that Usher ignores (e.g. status).
func decodeBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil || b == nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return invalidArgument("Invalid JSON payload received. %v", err)
	}
	return nil
}

// readBody reads a bounded request body; nil when it is empty.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, invalidArgument("reading request body: %v", err)
	}
	if len(b) > maxBody {
		return nil, invalidArgument("request body exceeds %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	return b, nil
}

// regionFromHost returns REGION from a regional API host "REGION-localhost"
// (or "REGION-run.googleapis.com"), or "".
func regionFromHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, suffix := range []string{"-localhost", "-run.googleapis.com"} {
		if region, ok := strings.CutSuffix(host, suffix); ok && region != "" && !strings.Contains(region, ".") {
			return region
		}
	}
	return ""
}
