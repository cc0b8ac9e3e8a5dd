// Package client is the typed HTTP client of Usher's admin API, used by the CLI
// and by tests. It signs in with the long-lived credential of a CLI
// configuration, exchanging it for short-lived tokens, and turns Google-shaped
// API errors into *APIError.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Config is the CLI configuration file (config.json).
type Config struct {
	Server     string `json:"server"`
	Project    string `json:"project"`
	Region     string `json:"region"`
	Credential string `json:"credential"`
	Account    string `json:"account,omitempty"`
	// TokenFile holds an access token for Account that the server keeps
	// fresh, for tools that read tokens from a file (gcloud's
	// auth/access_token_file).
	TokenFile string `json:"tokenFile,omitempty"`
}

// DefaultConfigPath is ~/.config/usher/config.json.
func DefaultConfigPath() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "usher", "config.json"), nil
}

// LoadConfig reads a configuration file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// WriteConfig writes a configuration file with mode 0600 (it holds a
// credential), atomically.
func WriteConfig(path string, c Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// WriteFileAtomic replaces path with data: readers see the old file or the
// new one, never a torn write, and the mode is set before any byte lands.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// APIError is an error answered by the API in Google's shape.
type APIError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s", e.Status, e.Message)
}

// IsStatus reports whether err is an APIError with the given status.
func IsStatus(err error, status string) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}

// Client calls the admin API.
type Client struct {
	cfg  Config
	http *http.Client
	// impersonate, when set, makes every call as that service account.
	impersonate string

	mu      sync.Mutex
	access  string // the configured principal's token
	expires time.Time
	saToken string // the impersonated account's token
	saExp   time.Time
}

// Impersonate makes the client call as the service account email, with
// access tokens minted through IAM Credentials (the configured principal
// needs Service Account Token Creator on it). "" stops impersonating.
func (c *Client) Impersonate(email string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.impersonate, c.saToken = email, ""
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	return &Client{cfg: cfg, http: &http.Client{Timeout: 2 * time.Minute}}
}

// Config returns the configuration in use.
func (c *Client) Config() Config { return c.cfg }

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	ExpiresIn   int    `json:"expires_in"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// exchange trades the credential for tokens, retrying (it only reads) while
// the server answers 503: its store is briefly unavailable (a frozen or
// re-electing etcd member).
func (c *Client) exchange(ctx context.Context, audience string) (*tokenResponse, error) {
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		tr, unavailable, err := c.exchangeOnce(ctx, audience)
		if !unavailable || attempt >= 20 {
			return tr, err
		}
		if !sleepCtx(ctx, &delay) {
			return nil, ctx.Err()
		}
	}
}

func (c *Client) exchangeOnce(ctx context.Context, audience string) (tr *tokenResponse, unavailable bool, err error) {
	tr, err = c.exchangeRaw(ctx, audience, &unavailable)
	return tr, unavailable, err
}

func (c *Client) exchangeRaw(ctx context.Context, audience string, unavailable *bool) (*tokenResponse, error) {
	if c.cfg.Server == "" || c.cfg.Credential == "" {
		return nil, errors.New("no server or credential configured: run `usher serve` once, or pass --config")
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.cfg.Credential}}
	if audience != "" {
		form.Set("audience", audience)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.Server, "/")+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Usher server at %s (is `usher serve` running?): %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil {
		return nil, fmt.Errorf("token endpoint: %s", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		*unavailable = resp.StatusCode == http.StatusServiceUnavailable
		return nil, fmt.Errorf("signing in failed: %s: %s", tr.Error, tr.Description)
	}
	return &tr, nil
}

// AccessToken returns a cached access token for the principal calls are made
// as (the impersonated account, if any), refreshed before it expires.
func (c *Client) AccessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	sa, tok, exp := c.impersonate, c.saToken, c.saExp
	c.mu.Unlock()
	if sa == "" {
		return c.OwnAccessToken(ctx)
	}
	if tok != "" && time.Until(exp) > time.Minute {
		return tok, nil
	}
	own, err := c.OwnAccessToken(ctx)
	if err != nil {
		return "", err
	}
	var out struct {
		AccessToken string    `json:"accessToken"`
		ExpireTime  time.Time `json:"expireTime"`
	}
	path := "/v1/projects/-/serviceAccounts/" + url.PathEscape(sa) + ":generateAccessToken"
	body := map[string]any{"scope": []string{"https://www.googleapis.com/auth/cloud-platform"}}
	if err := c.call(ctx, own, http.MethodPost, path, body, &out); err != nil {
		return "", fmt.Errorf("impersonating %s: %w", sa, err)
	}
	c.mu.Lock()
	c.saToken, c.saExp = out.AccessToken, out.ExpireTime
	c.mu.Unlock()
	return out.AccessToken, nil
}

// OwnAccessToken returns an access token for the configured principal itself,
// whatever it impersonates.
func (c *Client) OwnAccessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.access != "" && time.Until(c.expires) > time.Minute {
		return c.access, nil
	}
	tr, err := c.exchange(ctx, "")
	if err != nil {
		return "", err
	}
	c.access, c.expires = tr.AccessToken, time.Now().Add(time.Duration(tr.ExpiresIn)*time.Second)
	return c.access, nil
}

// IdentityToken returns an identity token for the configured principal with
// the given audience ("" for the CLI's own client id).
func (c *Client) IdentityToken(ctx context.Context, audience string) (string, error) {
	tr, err := c.exchange(ctx, audience)
	if err != nil {
		return "", err
	}
	return tr.IDToken, nil
}

// Do calls method path with in as the JSON body (nil for none) and decodes the
// answer into out (nil to discard).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	tok, err := c.AccessToken(ctx)
	if err != nil {
		return err
	}
	return c.call(ctx, tok, method, path, in, out)
}

// DoAsSelf is Do as the configured principal, ignoring impersonation (used to
// mint tokens for the impersonated account).
func (c *Client) DoAsSelf(ctx context.Context, method, path string, in, out any) error {
	tok, err := c.OwnAccessToken(ctx)
	if err != nil {
		return err
	}
	return c.call(ctx, tok, method, path, in, out)
}

func (c *Client) call(ctx context.Context, tok, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.cfg.Server, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Usher server at %s (is `usher serve` running?): %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error *APIError `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != nil {
			return e.Error
		}
		return &APIError{Code: resp.StatusCode, Status: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decoding %s %s: %w", method, path, err)
		}
	}
	return nil
}

// BackupPath is where the server streams a snapshot of its embedded store
// (usher backup; owner only).
const BackupPath = "/usher/v1/backup"

// SetTimeout bounds every call, the reading of its answer included
// (default 2 minutes; 0: no bound).
func (c *Client) SetTimeout(d time.Duration) { c.http.Timeout = d }

// Download GETs path as the configured principal (never an impersonated
// one) and copies the answer's body to w.
func (c *Client) Download(ctx context.Context, path string, w io.Writer) (int64, error) {
	tok, err := c.OwnAccessToken(ctx)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.cfg.Server, "/")+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the Usher server at %s (is `usher serve` running?): %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error *APIError `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != nil {
			return 0, e.Error
		}
		return 0, &APIError{Code: resp.StatusCode, Status: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}
	}
	return io.Copy(w, resp.Body)
}
