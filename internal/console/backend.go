package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

// backend calls the admin API's handler in-process with one principal's
// credentials. It is made per request and holds that request's context.
type backend struct {
	api           http.Handler
	host          string
	authorization string
	ctx           context.Context
}

// apiError is an error the admin API answered, in Google's shape.
type apiError struct {
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Code, e.Status, e.Message) }

// isAborted reports whether err is the API's answer to a stale etag.
func isAborted(err error) bool {
	e, ok := err.(*apiError)
	return ok && e.Status == "ABORTED"
}

// do calls method path with in as the JSON body (nil for none) and decodes
// the answer into out (nil to discard).
func (b *backend) do(method, path string, in, out any) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(b.ctx, method, path, &body)
	if err != nil {
		return err
	}
	req.Host = b.host
	req.RemoteAddr = "console"
	req.Header.Set("Authorization", b.authorization)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	b.api.ServeHTTP(rec, req)
	if rec.status >= 300 {
		var e struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error != nil {
			return e.Error
		}
		return &apiError{Code: rec.status, Status: http.StatusText(rec.status), Message: strings.TrimSpace(rec.body.String())}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("console: decoding %s %s: %w", method, path, err)
	}
	return nil
}

// recorder captures an in-process API answer.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}

var _ http.ResponseWriter = (*recorder)(nil)

func (b *backend) listServices(project string) ([]apis.Service, error) {
	var l apis.List[apis.Service]
	return l.Items, b.do(http.MethodGet, client.ServicesPath(project, "-"), nil, &l)
}

func (b *backend) getService(project, region, name string) (*apis.Service, error) {
	var s apis.Service
	return &s, b.do(http.MethodGet, client.ServicePath(project, region, name), nil, &s)
}

// listRevisions lists the revisions of one service, or of every service in
// the project when service is "" (region "-").
func (b *backend) listRevisions(project, region, service string) ([]apis.Revision, error) {
	var l apis.List[apis.Revision]
	path := client.RevisionsPath(project, region)
	if service != "" {
		path += "?labelSelector=" + url.QueryEscape(apis.LabelService+"="+service)
	}
	return l.Items, b.do(http.MethodGet, path, nil, &l)
}

// serviceLogs returns up to limit of the newest lines the service's
// instances printed, oldest first.
func (b *backend) serviceLogs(project, region, name string, limit int) ([]LogLine, error) {
	var out struct {
		Entries []LogLine `json:"entries"`
	}
	path := client.ServicePath(project, region, name) + ":logs?limit=" + strconv.Itoa(limit)
	return out.Entries, b.do(http.MethodGet, path, nil, &out)
}

// policyOptions asks for conditional bindings too (policy version 3).
func policyOptions() map[string]any {
	return map[string]any{"options": map[string]int{"requestedPolicyVersion": iam.Version3}}
}

func (b *backend) servicePolicy(project, region, name string) (*iam.Policy, error) {
	var p iam.Policy
	return &p, b.do(http.MethodPost, client.ServicePath(project, region, name)+":getIamPolicy", policyOptions(), &p)
}

// setServicePolicy writes p, compare-and-swap on p.Etag (the API answers
// ABORTED when it is stale).
func (b *backend) setServicePolicy(project, region, name string, p *iam.Policy) (*iam.Policy, error) {
	var out iam.Policy
	return &out, b.do(http.MethodPost, client.ServicePath(project, region, name)+":setIamPolicy", map[string]any{"policy": p}, &out)
}

func (b *backend) projectPolicy(project string) (*iam.Policy, error) {
	var p iam.Policy
	return &p, b.do(http.MethodPost, client.ProjectPath(project)+":getIamPolicy", policyOptions(), &p)
}

// servicePermissions returns which of perms the principal holds on a service.
func (b *backend) servicePermissions(project, region, name string, perms ...string) (map[string]bool, error) {
	return b.testPermissions(client.ServicePath(project, region, name)+":testIamPermissions", perms)
}

func (b *backend) testPermissions(path string, perms []string) (map[string]bool, error) {
	var out struct {
		Permissions []string `json:"permissions"`
	}
	if err := b.do(http.MethodPost, path, map[string]any{"permissions": perms}, &out); err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, p := range out.Permissions {
		held[p] = true
	}
	return held, nil
}
